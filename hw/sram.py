"""Banked on-chip SRAM of simple dual-port banks, shared by fixed priority.

Every bank is an ``amaranth.lib.memory.Memory`` with one synchronous read port and
one write port, the shape of an iCE40 EBR (``SB_RAM40_4K``), an ECP5 ``DP16KD`` and
a two-port ASIC SRAM macro, so synthesis maps each bank to block RAM.

Rows are interleaved over the banks by their low address bits (row ``a`` lives in
bank ``a % banks``). Several units (clients) share the banks: each read client
and each write client presents a request (``en``, ``addr``); per bank, the
lowest-numbered client requesting it is granted (``grant``, combinational, the
same cycle) and the others wait. A granted read's data is on the client's
``data`` the cycle after. The units stream consecutive rows, so interleaving
makes two streams that collide once fall into step on alternate banks: a
lower-priority stream loses one cycle, not the whole stream, wherever the
compiler put its rows (see docs/architecture.md).

A bank's read port may be transparent for its write port: a row read in the
cycle it is written returns the new data.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["BankedMemory", "ReadClient", "WriteClient"]


class ReadClient(wiring.Signature):
    """A read request as its unit drives it: ``en`` and ``addr`` out; ``grant`` (this
    cycle) and ``data`` (the cycle after a granted read) in."""

    def __init__(self, *, addr_width: int, width: int) -> None:
        super().__init__({"en": Out(1), "addr": Out(addr_width), "grant": In(1),
                          "data": In(width)})


class WriteClient(wiring.Signature):
    """A write request as its unit drives it: ``en``, ``addr``, ``data`` out; ``grant``
    in (the row is written this cycle when granted)."""

    def __init__(self, *, addr_width: int, width: int) -> None:
        super().__init__({"en": Out(1), "addr": Out(addr_width), "data": Out(width),
                          "grant": In(1)})


def _check_int(name: str, value: int, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"BankedMemory {name} must be an int of at least {lo}, not {value!r}")


class BankedMemory(wiring.Component):
    """``depth`` rows of ``width`` bits in ``banks`` simple dual-port banks.

    Parameters
    ----------
    width, depth: the geometry.
    banks: a power of two dividing ``depth``.
    reads, writes: the number of read and write clients, highest priority first.
    transparent: each bank's read port returns the row written in the same cycle.

    Ports
    -----
    read[j], write[i]: the clients (:class:`ReadClient`, :class:`WriteClient`, flipped).

    Raises
    ------
    ValueError: a parameter out of range.
    """

    def __init__(self, *, width: int, depth: int, banks: int, reads: int, writes: int,
                 transparent: bool = False) -> None:
        _check_int("width", width, 1)
        _check_int("depth", depth, 1)
        _check_int("reads", reads, 1)
        _check_int("writes", writes, 1)
        if not isinstance(banks, int) or banks < 1 or banks & (banks - 1) or depth % banks:
            raise ValueError(f"BankedMemory banks={banks!r} must be a power of two dividing "
                             f"depth={depth}")
        self.width = width
        self.depth = depth
        self.banks = banks
        self.transparent = bool(transparent)
        aw = ceil_log2(depth)
        #: The banks: bank ``b`` holds rows ``b, b + banks, ...`` (tests read them directly).
        self.memories = [Memory(shape=width, depth=depth // banks, init=[])
                         for _ in range(banks)]
        super().__init__({
            "read": In(ReadClient(addr_width=aw, width=width)).array(reads),
            "write": In(WriteClient(addr_width=aw, width=width)).array(writes),
        })

    def elaborate(self, platform):
        m = Module()
        lb = exact_log2(self.banks)

        def split(addr):
            if lb == 0:
                return 0, addr
            return addr[:lb], addr[lb:]

        # Registered bank of each client's read, to select its data a cycle later.
        read_bank = []
        for j, rd in enumerate(self.read):
            bank, _ = split(rd.addr)
            reg = Signal(range(max(self.banks, 2)), name=f"r{j}_bank")
            m.d.sync += reg.eq(bank)
            read_bank.append(reg)

        for b, mem in enumerate(self.memories):
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,) if self.transparent else ())
            # Fixed priority: the first requesting client takes the port (If/Elif).
            for ports, port in ((self.write, wp), (self.read, rp)):
                for k, client in enumerate(ports):
                    bank, row = split(client.addr)
                    stmt = m.If if k == 0 else m.Elif
                    with stmt(client.en & (bank == b)):
                        m.d.comb += [port.addr.eq(row), client.grant.eq(1)]
                        if port is wp:
                            m.d.comb += [wp.en.eq(1), wp.data.eq(client.data)]
            for j, rd in enumerate(self.read):
                with m.If(read_bank[j] == b):
                    m.d.comb += rd.data.eq(rp.data)
        return m
