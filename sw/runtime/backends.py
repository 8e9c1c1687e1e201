"""Backends: an NPU behind one interface, found by name in a registry.

A backend owns a device DRAM and runs programs that sit in it. :class:`Device`
(``sw.runtime.device``) decides what crosses between host and device (the
constants once, the input and output per run); a backend moves the bytes and runs:

* ``"func"``: the functional model (numpy, bit-exact, no timing); its DRAM is a
  numpy array kept between runs;
* ``"rtl"``: the Verilog from ``hw.build`` in Verilator, in the C++ harness (the
  in-design RAM, no Python per cycle), driven through :mod:`hw.driver` like a board;
  its RAM is kept between runs, the statistics are read from the CSRs.

* ``"board"``: an NPU on an FPGA board over the host link's framed protocol
  (:mod:`fpga.protocol`), through the same driver.

Other backends register themselves the same way (:func:`register_backend`).
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hw.config import NPUConfig
from hw.isa import ErrorCode

from .stats import Counters

__all__ = ["Backend", "BACKENDS", "RunRecord", "register_backend", "get_backend", "FuncBackend",
           "RTLBackend", "BoardBackend", "BackendError"]


class BackendError(RuntimeError):
    """The backend cannot hold or run this program (the device's error wraps it)."""


@dataclass
class RunRecord:
    """One run of an instruction stream on a backend."""
    status: str                    #: "done", "error" or "timeout"
    error: str                     #: why it stopped, when not "done"
    counters: Counters
    seconds: float                 #: wall time of the run on the backend
    layer_cycles: dict[int, int] | None = None    #: busy cycles per layer id (rtl)
    per_layer: dict[int, dict] | None = None      #: counts per layer id (func)
    #: seconds of each host operator run between NPU segments, by its name
    host_seconds: dict[str, float] = field(default_factory=dict)
    #: the instruction timeline (sw.analysis.trace.Span, indices from the stream's first
    #: word), when the backend traces (rtl, Backend.set_trace)
    spans: list | None = None


#: The registry: backend name -> class.
BACKENDS: dict[str, type["Backend"]] = {}


def register_backend(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator: make ``cls`` available as ``Device(config, cls.name)``."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    if cls.name in BACKENDS and BACKENDS[cls.name] is not cls:
        raise ValueError(f"backend {cls.name!r} is already registered "
                         f"({BACKENDS[cls.name].__qualname__})")
    BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str) -> type["Backend"]:
    """The backend class called ``name``; ValueError listing the known ones otherwise."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}") from None


class Backend(ABC):
    """An NPU with its DRAM. Subclasses set ``name`` and implement the abstract methods.

    ``bytes_written`` and ``bytes_read`` count what crossed between host and device
    DRAM (what a link to a board would carry).
    """
    name: str

    def __init__(self, config: NPUConfig, *, progress: bool = False) -> None:
        self.config = config
        self.progress = progress
        self.bytes_written = 0
        self.bytes_read = 0

    def write(self, addr: int, data: np.ndarray) -> None:
        """Write the bytes ``data`` into device DRAM at ``addr``."""
        self.bytes_written += len(data)
        self._write(addr, np.ascontiguousarray(data, dtype=np.uint8))

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        """``nbytes`` of device DRAM from ``addr``."""
        self.bytes_read += nbytes
        return self._read(addr, nbytes)

    @abstractmethod
    def allocate(self, nbytes: int) -> None:
        """Give the device ``nbytes`` of DRAM for a new program (contents undefined)."""

    @abstractmethod
    def _write(self, addr: int, data: np.ndarray) -> None: ...

    @abstractmethod
    def _read(self, addr: int, nbytes: int) -> np.ndarray: ...

    @abstractmethod
    def run(self, insn_base: int, insn_count: int, window: tuple[int, int], *,
            max_cycles: int, progress: Callable[[int, float], None] | None = None) -> RunRecord:
        """Run the instruction stream in device DRAM; ``progress(cycles, seconds)`` may be
        called while it runs."""

    def set_trace(self, on: bool) -> None:
        """Record each run's instruction timeline (``RunRecord.spans``) or stop.

        Raises BackendError where the backend cannot (this one).
        """
        if on:
            raise BackendError(f"the {self.name} backend records no instruction trace "
                               "(the rtl backend does)")

    def close(self) -> None:
        """Release what the backend holds (a simulator process, a link)."""


@register_backend
class FuncBackend(Backend):
    """The functional model (``sim.plan.PlannedModel``): bit-exact, no timing."""
    name = "func"

    def __init__(self, config: NPUConfig, *, progress: bool = False) -> None:
        from sim.plan import PlannedModel
        super().__init__(config, progress=progress)
        # The model with its execution planner: plans are worked out on the first run
        # and replayed while the program's words are unchanged.
        self.model = PlannedModel(config)
        self.dram = np.zeros(0, dtype=np.uint8)

    def allocate(self, nbytes: int) -> None:
        self.dram = np.zeros(nbytes, dtype=np.uint8)

    def _write(self, addr: int, data: np.ndarray) -> None:
        self.dram[addr:addr + len(data)] = data

    def _read(self, addr: int, nbytes: int) -> np.ndarray:
        return self.dram[addr:addr + nbytes].copy()

    def run(self, insn_base, insn_count, window, *, max_cycles, progress=None) -> RunRecord:
        from sim.functional import NPUError
        t0 = time.perf_counter()
        try:
            counts = self.model.run(self.dram, insn_base, insn_count, window)
        except NPUError as exc:
            return RunRecord("error", str(exc), Counters(), time.perf_counter() - t0)
        counters = Counters(macs=counts.macs, dram_read_bytes=counts.dram_read_bytes,
                            dram_write_bytes=counts.dram_write_bytes,
                            insn_read_bytes=counts.insn_read_bytes)
        return RunRecord("done", "", counters, time.perf_counter() - t0,
                         per_layer={k: v.as_dict() for k, v in counts.per_layer.items()})


@register_backend
class RTLBackend(Backend):
    """The generated Verilog in Verilator (the C++ harness), driven through hw.driver."""
    name = "rtl"

    def __init__(self, config: NPUConfig, *, progress: bool = False) -> None:
        super().__init__(config, progress=progress)
        self._bus = None       # the harness, started on first use: a Device is cheap to create
        self._trace = False

    def _session(self):
        if self._bus is None:
            from hw import driver
            from sim.rtl import FastRTLSimulator
            if self.progress:
                print(f"rtl: building the simulator for {self.config.describe()} "
                      "(cached after the first time) ...", file=sys.stderr)
            bus = FastRTLSimulator(self.config).session()
            try:
                driver.execute(driver.check_instance(self.config.hash), bus)
            except driver.DriverError as exc:
                bus.close()
                raise BackendError(str(exc)) from None
            self._bus = bus
            if self._trace:
                bus.trace_start()
        return self._bus

    def set_trace(self, on: bool) -> None:
        """Record each run's instruction timeline from the trace port (the harness's
        ``trace`` command; untraced runs pay nothing for it)."""
        self._trace = bool(on)
        if self._bus is not None:
            self._bus.trace_start() if self._trace else self._bus.trace_stop()

    def allocate(self, nbytes: int) -> None:
        bus = self._session()
        if nbytes > bus.ram_bytes:
            raise BackendError(f"the program's DRAM image of {nbytes} bytes exceeds the "
                               f"simulated DRAM of {bus.ram_bytes} bytes")
        bus.reset()
        bus.clear()      # in the simulator, not over the link: a new program starts from zeros

    def _write(self, addr: int, data: np.ndarray) -> None:
        self._session().load(addr, data)

    def _read(self, addr: int, nbytes: int) -> np.ndarray:
        return self._session().dump(addr, nbytes)

    def run(self, insn_base, insn_count, window, *, max_cycles, progress=None) -> RunRecord:
        from hw import driver
        bus = self._session()
        t0 = time.perf_counter()

        def report(cycles):
            progress(cycles, time.perf_counter() - t0)
        r = driver.execute(driver.run(insn_base, insn_count, window, max_cycles=max_cycles,
                                      progress=report if progress else None), bus)
        seconds = time.perf_counter() - t0
        stopped = r.error.name if r.error is not ErrorCode.NONE else r.status
        why = "" if r.status == "done" else f"{stopped} at instruction {r.error_index}"
        events = bus.trace_events() if self._trace else None
        # The timeline of a run that stopped early is not kept (the device raises).
        spans = self._spans(bus, events, insn_base, insn_count) \
            if events is not None and r.status == "done" else None
        return RunRecord(r.status, why, Counters.from_registers(r.registers), seconds,
                         layer_cycles=bus.layer_cycles(), spans=spans)

    @staticmethod
    def _spans(bus, events, insn_base: int, insn_count: int) -> list:
        """A finished run's spans: the recorded events matched with the instruction words,
        read from the simulated RAM (not over the host link) and decoded up to FINISH."""
        from hw.isa import INSN_BYTES, bytes_to_words, decode
        from sw.analysis.trace import spans_from_events

        words = bytes_to_words(bus.dump(insn_base, INSN_BYTES * insn_count).tobytes())
        return spans_from_events(events, (decode(w) for w in words))

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None


@register_backend
class BoardBackend(Backend):
    """An NPU on an FPGA board, over the host link's framed protocol
    (:mod:`fpga.protocol`), driven through :mod:`hw.driver` as the rtl backend is.

    Options: ``port`` (the serial port, e.g. ``/dev/ttyUSB0``) and ``baud``; or
    ``transport`` (any object with ``write(bytes)`` and ``read(n, timeout)``, e.g. a
    simulated UART) with ``wait`` (how the driver's polls pass NPU cycles there);
    ``timeout`` (seconds per reply), ``clock_hz`` (the board's NPU clock),
    ``mem_bytes`` (the board's DRAM, to refuse a program that does not fit).
    On opening it checks that an NPU answers and that its CONFIG_HASH is ``config``'s.
    Raises BackendError naming what is wrong (no port given, a port that does not open,
    no answer, another configuration).
    """
    name = "board"

    def __init__(self, config: NPUConfig, *, progress: bool = False, port: str | None = None,
                 baud: int = 115200, transport=None, wait=None, timeout: float = 1.0,
                 clock_hz: float = 25e6, mem_bytes: int | None = None) -> None:
        from fpga.protocol import Link, LinkError
        from hw import driver
        super().__init__(config, progress=progress)
        self.mem_bytes = mem_bytes
        self._serial = None
        if transport is None:
            if port is None:
                raise BackendError("the board backend needs port= (the board's serial "
                                   "port, e.g. /dev/ttyUSB0) or transport=")
            try:
                import serial
            except ImportError:
                raise BackendError("the board backend needs pyserial (pip install "
                                   "pyserial)") from None
            try:
                self._serial = serial.Serial(port, baud, timeout=timeout)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise BackendError(f"cannot open the board's serial port {port}: {exc}") from None
            transport = _SerialTransport(self._serial)
        self.link = Link(transport, timeout=timeout, clock_hz=clock_hz, wait=wait)
        try:
            self.link.ping()
            driver.execute(driver.check_instance(config.hash), self.link)
        except (LinkError, driver.DriverError) as exc:
            self.close()
            raise BackendError(f"board{f' on {port}' if port else ''}: {exc}") from None

    def allocate(self, nbytes: int) -> None:
        if self.mem_bytes is not None and nbytes > self.mem_bytes:
            raise BackendError(f"the program's DRAM image of {nbytes} bytes exceeds the "
                               f"board's {self.mem_bytes} bytes")

    def _write(self, addr: int, data: np.ndarray) -> None:
        self._link_call(self.link.load, addr, data)

    def _read(self, addr: int, nbytes: int) -> np.ndarray:
        return self._link_call(self.link.dump, addr, nbytes)

    def _link_call(self, fn, *args):
        from fpga.protocol import LinkError
        try:
            return fn(*args)
        except LinkError as exc:
            raise BackendError(f"board link: {exc}") from None

    def run(self, insn_base, insn_count, window, *, max_cycles, progress=None) -> RunRecord:
        from hw import driver
        t0 = time.perf_counter()

        def report(cycles):
            progress(cycles, time.perf_counter() - t0)
        r = self._link_call(driver.execute, driver.run(
            insn_base, insn_count, window, max_cycles=max_cycles,
            progress=report if progress else None), self.link)
        stopped = r.error.name if r.error is not ErrorCode.NONE else r.status
        why = "" if r.status == "done" else f"{stopped} at instruction {r.error_index}"
        return RunRecord(r.status, why, Counters.from_registers(r.registers),
                         time.perf_counter() - t0)

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None


class _SerialTransport:
    """pyserial's port as a :class:`fpga.protocol.Transport`."""

    def __init__(self, port) -> None:
        self.port = port

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        self.port.timeout = timeout
        return self.port.read(max(1, min(n, self.port.in_waiting or 1)))
