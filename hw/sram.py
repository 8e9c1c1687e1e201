"""Banked on-chip SRAM built from ``amaranth.lib.memory.Memory``.

The rows are split into ``banks`` memories by their high address bits. Every
port reaches every bank, so the DMA writing one region and the array reading
another never wait for each other, and each bank maps to its own block RAMs.
Read ports are synchronous (data the cycle after the address); a read port may
be transparent for one write port (it then sees a row written in the same cycle).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["BankedMemory"]


class BankedMemory(wiring.Component):
    """``depth`` rows of ``width`` bits in ``banks`` banks.

    Parameters
    ----------
    width, depth, banks: the geometry (``banks`` a power of two dividing ``depth``).
    writes: number of write ports (``w{i}_en``, ``w{i}_addr``, ``w{i}_data``).
    reads: one entry per read port (``r{j}_addr``, ``r{j}_data``): the index of the
        write port it is transparent for, or ``None``.
    """

    def __init__(self, *, width: int, depth: int, banks: int, writes: int,
                 reads: list[int | None]) -> None:
        if banks < 1 or banks & (banks - 1) or depth % banks:
            raise ValueError(f"BankedMemory banks={banks} must be a power of two dividing "
                             f"depth={depth}")
        for t in reads:
            if t is not None and not 0 <= t < writes:
                raise ValueError(f"BankedMemory read port transparent for write port {t}, "
                                 f"but there are {writes}")
        self.width = width
        self.depth = depth
        self.banks = banks
        self.n_writes = writes
        self.reads = list(reads)
        aw = ceil_log2(depth)
        ports = {}
        for i in range(writes):
            ports[f"w{i}_en"] = In(1)
            ports[f"w{i}_addr"] = In(aw)
            ports[f"w{i}_data"] = In(width)
        for j in range(len(reads)):
            ports[f"r{j}_addr"] = In(aw)
            ports[f"r{j}_data"] = Out(width)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        bank_rows = self.depth // self.banks
        lb = exact_log2(bank_rows) if bank_rows & (bank_rows - 1) == 0 else None
        aw = ceil_log2(self.depth)

        def split(addr):
            if self.banks == 1:
                return 0, addr
            if lb is not None:
                return addr[lb:], addr[:lb]
            return addr // bank_rows, addr % bank_rows

        # Registered bank index of each read, to select the data a cycle later.
        read_bank = [Signal(range(max(self.banks, 2)), name=f"r{j}_bank")
                     for j in range(len(self.reads))]
        for j in range(len(self.reads)):
            bank, _ = split(getattr(self, f"r{j}_addr"))
            m.d.sync += read_bank[j].eq(bank)

        for b in range(self.banks):
            mem = Memory(shape=self.width, depth=bank_rows, init=[])
            m.submodules[f"bank{b}"] = mem
            wports = []
            for i in range(self.n_writes):
                wp = mem.write_port()
                bank, row = split(getattr(self, f"w{i}_addr"))
                m.d.comb += [
                    wp.en.eq(getattr(self, f"w{i}_en") & (bank == b)),
                    wp.addr.eq(row),
                    wp.data.eq(getattr(self, f"w{i}_data")),
                ]
                wports.append(wp)
            for j, t in enumerate(self.reads):
                rp = mem.read_port(transparent_for=() if t is None else (wports[t],))
                _, row = split(getattr(self, f"r{j}_addr"))
                m.d.comb += rp.addr.eq(row)
                with m.If(read_bank[j] == b):
                    m.d.comb += getattr(self, f"r{j}_data").eq(rp.data)
        del aw
        return m
