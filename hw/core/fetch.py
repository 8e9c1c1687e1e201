"""The fetch unit: instruction words from DRAM, in program order, for the dispatcher.

It reads the program's ``insn_count`` words from ``insn_base`` through its DMA reader,
one request per word and up to :data:`FIFO_DEPTH` words ahead, and offers them as a
stream of :data:`FETCH_ENTRY` (the word and its index). A word outside the DMA window
is not read: fetching stops, and once the words before it have been offered, an entry
with ``fault`` set and that word's index follows (the dispatcher raises the error when
it reaches it, so earlier instructions still run).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..isa import INSN_BITS, INSN_BYTES
from .tokens import QUEUE_ENTRY

__all__ = ["FETCH_ENTRY", "FIFO_DEPTH", "FetchUnit"]

#: A fetched word: the instruction, its index, and whether fetching it failed.
FETCH_ENTRY = data.StructLayout({"entry": QUEUE_ENTRY, "fault": 1})

#: Words fetched ahead of the dispatcher.
FIFO_DEPTH = 8


class FetchUnit(wiring.Component):
    """Instruction fetch.

    Ports
    -----
    enable: run. halt: stop issuing (an error).
    insn_base, insn_count: the program. win_lo, win_hi: the DMA window.
    misaligned: ``insn_base`` is not a multiple of the instruction size.
    dma_req, dma_resp: the DMA reader's request and response streams.
    insns: the fetched words (stream of :data:`FETCH_ENTRY`).
    """

    def __init__(self) -> None:
        super().__init__({
            "enable": In(1), "halt": In(1),
            "insn_base": In(32), "insn_count": In(32), "win_lo": In(32), "win_hi": In(32),
            "misaligned": Out(1),
            "dma_req": Out(stream.Signature(data.StructLayout(
                {"addr": 32, "nbytes": range(INSN_BYTES + 1), "tag": 32}))),
            "dma_resp": In(stream.Signature(data.StructLayout(
                {"data": data.ArrayLayout(8, INSN_BYTES), "tag": 32}))),
            "insns": Out(stream.Signature(FETCH_ENTRY)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=FETCH_ENTRY.size, depth=FIFO_DEPTH)
        req, resp = self.dma_req, self.dma_resp
        pc = Signal(32)
        inflight = Signal(range(2 * FIFO_DEPTH))
        fault = Signal()
        marker = Signal()
        addr = Signal(33)
        m.d.comb += addr.eq(self.insn_base + pc * INSN_BYTES)
        in_window = (addr >= self.win_lo) & (addr + INSN_BYTES <= self.win_hi) & ~addr[32]
        m.d.comb += self.misaligned.eq(self.insn_base % INSN_BYTES != 0)
        can = Signal()
        m.d.comb += can.eq(self.enable & ~self.halt & ~fault & ~self.misaligned
                           & (pc < self.insn_count) & (fifo.level + inflight < FIFO_DEPTH))
        issue = Signal()
        take = Signal()
        m.d.comb += [req.payload.addr.eq(addr), req.payload.nbytes.eq(INSN_BYTES),
                     req.payload.tag.eq(pc)]
        with m.If(can):
            with m.If(in_window):
                m.d.comb += req.valid.eq(1)
                with m.If(req.ready):
                    m.d.comb += issue.eq(1)
                    m.d.sync += pc.eq(pc + 1)
            with m.Else():
                m.d.sync += fault.eq(1)
        word = Signal(FETCH_ENTRY)
        m.d.comb += [
            word.entry.word.eq(resp.payload.data.as_value()),
            word.entry.index.eq(resp.payload.tag),
            fifo.w_data.eq(word),
            fifo.w_en.eq(resp.valid),
            resp.ready.eq(fifo.w_rdy),
            take.eq(resp.valid & fifo.w_rdy),
        ]
        with m.If(fault & ~marker & (inflight == 0) & ~resp.valid & fifo.w_rdy):
            m.d.comb += [word.entry.word.eq(Const(0, INSN_BITS)), word.entry.index.eq(pc),
                         word.fault.eq(1), fifo.w_en.eq(1)]
            m.d.sync += marker.eq(1)
        m.d.sync += inflight.eq(inflight + issue - take)
        m.d.comb += [
            self.insns.valid.eq(fifo.r_rdy),
            self.insns.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.insns.ready),
        ]
        return m
