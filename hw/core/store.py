"""The store unit: STORE instructions, from accumulator rows to int8 rows in DRAM.

For each STORE it reads the parameter group (bias, multiplier, shift rows) and, with
``lut``, the activation table rows after it (into registers, a row per cycle, or with
``config.table_write_bytes`` into one block RAM per lane, that many entries per cycle),
then streams ``rows`` accumulator rows through the requantizer into a small FIFO and on to
the DMA writer, one row per cycle while the FIFO has room and compute leaves the
row's accumulator bank free; it finishes (gives its tokens) once every row is
written to DRAM. A SYNC in the store queue only takes and gives its tokens.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import NPUConfig, require_config
from ..isa import (INSTRUCTION, LUT_ENTRIES, PARAM_ELEM_BYTES, PARAM_GROUP_ROWS, PARAM_ROWS,
                   Opcode, Queue, table_rows)
from ..requant import Requantizer
from ..sram import ReadClient
from .tokens import QUEUE_ENTRY, QueueTokens, connect_flags, give_pushes, queue_head

__all__ = ["StoreUnit", "store_request"]

_FIFO_DEPTH = 16


def store_request(cols: int) -> data.StructLayout:
    """A row for the DMA writer: ``nbytes`` bytes of ``data`` to ``addr``, tagged with
    the instruction's index (for a DMA window error)."""
    return data.StructLayout({"addr": 32, "nbytes": range(cols + 1),
                              "data": data.ArrayLayout(8, cols), "tag": 32})


def _select(value, index, width):
    """Word ``index`` of ``width`` bits of ``value``; ``value`` itself when it is one word."""
    return value if len(value) == width else value.word_select(index, width)


class StoreUnit(wiring.Component):
    """The store queue's unit.

    Parameters
    ----------
    config: the NPU configuration (``cols``, ``acc_depth``, ``param_depth``).

    Ports
    -----
    insn: the store queue (stream of :data:`~hw.core.tokens.QUEUE_ENTRY`).
    tokens: its side of the token counters.
    acc, param: read clients of the accumulator and the parameter memory (the
        parameter reads must always be granted: the unit is that memory's only reader).
    dma: the rows to write (stream of :func:`store_request`).
    dma_idle: the DMA writer has every write answered.
    halt: stop (an error): start nothing new.
    idle: nothing queued or running. waiting: the head waits for tokens; stalled: the
        same, counted (not while halted). index: the index of the current instruction.
    begin, end: an instruction takes its tokens, completes in this cycle (a pulse each,
        for traces).

    Raises
    ------
    TypeError: ``config`` is not an NPUConfig.
    """

    def __init__(self, config: NPUConfig) -> None:
        self.config = require_config(config)
        C = config.cols
        super().__init__({
            "insn": In(stream.Signature(QUEUE_ENTRY)),
            "tokens": Out(QueueTokens()),
            "acc": Out(ReadClient(addr_width=ceil_log2(config.acc_depth), width=32 * C)),
            "param": Out(ReadClient(addr_width=ceil_log2(config.param_depth), width=32 * C)),
            "dma": Out(stream.Signature(store_request(C))),
            "dma_idle": In(1),
            "halt": In(1),
            "idle": Out(1), "waiting": Out(1), "stalled": Out(1), "index": Out(32),
            "begin": Out(1), "end": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.config.cols
        halt = self.halt
        entry = Signal(QUEUE_ENTRY)
        su = data.View(INSTRUCTION, entry.word).store
        m.d.comb += self.index.eq(entry.index)
        connect_flags(m, self.tokens, su.hdr)
        finished = Signal()
        give_pushes(m, self.tokens, Queue.STORE, su.hdr, finished)
        m.d.comb += [self.begin.eq(self.tokens.start), self.end.eq(finished)]

        # With requant_lanes L < cols, each row passes through the requantizer's L lanes in
        # C / L consecutive cycles (its accumulator row read once a pass), the results of a
        # row's passes gathered until its last.
        L = self.config.requant_lanes or C
        K = C // L
        m.submodules.requant = rq = Requantizer(lanes=L, tag_width=32 + ceil_log2(K))
        # Each row carries its own length and instruction index through the FIFO: the unit
        # may go on to the next STORE while the last rows of this one wait for the DMA.
        request = store_request(C)
        m.submodules.fifo = ofifo = SyncFIFOBuffered(width=request.size, depth=_FIFO_DEPTH)
        row_out = Signal(request)
        params = {name: Signal(32 * C, name=name) for name in PARAM_ROWS}
        T = table_rows(C)
        N = self.config.table_write_bytes
        pi = Signal(range(PARAM_GROUP_ROWS + T + 1))
        ri = Signal(13)
        row_addr = Signal(32)
        rq_inflight = Signal(4)     # rows read (a pass at least) and not yet in the FIFO
        rd_valid = Signal()
        rd_addr = Signal(32)
        # (At least one bit each, so that no zero-width wire reaches the Verilog.)
        ps = Signal(range(max(K, 2)))       # the pass of the row being read
        rd_pass = Signal(range(max(K, 2)))
        o_pass = Signal(range(max(K, 2)))
        o_last = Signal()           # the requantizer's output is its row's last pass
        m.d.comb += [o_pass.eq(rq.o_tag[32:]), o_last.eq(o_pass == K - 1)]
        m.d.comb += [
            self.param.en.eq(1),
            self.param.addr.eq(su.param * PARAM_GROUP_ROWS + pi),
            self.acc.addr.eq(su.acc + ri),
            rq.bias.eq(_select(params["bias"], rd_pass, 32 * L)),
            rq.mult.eq(_select(params["mult"], rd_pass, 32 * L)),
            rq.shift.eq(_select(params["shift"], rd_pass, 32 * L)),
            rq.out_zp.eq(su.out_zp), rq.clamp_lo.eq(su.clamp_lo), rq.clamp_hi.eq(su.clamp_hi),
            rq.i_valid.eq(rd_valid), rq.i_acc.eq(_select(self.acc.data, rd_pass, 32 * L)),
            rq.i_tag.eq(Cat(rd_addr, rd_pass)),
            row_out.addr.eq(rq.o_tag[:32]), row_out.nbytes.eq(su.length),
            row_out.tag.eq(entry.index),
            ofifo.w_en.eq(rq.o_valid & o_last), ofifo.w_data.eq(row_out),
        ]
        lanes_out = Signal(8 * L)   # the requantizer's lanes, through the table with lut
        # The activation table (``lut``): each requantized lane v becomes table[v + 128];
        # the table rows' bytes in order are its entries.
        if N:
            # In block RAM: one memory per lane (each lane looks up any entry), N entries a
            # word, written during TABLE; read by the requantizer's last stage's input, so
            # the entry arrives with the lane's result.
            per_row = PARAM_ELEM_BYTES * C // N        # words in a parameter row
            t_row = Signal(range(T + 1))
            t_sub = Signal(range(max(per_row, 2)))
            t_wen = Signal()
            for j in range(L):
                mem = Memory(shape=8 * N, depth=LUT_ENTRIES // N, init=[])
                m.submodules[f"table_{j}"] = mem
                wr = mem.write_port()
                rd = mem.read_port()
                entry_next = Value.cast(rq.o_next[j]).as_unsigned() ^ 0x80
                byte = Signal(range(max(N, 2)), name=f"table_byte_{j}")
                m.d.sync += byte.eq(entry_next[:N.bit_length() - 1])
                m.d.comb += [
                    wr.en.eq(t_wen), wr.addr.eq(t_row * per_row + t_sub),
                    wr.data.eq(_select(self.param.data, t_sub, 8 * N)),
                    rd.addr.eq(entry_next >> (N.bit_length() - 1)),
                ]
                v = Value.cast(rq.o_data[j]).as_unsigned()
                m.d.comb += lanes_out.word_select(j, 8).eq(
                    Mux(su.lut, _select(rd.data, byte, 8), v))
        else:
            table = [Signal(32 * C, name=f"table_{t}") for t in range(T)]
            flat = Cat(*table)
            for j in range(L):
                v = Value.cast(rq.o_data[j]).as_unsigned()
                m.d.comb += lanes_out.word_select(j, 8).eq(
                    Mux(su.lut, flat.word_select(v ^ 0x80, 8), v))
        if K > 1:
            gathered = Signal(8 * L * (K - 1))    # the row's earlier passes
            with m.If(rq.o_valid & ~o_last):
                m.d.sync += gathered.word_select(o_pass, 8 * L).eq(lanes_out)
            m.d.comb += row_out.data.eq(Cat(gathered, lanes_out))
        else:
            m.d.comb += row_out.data.eq(lanes_out)
        issue = Signal()
        m.d.sync += [
            rd_valid.eq(issue), rd_addr.eq(row_addr), rd_pass.eq(ps),
            rq_inflight.eq(rq_inflight + (issue & (ps == 0)) - (rq.o_valid & o_last)),
        ]
        with m.FSM(name="fsm") as fsm:
            with queue_head(m, self.insn, entry, self.tokens, halt, self.stalled):
                with m.If(su.hdr.opcode == Opcode.SYNC):
                    # Tokens only: its other bits are no STORE's fields.
                    m.next = "SYNC"
                with m.Else():
                    m.d.sync += pi.eq(0)
                    m.next = "PARAM"
            with m.State("SYNC"):
                # Done the cycle after it took its tokens (as sw/analysis/perf.py times it).
                with m.If(~halt):
                    m.d.comb += finished.eq(1)
                    m.next = "IDLE"
            with m.State("PARAM"):
                # Parameter row pi is read; the row read the cycle before arrives.
                m.d.sync += pi.eq(pi + 1)
                with m.Switch(pi):
                    for k, name in enumerate(PARAM_ROWS):
                        with m.Case(k + 1):
                            m.d.sync += params[name].eq(self.param.data)
                            if k + 1 == PARAM_GROUP_ROWS:
                                with m.If(~su.lut):
                                    m.d.sync += [ri.eq(0), row_addr.eq(su.dram)]
                                    m.next = "RUN"
                                if N:
                                    with m.Else():
                                        # Table row 0 is read in this cycle.
                                        m.d.sync += [t_row.eq(0), t_sub.eq(0)]
                                        m.next = "TABLE"
                    if not N:
                        for t in range(T):
                            with m.Case(PARAM_GROUP_ROWS + t + 1):
                                m.d.sync += table[t].eq(self.param.data)
                                if t + 1 == T:
                                    m.d.sync += [ri.eq(0), row_addr.eq(su.dram)]
                                    m.next = "RUN"
            if N:
                with m.State("TABLE"):
                    # Word t_sub of table row t_row is written; the row's data stays on the
                    # read port while its address does, and the next row is addressed in its
                    # last word's cycle, so a word is written every cycle (256 / N cycles).
                    # It ends with the word of entry 255 (the last row may hold more).
                    last_word = t_sub == per_row - 1
                    m.d.comb += [
                        t_wen.eq(1),
                        self.param.addr.eq(su.param * PARAM_GROUP_ROWS + PARAM_GROUP_ROWS
                                           + t_row + last_word),
                    ]
                    with m.If(last_word):
                        m.d.sync += [t_sub.eq(0), t_row.eq(t_row + 1)]
                    with m.Else():
                        m.d.sync += t_sub.eq(t_sub + 1)
                    with m.If(t_row * per_row + t_sub == LUT_ENTRIES // N - 1):
                        m.d.sync += [ri.eq(0), row_addr.eq(su.dram)]
                        m.next = "RUN"
            with m.State("RUN"):
                # A row is read when the FIFO has room for it and for every row in flight
                # (the read and the requantizer's stages), and compute leaves its bank free.
                # 16 entries keep a row per cycle flowing while the DMA takes one per cycle.
                # A row's later passes follow its first without that check.
                room = ofifo.level + rq_inflight < _FIFO_DEPTH
                m.d.comb += self.acc.en.eq(~halt & ((ps != 0) | room))
                with m.If(self.acc.en & self.acc.grant):
                    m.d.comb += issue.eq(1)
                    with m.If(ps == K - 1):
                        m.d.sync += [ri.eq(ri + 1), row_addr.eq(row_addr + su.stride)]
                        if K > 1:
                            m.d.sync += ps.eq(0)
                        with m.If(ri + 1 == su.rows):
                            m.next = "FLUSH"
                    if K > 1:
                        with m.Else():
                            m.d.sync += ps.eq(ps + 1)
            with m.State("FLUSH"):
                # Finished (and its token given) only once every row is in DRAM: the
                # output FIFO empty (its level counts a row still moving in, which r_rdy
                # does not show yet) and the writer idle after its last response.
                with m.If(~halt & (rq_inflight == 0) & ~issue & ~rd_valid & (ofifo.level == 0)
                          & self.dma_idle & ~self.dma.valid):
                    m.d.comb += finished.eq(1)
                    m.next = "IDLE"
        m.d.comb += [
            self.dma.valid.eq(ofifo.r_rdy & ~halt),
            self.dma.payload.eq(ofifo.r_data),
            ofifo.r_en.eq(self.dma.valid & self.dma.ready),
            self.idle.eq(fsm.ongoing("IDLE") & ~self.insn.valid & (ofifo.level == 0)),
            self.waiting.eq(fsm.ongoing("WAIT") & ~self.tokens.ready),
        ]
        return m
