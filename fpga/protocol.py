"""The host link's framed protocol: what crosses the UART between the host and the SoC.

A frame, in both directions::

    0xA5 | cmd (1) | seq (1) | length (2, LE) | payload (length) | crc (2, LE)

``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, as
``binascii.crc_hqx(data, 0xFFFF)``) over ``cmd`` to the payload's end. The host numbers
its requests (``seq``, modulo 256); the SoC answers each with the same ``seq`` and
``cmd | 0x80``, or with :data:`ERROR` and one byte of :class:`LinkErrorCode`.

=============  ==============================  =================================
request        payload                         reply payload
=============  ==============================  =================================
``PING``       none                            ``b"NPU1"``
``READ_MEM``   address (4, LE), count (2, LE)  ``count`` bytes
``WRITE_MEM``  address (4, LE), the bytes      none
``READ_CSR``   byte offset (2, LE)             value (4, LE)
``WRITE_CSR``  byte offset (2, LE), value (4)  none
=============  ==============================  =================================

At most :data:`MAX_PAYLOAD` bytes travel in one frame. :class:`Link` is the host side:
it speaks the :class:`hw.driver.RegisterBus` interface (``read32``, ``write32``,
``wait``) over any byte transport, plus ``load``/``dump`` of device memory in frames, and
turns every malformed, corrupted, mismatched or missing reply into a
:class:`LinkError` (never a wrong value). :class:`BridgeModel` is the SoC side as an
executable specification (a RAM and a register file behind the protocol); the
gateware bridge is checked against the same tests.
"""

from __future__ import annotations

import binascii
import enum
import struct
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

__all__ = ["Command", "LinkErrorCode", "LinkError", "Transport", "Link", "BridgeModel",
           "encode_frame", "FrameDecoder", "crc16", "SYNC", "ERROR", "MAX_PAYLOAD", "PING_REPLY"]

SYNC = 0xA5
ERROR = 0xFF
#: Largest payload of one frame (a READ_MEM reply of 256 bytes, or a WRITE_MEM of 252 + 4).
MAX_PAYLOAD = 260
PING_REPLY = b"NPU1"
_HEADER = 5          # sync, cmd, seq, length


class Command(enum.IntEnum):
    PING = 0x01
    READ_MEM = 0x02
    WRITE_MEM = 0x03
    READ_CSR = 0x04
    WRITE_CSR = 0x05


class LinkErrorCode(enum.IntEnum):
    """Why the SoC refused a request (the byte of an :data:`ERROR` reply)."""
    BAD_CRC = 1
    BAD_COMMAND = 2
    BAD_LENGTH = 3
    OUT_OF_RANGE = 4


class LinkError(RuntimeError):
    """The link failed: no reply in time, a corrupted or mismatched reply, or the SoC
    refused the request."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data``."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame. Raises ValueError for a command, sequence number or payload out of range."""
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"cmd {cmd} and seq {seq} must be bytes")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    body = struct.pack("<BBH", cmd, seq, len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get complete frames.

    Bytes before a sync byte are skipped (counted in :attr:`skipped`); a frame whose
    length is over :data:`MAX_PAYLOAD` or whose CRC is wrong is reported as
    ``("bad", reason)`` and decoding resumes after its sync byte.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[tuple]:
        """Frames completed by ``data``: ``("ok", cmd, seq, payload)`` or ``("bad", why)``."""
        self.buf += data
        out = []
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                self.skipped += len(self.buf)
                self.buf.clear()
                return out
            if start:
                self.skipped += start
                del self.buf[:start]
            if len(self.buf) < _HEADER:
                return out
            cmd, seq, length = struct.unpack_from("<BBH", self.buf, 1)
            if length > MAX_PAYLOAD:
                out.append(("bad", f"length {length} over {MAX_PAYLOAD}"))
                del self.buf[:1]
                continue
            end = _HEADER + length + 2
            if len(self.buf) < end:
                return out
            body = bytes(self.buf[1:_HEADER + length])
            (crc,) = struct.unpack_from("<H", self.buf, _HEADER + length)
            if crc != crc16(body):
                out.append(("bad", f"CRC {crc:#06x}, expected {crc16(body):#06x}", cmd, seq))
                del self.buf[:1]
                continue
            out.append(("ok", cmd, seq, body[4:]))
            del self.buf[:end]


class Transport(Protocol):
    """Bytes to and from the SoC (a serial port, a simulated UART)."""
    def write(self, data: bytes) -> None: ...
    def read(self, n: int, timeout: float) -> bytes: ...   # up to n bytes; b"" on timeout


class Link:
    """The host side of the protocol over ``transport``: a :class:`hw.driver.RegisterBus`
    (``read32``, ``write32``, ``wait``) and device memory (``load``, ``dump``).

    ``timeout``: seconds to wait for each reply. :meth:`wait` (the driver's poll
    interval, in NPU cycles) sleeps ``cycles / clock_hz`` seconds on a board, or calls
    ``wait(cycles)`` instead when given (a simulation advances its clock there).
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, clock_hz: float = 25e6,
                 wait: Callable[[int], None] | None = None) -> None:
        if not timeout > 0 or not clock_hz > 0:
            raise ValueError(f"timeout ({timeout}) and clock_hz ({clock_hz}) must be positive")
        self.transport = transport
        self.timeout = timeout
        self.clock_hz = clock_hz
        self._wait = wait
        self.seq = 0
        self._decoder = FrameDecoder()

    def request(self, cmd: Command, payload: bytes = b"") -> bytes:
        """Send one request and return its reply's payload; LinkError otherwise."""
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFF
        self.transport.write(encode_frame(int(cmd), seq, payload))
        while True:
            data = self.transport.read(MAX_PAYLOAD + _HEADER + 2, self.timeout)
            if not data:
                raise LinkError(f"{cmd.name}: no reply within {self.timeout:g} s")
            for frame in self._decoder.feed(data):
                if frame[0] == "bad":
                    raise LinkError(f"{cmd.name}: corrupted reply ({frame[1]})")
                _, rcmd, rseq, body = frame
                if rseq != seq:
                    raise LinkError(f"{cmd.name}: reply to request {rseq}, expected {seq}")
                if rcmd == ERROR:
                    code = body[0] if body else 0
                    try:
                        why = LinkErrorCode(code).name
                    except ValueError:
                        why = f"code {code}"
                    raise LinkError(f"{cmd.name}: the SoC refused it ({why})")
                if rcmd != (int(cmd) | 0x80):
                    raise LinkError(f"{cmd.name}: reply of command {rcmd:#04x}")
                return body

    def ping(self) -> None:
        """Check that an NPU SoC answers; LinkError otherwise."""
        reply = self.request(Command.PING)
        if reply != PING_REPLY:
            raise LinkError(f"PING: {reply!r} is not an NPU SoC's reply {PING_REPLY!r}")

    def read32(self, offset: int) -> int:
        body = self.request(Command.READ_CSR, struct.pack("<H", offset))
        if len(body) != 4:
            raise LinkError(f"READ_CSR: {len(body)} bytes in the reply, expected 4")
        return struct.unpack("<I", body)[0]

    def write32(self, offset: int, value: int) -> None:
        self.request(Command.WRITE_CSR, struct.pack("<HI", offset, value & 0xFFFFFFFF))

    def wait(self, cycles: int) -> None:
        if self._wait is not None:
            self._wait(cycles)
        else:
            time.sleep(cycles / self.clock_hz)

    def load(self, addr: int, data: np.ndarray) -> None:
        """Write the bytes ``data`` into device memory at ``addr``, in frames."""
        raw = np.asarray(data, dtype=np.uint8).tobytes()
        step = MAX_PAYLOAD - 4
        for i in range(0, len(raw), step):
            self.request(Command.WRITE_MEM, struct.pack("<I", addr + i) + raw[i:i + step])

    def dump(self, addr: int, nbytes: int) -> np.ndarray:
        """``nbytes`` of device memory from ``addr``."""
        out = bytearray()
        step = 256
        for i in range(0, nbytes, step):
            n = min(step, nbytes - i)
            body = self.request(Command.READ_MEM, struct.pack("<IH", addr + i, n))
            if len(body) != n:
                raise LinkError(f"READ_MEM: {len(body)} bytes in the reply, expected {n}")
            out += body
        return np.frombuffer(bytes(out), dtype=np.uint8)


class BridgeModel:
    """The SoC side as an executable specification: a memory of ``mem_bytes`` and a
    register file behind the protocol. :meth:`receive` takes request bytes and returns
    the reply bytes.

    By default the memory is a numpy array (:attr:`mem`) and the registers a dict of
    words; ``backend`` (an object with ``read32``, ``write32``, ``load``, ``dump``, as
    :class:`sim.rtl.HarnessSession`) puts a real NPU behind the bridge instead.
    ``on_frame``: called once per request (a simulation advances its clock there: on a
    board, time passes while the frame crosses the UART). ``csr_bytes``: when given, CSR
    offsets from it on are refused with ``OUT_OF_RANGE`` (as the gateware bridge, whose
    CSR bus has fewer address bits than the protocol's 16, refuses them).
    """

    def __init__(self, mem_bytes: int, *, backend=None,
                 on_frame: Callable[[], None] | None = None, csr_bytes: int | None = None) -> None:
        if mem_bytes < 1:
            raise ValueError(f"mem_bytes must be positive, not {mem_bytes}")
        if csr_bytes is not None and csr_bytes < 1:
            raise ValueError(f"csr_bytes must be positive, not {csr_bytes}")
        self.size = mem_bytes
        self.csr_bytes = csr_bytes
        self.backend = backend
        self.on_frame = on_frame
        self.mem = np.zeros(mem_bytes, dtype=np.uint8) if backend is None else None
        self.csrs: dict[int, int] = {}
        self._decoder = FrameDecoder()

    def _read(self, addr: int, n: int) -> bytes:
        if self.backend is not None:
            return self.backend.dump(addr, n).tobytes()
        return self.mem[addr:addr + n].tobytes()

    def _write(self, addr: int, data: np.ndarray) -> None:
        if self.backend is not None:
            self.backend.load(addr, data)
        else:
            self.mem[addr:addr + len(data)] = data

    def _csr_read(self, off: int) -> int:
        return self.backend.read32(off) if self.backend is not None else self.csrs.get(off, 0)

    def _csr_write(self, off: int, value: int) -> None:
        if self.backend is not None:
            self.backend.write32(off, value)
        else:
            self.csrs[off] = value

    def receive(self, data: bytes) -> bytes:
        out = b""
        for frame in self._decoder.feed(data):
            if frame[0] == "bad":
                if len(frame) == 4:           # a whole frame with a wrong CRC: say so
                    out += encode_frame(ERROR, frame[3], bytes([LinkErrorCode.BAD_CRC]))
                continue
            _, cmd, seq, body = frame
            if self.on_frame is not None:
                self.on_frame()
            out += self._answer(cmd, seq, body)
        return out

    def _answer(self, cmd: int, seq: int, body: bytes) -> bytes:
        def error(code):
            return encode_frame(ERROR, seq, bytes([code]))

        def ok(payload=b""):
            return encode_frame(cmd | 0x80, seq, payload)
        size = self.size
        if cmd == Command.PING:
            return ok(PING_REPLY) if not body else error(LinkErrorCode.BAD_LENGTH)
        if cmd == Command.READ_MEM:
            if len(body) != 6:
                return error(LinkErrorCode.BAD_LENGTH)
            addr, n = struct.unpack("<IH", body)
            if n > 256:
                return error(LinkErrorCode.BAD_LENGTH)
            if addr + n > size:
                return error(LinkErrorCode.OUT_OF_RANGE)
            return ok(self._read(addr, n))
        if cmd == Command.WRITE_MEM:
            if len(body) < 4:
                return error(LinkErrorCode.BAD_LENGTH)
            (addr,) = struct.unpack_from("<I", body)
            data = np.frombuffer(body[4:], dtype=np.uint8)
            if addr + len(data) > size:
                return error(LinkErrorCode.OUT_OF_RANGE)
            self._write(addr, data)
            return ok()
        if cmd == Command.READ_CSR:
            if len(body) != 2:
                return error(LinkErrorCode.BAD_LENGTH)
            (off,) = struct.unpack("<H", body)
            if self.csr_bytes is not None and off >= self.csr_bytes:
                return error(LinkErrorCode.OUT_OF_RANGE)
            return ok(struct.pack("<I", self._csr_read(off) & 0xFFFFFFFF))
        if cmd == Command.WRITE_CSR:
            if len(body) != 6:
                return error(LinkErrorCode.BAD_LENGTH)
            off, value = struct.unpack("<HI", body)
            if self.csr_bytes is not None and off >= self.csr_bytes:
                return error(LinkErrorCode.OUT_OF_RANGE)
            self._csr_write(off, value)
            return ok()
        return error(LinkErrorCode.BAD_COMMAND)
