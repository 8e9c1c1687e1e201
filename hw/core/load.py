"""The load unit: LOAD instructions, from DRAM to the scratchpad, accumulator or
parameter memory.

It walks a LOAD's 2D pattern (``pad_top + y_size + pad_bottom`` rows of
``pad_left + x_size + pad_right`` vectors), sends one DMA read per data vector and
writes padding vectors itself, one write per cycle: a DMA response first, else a
padding row. Each row is formatted for its memory (int8 rows, int8 sign-extended to
int32, or little-endian int32; elements past ``length`` take the pad value). A write
waits while the memory bank's write port is taken (compute has priority on the
accumulator): the DMA response is then held. The unit finishes (gives its tokens) once
the walk is done and every response is written. A SYNC in the load queue only takes
and gives its tokens.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import NPUConfig, require_config
from ..isa import DRAM_ELEM_BYTES, INSTRUCTION, PARAM_ELEM_BYTES, Mem, Opcode, Queue, row_elements
from ..sram import WriteClient
from .tokens import QUEUE_ENTRY, QueueTokens, connect_flags, give_pushes, queue_head

__all__ = ["LoadUnit", "load_max_bytes"]

#: Bits of the DMA tag: the memory row a response goes to.
TAG_BITS = 14


def load_max_bytes(config: NPUConfig) -> int:
    """The longest vector a LOAD reads: a scratchpad row or a row of int32 parameters."""
    return max(row_elements(mem, config.rows, config.cols) * DRAM_ELEM_BYTES[mem] for mem in Mem)


class LoadUnit(wiring.Component):
    """The load queue's unit.

    Parameters
    ----------
    config: the NPU configuration.

    Ports
    -----
    insn: the load queue (stream of :data:`~hw.core.tokens.QUEUE_ENTRY`).
    tokens: its side of the token counters.
    dma_req: vector reads for the DMA reader (``addr``, ``nbytes``, ``tag`` = the row).
    dma_resp: the DMA reader's vectors (``data``, ``tag``), in request order.
    spad, acc, param: write clients of the three memories.
    halt: stop (an error): start nothing new.
    idle: nothing queued or running. waiting: the head waits for tokens; stalled: the
        same, counted (not while halted). in_flight: DMA reads not yet answered.
    index: the index of the current instruction.
    begin, end: an instruction takes its tokens, completes in this cycle (a pulse each,
        for traces).

    Raises
    ------
    TypeError: ``config`` is not an NPUConfig.
    """

    def __init__(self, config: NPUConfig) -> None:
        self.config = require_config(config)
        R, C = config.rows, config.cols
        nmax = load_max_bytes(config)
        super().__init__({
            "insn": In(stream.Signature(QUEUE_ENTRY)),
            "tokens": Out(QueueTokens()),
            "dma_req": Out(stream.Signature(data.StructLayout(
                {"addr": 32, "nbytes": range(nmax + 1), "tag": TAG_BITS}))),
            "dma_resp": In(stream.Signature(data.StructLayout(
                {"data": data.ArrayLayout(8, nmax), "tag": TAG_BITS}))),
            "spad": Out(WriteClient(addr_width=ceil_log2(config.spad_depth), width=8 * R)),
            "acc": Out(WriteClient(addr_width=ceil_log2(config.acc_depth), width=32 * C)),
            "param": Out(WriteClient(addr_width=ceil_log2(config.param_depth), width=32 * C)),
            "halt": In(1),
            "idle": Out(1), "waiting": Out(1), "stalled": Out(1), "in_flight": Out(1),
            "index": Out(32), "begin": Out(1), "end": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.config.rows, self.config.cols
        halt = self.halt
        req, resp = self.dma_req, self.dma_resp
        entry = Signal(QUEUE_ENTRY)
        lu = data.View(INSTRUCTION, entry.word).load
        m.d.comb += self.index.eq(entry.index)
        connect_flags(m, self.tokens, lu.hdr)
        finished = Signal()
        give_pushes(m, self.tokens, Queue.LOAD, lu.hdr, finished)
        m.d.comb += [self.begin.eq(self.tokens.start), self.end.eq(finished)]

        ny = Signal(12)
        nx = Signal(12)
        m.d.comb += [
            ny.eq(lu.pad_top + lu.y_size + lu.pad_bottom),
            nx.eq(lu.pad_left + lu.x_size + lu.pad_right),
        ]
        yy = Signal(12)
        xx = Signal(12)
        row = Signal(24)
        y_addr = Signal(32)
        x_addr = Signal(32)
        outstanding = Signal(8)
        nbytes = Signal(range(load_max_bytes(self.config) + 1))
        with m.Switch(lu.mem):
            for mem in Mem:
                with m.Case(mem):
                    m.d.comb += nbytes.eq(lu.length * DRAM_ELEM_BYTES[mem])
        data_row = (yy >= lu.pad_top) & (yy < lu.pad_top + lu.y_size)
        data_vec = data_row & (xx >= lu.pad_left) & (xx < lu.pad_left + lu.x_size)
        walk_done = yy == ny
        advance = Signal()
        sent = Signal()
        written = Signal()      # a DMA response written this cycle
        pad_write = Signal()

        # Row formatting for each memory (elements past `length` take the pad value).
        def sext32(v8):
            return Cat(v8, v8[7].replicate(24))

        pad8 = lu.pad_value[:8]
        pad32 = sext32(pad8)
        rb = resp.payload.data
        spad_row = Cat(*[Mux(j < lu.length, rb[j], pad8) for j in range(R)])
        acc_row = Cat(*[Mux(j < lu.length, sext32(rb[j]), pad32) for j in range(C)])
        E = PARAM_ELEM_BYTES
        par_row = Cat(*[Mux(j < lu.length, Cat(*[rb[E * j + k] for k in range(E)]), pad32)
                        for j in range(C)])
        spad_pad = Cat(*[pad8 for _ in range(R)])
        acc_pad = Cat(*[pad32 for _ in range(C)])

        # One write per cycle: a DMA response, else a padding row.
        wr_addr = Signal(TAG_BITS)
        wr_req = Signal()
        wr_grant = Signal()
        with m.If(resp.valid):
            m.d.comb += wr_addr.eq(resp.payload.tag)
        with m.Else():
            m.d.comb += wr_addr.eq(row)
        to = {Mem.SPAD: lu.mem == Mem.SPAD, Mem.ACC: lu.mem == Mem.ACC,
              Mem.PARAM: lu.mem == Mem.PARAM}
        ports = {Mem.SPAD: (self.spad, spad_row, spad_pad), Mem.ACC: (self.acc, acc_row, acc_pad),
                 Mem.PARAM: (self.param, par_row, acc_pad)}
        for mem, (port, from_dram, padding) in ports.items():
            m.d.comb += [
                port.addr.eq(wr_addr),
                port.data.eq(Mux(resp.valid, from_dram, padding)),
                port.en.eq(wr_req & to[mem]),
            ]
        m.d.comb += [
            wr_grant.eq(Cat(*[port.grant & to[mem] for mem, (port, _, _) in ports.items()]).any()),
            resp.ready.eq(wr_grant),
            written.eq(resp.valid & wr_grant),
            wr_req.eq(resp.valid | pad_write),
            req.payload.addr.eq(x_addr),
            req.payload.nbytes.eq(nbytes),
            req.payload.tag.eq(row),
            self.in_flight.eq(outstanding != 0),
        ]
        m.d.sync += outstanding.eq(outstanding + sent - written)

        with m.FSM(name="fsm") as fsm:
            with queue_head(m, self.insn, entry, self.tokens, halt, self.stalled):
                with m.If(lu.hdr.opcode == Opcode.SYNC):
                    # Tokens only: its other bits are no LOAD's fields.
                    m.next = "SYNC"
                with m.Else():
                    m.d.sync += [yy.eq(0), xx.eq(0), row.eq(lu.sram), y_addr.eq(lu.dram),
                                 x_addr.eq(lu.dram)]
                    m.next = "RUN"
            with m.State("SYNC"):
                # Done the cycle after it took its tokens, as a LOAD of no vectors would be.
                with m.If(~halt):
                    m.d.comb += finished.eq(1)
                    m.next = "IDLE"
            with m.State("RUN"):
                with m.If(~walk_done & ~halt):
                    with m.If(data_vec):
                        m.d.comb += req.valid.eq(1)
                        with m.If(req.ready):
                            m.d.comb += [sent.eq(1), advance.eq(1)]
                    with m.Elif(~resp.valid):
                        m.d.comb += pad_write.eq(1)
                        with m.If(wr_grant):
                            m.d.comb += advance.eq(1)
                with m.If(walk_done & (outstanding == 0) & ~written & ~halt):
                    m.d.comb += finished.eq(1)
                    m.next = "IDLE"
        with m.If(advance):
            m.d.sync += row.eq(row + 1)
            with m.If(data_vec):
                m.d.sync += x_addr.eq(x_addr + lu.x_stride)
            with m.If(xx + 1 == nx):
                m.d.sync += [xx.eq(0), yy.eq(yy + 1)]
                with m.If(data_row):
                    m.d.sync += [y_addr.eq(y_addr + lu.y_stride), x_addr.eq(y_addr + lu.y_stride)]
                with m.Else():
                    m.d.sync += x_addr.eq(y_addr)
            with m.Else():
                m.d.sync += xx.eq(xx + 1)
        m.d.comb += [
            self.idle.eq(fsm.ongoing("IDLE") & ~self.insn.valid),
            self.waiting.eq(fsm.ongoing("WAIT") & ~self.tokens.ready),
        ]
        return m
