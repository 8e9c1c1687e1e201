"""The dispatcher: checks each fetched word and sends it, in order, to its queue.

A word is legal when its opcode is a member of :class:`~hw.isa.Opcode` and every
enum-typed field of its format holds a member of its enum; its queue comes from
:func:`~hw.isa.queue_of` and the dependency flags it may set from
:func:`~hw.isa.allowed_deps`; its fields must fit the configuration (rows, widths,
depths). The first failing check stops dispatch with an error code and the word's
index: a fetch fault (``DMA_WINDOW``), ``ILLEGAL_OPCODE``, then ``FIELD_RANGE``.
FINISH is consumed here and ends dispatch.
"""

from __future__ import annotations

import enum as py_enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import NPUConfig, require_config
from ..isa import (DEP_FLAGS, INSTRUCTION, ErrorCode, Mem, Opcode, Queue, allowed_deps,
                   fields_of, queue_of, row_elements, PARAM_GROUP_ROWS, table_rows)
from .fetch import FETCH_ENTRY
from .tokens import QUEUE_ENTRY

__all__ = ["Dispatcher"]


def _enum_fields_legal(opcode, word):
    """Every enum-typed field of ``opcode``'s format in ``word`` holds a member."""
    legal = Const(1)
    for name, shape, offset, width in fields_of(opcode):
        if isinstance(shape, py_enum.EnumMeta) and name != "opcode":
            value = word[offset:offset + width]
            legal &= Cat(*[value == member.value for member in shape]).any()
    return legal


def _stray_flags(hdr, queue):
    """A dependency flag is set that ``queue`` (``None``: FINISH) does not use."""
    return Cat(Const(0, 1), *[getattr(hdr, f) for f in DEP_FLAGS
                              if f not in allowed_deps(queue)]).any()


class Dispatcher(wiring.Component):
    """Decode, check and dispatch.

    Parameters
    ----------
    config: the NPU configuration (for the range checks).

    Ports
    -----
    insns: fetched words (stream of :data:`~hw.core.fetch.FETCH_ENTRY`).
    queue[q]: the instruction queue of :class:`~hw.isa.Queue` ``q`` (streams of
        :data:`~hw.core.tokens.QUEUE_ENTRY`).
    enable, halt: run; stop (an error). insn_count: the program's length.
    error, error_code, error_index: the head fails a check (this cycle).
    retired, opcode: a word left (dispatched, or FINISH), and its opcode.
    layer: the value of the last CONFIG dispatched.
    all_dispatched: FINISH seen or every word dispatched. blocked: nothing can be
        dispatched now (all dispatched, or the head's queue is full).

    Raises
    ------
    TypeError: ``config`` is not an NPUConfig.
    """

    def __init__(self, config: NPUConfig) -> None:
        self.config = require_config(config)
        super().__init__({
            "insns": In(stream.Signature(FETCH_ENTRY)),
            "queue": Out(stream.Signature(QUEUE_ENTRY)).array(len(Queue)),
            "enable": In(1), "halt": In(1), "insn_count": In(32),
            "error": Out(1), "error_code": Out(ErrorCode), "error_index": Out(32),
            "retired": Out(1), "opcode": Out(Opcode), "layer": Out(32),
            "all_dispatched": Out(1), "blocked": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        head = self.insns.payload
        word = head.entry.word
        index = head.entry.index
        fault = head.fault
        v = data.View(INSTRUCTION, word)
        hdr = v.load.hdr
        opv = hdr.opcode.as_value()
        is_op = {op: opv == op.value for op in Opcode}
        ld, st, gm, al, cf, sy = v.load, v.store, v.gemm, v.alu, v.config, v.sync

        # Legal: a known opcode whose every enum field holds a member of its enum; the
        # queue and the meaningful dependency flags come from the ISA's tables.
        illegal = Signal()
        target_queue = Signal(Queue)
        target = target_queue.as_value()
        bad_deps = Signal()
        m.d.comb += illegal.eq(1)
        with m.Switch(opv):
            for op in Opcode:
                with m.Case(op.value):
                    m.d.comb += illegal.eq(~_enum_fields_legal(op, word))
                    queue = queue_of(op, sy.queue)
                    if queue is not None:
                        m.d.comb += target_queue.eq(queue)
        with m.If(is_op[Opcode.FINISH]):
            m.d.comb += bad_deps.eq(_stray_flags(hdr, None))
        with m.Else():
            with m.Switch(target):
                for q in Queue:
                    with m.Case(q):
                        m.d.comb += bad_deps.eq(_stray_flags(hdr, q))

        # Range checks against the configuration.
        ld_width = Mux(ld.mem == Mem.SPAD, row_elements(Mem.SPAD, R, C),
                       row_elements(Mem.ACC, R, C))
        ld_depth = Mux(ld.mem == Mem.SPAD, cfg.spad_depth,
                       Mux(ld.mem == Mem.ACC, cfg.acc_depth, cfg.param_depth))
        ld_ny = Signal(12)
        ld_nx = Signal(12)
        ld_total = Signal(24)
        m.d.comb += [
            ld_ny.eq(ld.pad_top + ld.y_size + ld.pad_bottom),
            ld_nx.eq(ld.pad_left + ld.x_size + ld.pad_right),
            ld_total.eq(ld_ny * ld_nx),
        ]
        ld_bad = ((ld.y_size == 0) | (ld.x_size == 0) | (ld.length == 0) | (ld.length > ld_width)
                  | (ld.sram + ld_total > ld_depth))
        st_bad = ((st.rows == 0) | (st.length == 0) | (st.length > C)
                  | (st.acc + st.rows > cfg.acc_depth) | (st.param >= cfg.param_groups)
                  | (st.lut & (st.param * PARAM_GROUP_ROWS + PARAM_GROUP_ROWS + table_rows(C)
                               > cfg.param_depth))
                  | (st.clamp_lo > st.clamp_hi))
        gm_bad = ((gm.m == 0) | (gm.inp + gm.m > cfg.spad_depth) | (gm.acc + gm.m > cfg.acc_depth)
                  | (~gm.keep_wgt & (gm.wgt + C > cfg.spad_depth)))
        al_last_dst = Signal(24)
        al_last_src = Signal(24)
        m.d.comb += [
            al_last_dst.eq(al.dst + (al.count - 1) * al.dst_stride),
            al_last_src.eq(al.src + (al.count - 1) * al.src_stride),
        ]
        al_bad = ((al.count == 0) | (al_last_dst >= cfg.acc_depth)
                  | (~al.use_imm & (al_last_src >= cfg.acc_depth)))
        field_bad = Signal()
        m.d.comb += field_bad.eq(
            bad_deps
            | (is_op[Opcode.LOAD] & ld_bad) | (is_op[Opcode.STORE] & st_bad)
            | (is_op[Opcode.GEMM] & gm_bad) | (is_op[Opcode.ALU] & al_bad))

        dispatched = Signal(32)
        finished = Signal()
        m.d.comb += self.all_dispatched.eq(finished | (dispatched >= self.insn_count))
        queue_ready = Signal()
        m.d.comb += queue_ready.eq(Cat(*[q.ready for q in self.queue]).bit_select(target, 1))
        for q in self.queue:
            m.d.comb += q.payload.eq(head.entry)
        can = self.insns.valid & ~self.all_dispatched & ~self.halt & self.enable
        with m.If(can):
            with m.If(fault):
                m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.DMA_WINDOW)]
            with m.Elif(illegal):
                m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.ILLEGAL_OPCODE)]
            with m.Elif(field_bad):
                m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.FIELD_RANGE)]
        m.d.comb += [self.error_index.eq(index), self.opcode.eq(hdr.opcode)]
        with m.If(can & ~self.error):
            with m.If(is_op[Opcode.FINISH]):
                m.d.comb += [self.insns.ready.eq(1), self.retired.eq(1)]
                m.d.sync += [finished.eq(1), dispatched.eq(dispatched + 1)]
            with m.Elif(queue_ready):
                m.d.comb += [self.insns.ready.eq(1), self.retired.eq(1)]
                for i, q in enumerate(self.queue):
                    with m.If(target == i):
                        m.d.comb += q.valid.eq(1)
                m.d.sync += dispatched.eq(dispatched + 1)
                with m.If(is_op[Opcode.CONFIG]):
                    m.d.sync += self.layer.eq(cf.value)
        m.d.comb += self.blocked.eq(self.all_dispatched | (self.insns.valid & ~fault & ~queue_ready
                                                           & ~is_op[Opcode.FINISH]))
        return m
