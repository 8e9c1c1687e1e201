"""The compute unit: GEMM, ALU, CONFIG and SYNC instructions, and the systolic array.

A front stage takes each instruction's tokens and, for a GEMM, preloads its weights
(``cols`` scratchpad rows, one per cycle while the streamer leaves the bank free) into
the array's idle weight buffer; the streamer then feeds the GEMM's activation rows to
the array, one per cycle, so the next tile's weights load while this tile computes.
Results are added to the old accumulator row (read one stage before the array's output)
on write. ALU, CONFIG and SYNC run once the array has drained; the ALU reads each row's
destination and source (one cycle when they are in different banks, two when not) and
writes the row the cycle after, through its datapath (:mod:`.vector`). A GEMM gives its
``push_prev`` token once it has read its last scratchpad row and its ``push_next`` token
once its last accumulator row is written.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..array import MacOptions, SystolicArray
from ..config import NPUConfig, require_config
from ..isa import INSTRUCTION, AluOp, Opcode
from ..sram import ReadClient, WriteClient
from .tokens import QUEUE_ENTRY, QueueTokens, connect_flags, queue_head
from .vector import VectorALU

__all__ = ["ComputeUnit"]


class ComputeUnit(wiring.Component):
    """The compute queue's unit, with the array.

    Parameters
    ----------
    config: the NPU configuration.
    mac: the array's implementation options (:class:`~hw.array.MacOptions` or a preset
        name); everything here follows the array's ``latency``.

    Ports
    -----
    insn: the compute queue (stream of :data:`~hw.core.tokens.QUEUE_ENTRY`).
    tokens: its side of the token counters.
    spad_stream, spad_wload: scratchpad read clients of the streamer (first in priority)
        and the weight preload.
    acc_rd, acc_src, acc_wr: accumulator clients: the accumulate read or ALU destination,
        the ALU source, the writeback or ALU write (``acc_rd`` and ``acc_wr`` first in
        priority: the pipeline cannot wait).
    halt: stop (an error): start nothing new.
    array_busy: an activation row enters the array this cycle.
    layer: the value of the last CONFIG executed.
    begin, end: an instruction starts, completes in this cycle (a pulse each, for traces;
        both in one cycle for a one-cycle instruction): a GEMM from its first activation
        row entering the array to its last (its weight preload overlaps the GEMM before;
        its last rows are written back while the next instruction runs), an ALU from the
        cycle the array is drained to its last write, CONFIG and SYNC in that cycle.
    idle, waiting, stalled, index: as the other queue units (``idle`` and ``waiting``
        also need the array drained).

    Raises
    ------
    TypeError: ``config`` is not an NPUConfig.
    """

    def __init__(self, config: NPUConfig, *, mac=None) -> None:
        self.config = require_config(config)
        self.mac = MacOptions.cast(mac)
        R, C = config.rows, config.cols
        spad = ReadClient(addr_width=ceil_log2(config.spad_depth), width=8 * R)
        acc_aw = ceil_log2(config.acc_depth)
        super().__init__({
            "insn": In(stream.Signature(QUEUE_ENTRY)),
            "tokens": Out(QueueTokens()),
            "spad_stream": Out(spad), "spad_wload": Out(spad),
            "acc_rd": Out(ReadClient(addr_width=acc_aw, width=32 * C)),
            "acc_src": Out(ReadClient(addr_width=acc_aw, width=32 * C)),
            "acc_wr": Out(WriteClient(addr_width=acc_aw, width=32 * C)),
            "halt": In(1),
            "array_busy": Out(1), "layer": Out(32), "begin": Out(1), "end": Out(1),
            "idle": Out(1), "waiting": Out(1), "stalled": Out(1), "index": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.config.rows, self.config.cols
        m.submodules.array = array = SystolicArray(rows=R, cols=C, mac=self.mac)
        L = array.latency

        cu_entry = Signal(QUEUE_ENTRY)
        m.d.comb += self.index.eq(cu_entry.index)
        cv = data.View(INSTRUCTION, cu_entry.word)
        cu_hdr = cv.gemm.hdr
        cu_op = cu_hdr.opcode.as_value()
        cg, ca, cc = cv.gemm, cv.alu, cv.config
        connect_flags(m, self.tokens, cu_hdr)

        # Streamer state (one GEMM at a time) and the array's input stage.
        s_busy = Signal()
        s_i = Signal(14)
        s_inp = Signal(14)
        s_acc = Signal(14)
        s_m = Signal(14)
        s_accum = Signal()
        s_buf = Signal()
        s_pp = Signal()
        s_pn = Signal()
        meta_layout = data.StructLayout({
            "valid": 1, "acc": 14, "accum": 1, "last": 1, "push_prev": 1, "push_next": 1})
        p_valid = Signal()
        p_first = Signal()      # the row in the input stage is its GEMM's first (for traces)
        p_buf = Signal()
        p_meta = Signal(meta_layout)
        meta = [p_meta]
        for k in range(1, L + 1):
            reg = Signal(meta_layout, name=f"meta_{k}")
            m.d.sync += reg.eq(meta[-1])
            meta.append(reg)
        pipe_busy = Signal()
        m.d.comb += pipe_busy.eq(Cat(*[mm.valid for mm in meta]).any() | s_busy)

        # A weight buffer may be rewritten once its last user has passed every row: column c
        # is written c cycles after column 0, and the last activation reaches PE (r, c)
        # r + c cycles after it entered, so R + 1 cycles of margin are enough.
        busy_cnt = [Signal(range(R + 3), name=f"wbuf{b}_busy") for b in range(2)]
        for b in range(2):
            with m.If(p_valid & (p_buf == b)):
                m.d.sync += busy_cnt[b].eq(R + 1)
            with m.Elif(busy_cnt[b] != 0):
                m.d.sync += busy_cnt[b].eq(busy_cnt[b] - 1)

        m.d.comb += [self.spad_stream.en.eq(s_busy), self.spad_stream.addr.eq(s_inp + s_i)]
        with m.If(s_busy):
            m.d.sync += [
                p_valid.eq(1), p_first.eq(s_i == 0), p_buf.eq(s_buf),
                p_meta.valid.eq(1), p_meta.acc.eq(s_acc + s_i), p_meta.accum.eq(s_accum),
                p_meta.last.eq(s_i + 1 == s_m),
                p_meta.push_prev.eq(s_pp & (s_i + 1 == s_m)),
                p_meta.push_next.eq(s_pn & (s_i + 1 == s_m)),
                s_i.eq(s_i + 1),
            ]
            with m.If(s_i + 1 == s_m):
                m.d.sync += s_busy.eq(0)
        with m.Else():
            m.d.sync += [p_valid.eq(0), p_first.eq(0), p_meta.eq(0)]
        m.d.comb += [
            array.a_valid.eq(p_valid),
            array.a_sel.eq(p_buf),
            array.a.eq(self.spad_stream.data),
        ]
        m.d.comb += self.array_busy.eq(p_valid)

        # Writeback: read the old row one stage early (only to accumulate), add at the output.
        # The ALU, which runs only while the pipeline is empty, takes the same ports.
        wb = meta[L]
        alu_active = Signal()
        alu_rd_dst = Signal(14)
        alu_rd_src = Signal(14)
        alu_need_d = Signal()
        alu_need_s = Signal()
        alu_wr_en = Signal()
        alu_wr_addr = Signal(14)
        alu_wr_data = Signal(32 * C)
        alu_issue = Signal()
        alu_live_d = Signal()
        alu_live_s = Signal()
        alu_wr_pend = Signal()
        alu_d_lat = Signal(32 * C)
        alu_s_lat = Signal(32 * C)
        alu_row_ready = Signal()    # the row pending write has its result
        got_row = Signal()          # the row being read has both operands this cycle
        m.d.comb += self.acc_src.addr.eq(alu_rd_src)
        with m.If(alu_active):
            m.d.comb += [self.acc_rd.en.eq(alu_issue & alu_need_d), self.acc_rd.addr.eq(alu_rd_dst),
                         self.acc_src.en.eq(alu_issue & alu_need_s)]
        with m.Else():
            m.d.comb += [self.acc_rd.en.eq(meta[L - 1].valid & meta[L - 1].accum),
                         self.acc_rd.addr.eq(meta[L - 1].acc)]
        old = data.View(data.ArrayLayout(signed(32), C), self.acc_rd.data)
        gemm_row = Cat(*[(array.out[c] + Mux(wb.accum, old[c], 0))[:32] for c in range(C)])
        with m.If(alu_wr_en):
            m.d.comb += [self.acc_wr.en.eq(1), self.acc_wr.addr.eq(alu_wr_addr), self.acc_wr.data.eq(alu_wr_data)]
        with m.Else():
            m.d.comb += [self.acc_wr.en.eq(wb.valid), self.acc_wr.addr.eq(wb.acc), self.acc_wr.data.eq(gemm_row)]
        # A GEMM gives its push_prev token (to the load queue) once it has read its last
        # scratchpad row, so the next load can reuse the slot while the array drains; its
        # push_next token (to the store queue) once its last accumulator row is written.
        gemm_done_pp = s_busy & (s_i + 1 == s_m) & s_pp
        gemm_done_pn = wb.valid & wb.push_next

        # Front stage.
        nb = Signal()          # buffer the weights go to
        last_buf = Signal()    # buffer of the most recently loaded tile
        wi = Signal(range(C + 2))
        alu_i = Signal(15)
        nongemm_begin = Signal()
        nongemm_done = Signal()
        # The preload reads weight column wi when the streamer leaves its bank free; the
        # column is written to the array the cycle after.
        wl_valid = Signal()
        wl_col = Signal(range(C))
        wl_free = ((busy_cnt[0] == 0) | nb) & ((busy_cnt[1] == 0) | ~nb)
        m.d.comb += self.spad_wload.addr.eq(cg.wgt + wi)
        m.d.sync += [wl_valid.eq(self.spad_wload.en & self.spad_wload.grant), wl_col.eq(wi)]
        m.d.comb += [
            array.w_en.eq(wl_valid),
            array.w_buf.eq(nb),
            array.w_col.eq(wl_col),
            array.w_data.eq(self.spad_wload.data),
        ]
        with m.FSM(name="compute_unit") as cu_fsm:
            with queue_head(m, self.insn, cu_entry, self.tokens, self.halt, self.stalled):
                with m.If(cu_op == Opcode.GEMM.value):
                    with m.If(cg.keep_wgt):
                        m.d.sync += nb.eq(last_buf)
                        m.next = "HANDOFF"
                    with m.Else():
                        m.d.sync += [nb.eq(~last_buf), wi.eq(0)]
                        m.next = "WLOAD"
                with m.Else():
                    m.next = "DRAIN"
            with m.State("WLOAD"):
                # Wait until nothing in the array still uses buffer nb, then C reads.
                with m.If(wi != C):
                    m.d.comb += self.spad_wload.en.eq(wl_free)
                    with m.If(wl_free & self.spad_wload.grant):
                        m.d.sync += wi.eq(wi + 1)
                with m.Else():
                    m.d.sync += last_buf.eq(nb)
                    m.next = "HANDOFF"
            with m.State("HANDOFF"):
                # The streamer takes the next GEMM in the cycle it issues its last row.
                with m.If(~s_busy | (s_i + 1 == s_m)):
                    m.d.sync += [
                        s_busy.eq(1), s_i.eq(0), s_inp.eq(cg.inp), s_acc.eq(cg.acc),
                        s_m.eq(cg.m), s_accum.eq(cg.accumulate), s_buf.eq(nb),
                        s_pp.eq(cu_hdr.push_prev), s_pn.eq(cu_hdr.push_next),
                    ]
                    m.next = "IDLE"
            with m.State("DRAIN"):
                with m.If(~pipe_busy):
                    m.d.comb += nongemm_begin.eq(1)
                    with m.If(cu_op == Opcode.ALU.value):
                        m.d.sync += [alu_i.eq(0), alu_rd_dst.eq(ca.dst), alu_rd_src.eq(ca.src),
                                     alu_need_d.eq(1), alu_need_s.eq(~ca.use_imm)]
                        m.next = "ALU"
                    with m.Else():
                        m.d.comb += nongemm_done.eq(1)
                        with m.If(cu_op == Opcode.CONFIG.value):
                            m.d.sync += self.layer.eq(cc.value)
                        m.next = "IDLE"
            with m.State("ALU"):
                # Row alu_i's destination and source are read (both in one cycle when they
                # are in different banks, else the destination first); the cycle after its
                # last read, the row is written while the next row is read. A sequential
                # multiplier (alu_mul_bits) holds the row, reading nothing, until its
                # product is done: 32 / alu_mul_bits cycles from that cycle.
                m.d.comb += alu_active.eq(1)
                got_d = ~alu_need_d | self.acc_rd.grant
                got_s = ~alu_need_s | self.acc_src.grant
                m.d.sync += [alu_live_d.eq(alu_need_d & self.acc_rd.grant),
                             alu_live_s.eq(alu_need_s & self.acc_src.grant)]
                with m.If(alu_wr_pend & ~alu_row_ready):
                    pass
                with m.Elif(alu_i != ca.count):
                    m.d.comb += [alu_issue.eq(1), got_row.eq(got_d & got_s)]
                    with m.If(got_d & got_s):
                        m.d.sync += [
                            alu_i.eq(alu_i + 1),
                            alu_rd_dst.eq(alu_rd_dst + ca.dst_stride),
                            alu_rd_src.eq(alu_rd_src + ca.src_stride),
                            alu_wr_addr.eq(alu_rd_dst),
                            alu_wr_pend.eq(1),
                            alu_need_d.eq(1),
                            alu_need_s.eq(~ca.use_imm),
                        ]
                    with m.Else():
                        m.d.sync += [alu_wr_pend.eq(0), alu_need_d.eq(~got_d),
                                     alu_need_s.eq(~got_s)]
                with m.Else():
                    m.d.sync += alu_wr_pend.eq(0)
                    m.d.comb += nongemm_done.eq(1)
                    m.next = "IDLE"
        # The ALU datapath: an operand read in an earlier cycle comes from its latch.
        m.d.comb += alu_wr_en.eq(alu_active & alu_wr_pend & alu_row_ready)
        with m.If(alu_live_d):
            m.d.sync += alu_d_lat.eq(self.acc_rd.data)
        with m.If(alu_live_s):
            m.d.sync += alu_s_lat.eq(self.acc_src.data)
        m.submodules.vector_alu = valu = VectorALU(lanes=C, mul_bits=self.config.alu_mul_bits)
        if self.config.alu_mul_bits:
            # A row of MUL or MULH starts the multiplier in its first cycle with operands
            # (the cycle after its last read) and is written in its last.
            is_mul = (ca.op == AluOp.MUL) | (ca.op == AluOp.MULH)
            mul_first = Signal()
            m.d.sync += mul_first.eq(0)
            with m.If(alu_issue & got_row):
                m.d.sync += mul_first.eq(1)
            m.d.comb += [valu.mul_start.eq(mul_first),
                         alu_row_ready.eq(~is_mul | valu.mul_done)]
        else:
            m.d.comb += alu_row_ready.eq(1)
        m.d.comb += [
            valu.op.eq(ca.op),
            valu.d.eq(Mux(alu_live_d, self.acc_rd.data, alu_d_lat)),
            valu.s.eq(Mux(alu_live_s, self.acc_src.data, alu_s_lat)),
            alu_wr_data.eq(valu.out),
        ]
        with m.If(ca.use_imm):
            m.d.comb += [valu.s[c].eq(ca.imm) for c in range(C)]

        # Compute's token completions.
        cu_pp_done = Signal()
        cu_pn_done = Signal()
        m.d.comb += [
            cu_pp_done.eq(gemm_done_pp | (nongemm_done & cu_hdr.push_prev)),
            cu_pn_done.eq(gemm_done_pn | (nongemm_done & cu_hdr.push_next)),
            self.tokens.done.push_prev.eq(cu_pp_done),
            self.tokens.done.push_next.eq(cu_pn_done),
            self.begin.eq((p_valid & p_first) | nongemm_begin),
            self.end.eq((p_valid & p_meta.last) | nongemm_done),
            self.idle.eq(cu_fsm.ongoing("IDLE") & ~self.insn.valid & ~pipe_busy),
            self.waiting.eq(cu_fsm.ongoing("WAIT") & ~self.tokens.ready & ~pipe_busy),
        ]
        return m
