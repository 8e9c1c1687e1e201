"""The compute unit alone, in the Amaranth simulator, on real banked memories whose
contents the test sets and reads directly: GEMMs (fresh and kept weights, accumulate
or not) and ALU operations against the functional model, with random gaps in the
instruction stream and the tokens, a store-like reader that must never delay it, and
exact cycles without stalls."""
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw import NPUConfig, isa
from hw.core.compute import ComputeUnit
from hw.sram import BankedMemory
from sim.functional import FunctionalModel

CFG = NPUConfig.preset("tiny")
R, C = CFG.rows, CFG.cols


class _Bench(wiring.Component):
    """The unit on the scratchpad and accumulator it uses in the core."""

    def __init__(self):
        super().__init__({})
        self.cu = ComputeUnit(CFG)
        self.spad = BankedMemory(width=8 * R, depth=CFG.spad_depth, banks=CFG.spad_banks,
                                 reads=2, writes=1)
        self.acc = BankedMemory(width=32 * C, depth=CFG.acc_depth, banks=CFG.acc_banks,
                                reads=3, writes=2, transparent=True)

    def elaborate(self, platform):
        m = Module()
        m.submodules.cu, m.submodules.spad, m.submodules.acc = self.cu, self.spad, self.acc
        wiring.connect(m, self.cu.spad_stream, self.spad.read[0])
        wiring.connect(m, self.cu.spad_wload, self.spad.read[1])
        wiring.connect(m, self.cu.acc_rd, self.acc.read[0])
        wiring.connect(m, self.cu.acc_src, self.acc.read[1])
        wiring.connect(m, self.cu.acc_wr, self.acc.write[0])
        return m


def _pack(row, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (bits * k) for k, v in enumerate(row))


def _unpack(value, n, bits, dtype):
    raw = [(value >> (bits * k)) & ((1 << bits) - 1) for k in range(n)]
    return np.array(raw, np.uint8 if bits == 8 else np.uint32).view(dtype)


def _run(insns, spad, acc, *, gaps=0.0, reader=0.0, seed=0, max_cycles=5000, spans=None):
    """Run compute instructions; returns the accumulator and the cycle each finished.
    ``spans``, a list, receives ``[begin, end]`` cycles of each instruction from the trace
    pulses."""
    dut = _Bench()
    rng = random.Random(seed)
    done = []
    spans = [] if spans is None else spans

    async def bench(ctx):
        for a in range(CFG.spad_depth):
            ctx.set(dut.spad.memories[a % CFG.spad_banks].data[a // CFG.spad_banks],
                    _pack(spad[a], 8))
        for a in range(CFG.acc_depth):
            ctx.set(dut.acc.memories[a % CFG.acc_banks].data[a // CFG.acc_banks],
                    _pack(acc[a], 32))
        cu = dut.cu
        pending = list(enumerate(insns))
        for t in range(max_cycles):
            offer = bool(pending) and rng.random() >= gaps
            ctx.set(cu.insn.valid, offer)
            if offer:
                i, insn = pending[0]
                ctx.set(cu.insn.payload.word, insn.encode())
                ctx.set(cu.insn.payload.index, i)
            ctx.set(cu.tokens.ready, rng.random() >= gaps)
            # A lower-priority reader of the accumulator (the store unit's place).
            ctx.set(dut.acc.read[2].en, rng.random() < reader)
            ctx.set(dut.acc.read[2].addr, rng.randrange(CFG.acc_depth))
            if offer and ctx.get(cu.insn.ready):
                pending.pop(0)
            if ctx.get(cu.tokens.done.push_next):
                done.append(t)
            if ctx.get(cu.begin):
                spans.append([t, None])
            if ctx.get(cu.end):
                next(span for span in spans if span[1] is None)[1] = t
            if len(done) == len(insns) and ctx.get(cu.idle):
                break
            await ctx.tick()
        for a in range(CFG.acc_depth):
            acc[a] = _unpack(ctx.get(dut.acc.memories[a % CFG.acc_banks].data[a // CFG.acc_banks]),
                             C, 32, np.int32)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(done) == len(insns), "the compute unit did not finish"
    return acc, done


def _model(insns, spad, acc):
    model = FunctionalModel(CFG)
    model.spad[:] = spad
    model.acc[:] = acc
    for insn in insns:
        (model.gemm if insn.opcode is isa.Opcode.GEMM else model.alu)(insn)
    return model.acc


def _program(rng):
    out = []
    for _ in range(14):
        if rng.random() < 0.6:
            m = int(rng.integers(1, 12))
            out.append(isa.gemm(wgt=int(rng.integers(0, 200)), inp=int(rng.integers(0, 200)),
                                acc=int(rng.integers(0, CFG.acc_depth - m)), m=m,
                                accumulate=int(rng.integers(0, 2)),
                                keep_wgt=int(bool(out) and rng.random() < 0.3), push_next=1))
        else:
            count = int(rng.integers(1, 9))
            out.append(isa.alu(op=isa.AluOp(int(rng.integers(0, len(isa.AluOp)))),
                               use_imm=int(rng.integers(0, 2)), imm=int(rng.integers(-20, 20)),
                               dst=int(rng.integers(0, 100)), src=int(rng.integers(0, 100)),
                               count=count, dst_stride=int(rng.integers(0, 3)),
                               src_stride=int(rng.integers(0, 3)), push_next=1))
    return out


@pytest.mark.parametrize("gaps, reader, seed", [(0.0, 0.0, 1), (0.5, 0.0, 2), (0.3, 0.9, 3)])
def test_random_programs_against_functional_model(gaps, reader, seed):
    rng = np.random.default_rng(seed)
    spad = rng.integers(-128, 128, (CFG.spad_depth, R)).astype(np.int8)
    acc = rng.integers(-5000, 5000, (CFG.acc_depth, C)).astype(np.int32)
    insns = _program(rng)
    want = _model(insns, spad.copy(), acc.copy())
    got, _ = _run(insns, spad, acc.copy(), gaps=gaps, reader=reader, seed=seed)
    np.testing.assert_array_equal(got, want)


def test_exact_cycles_without_stalls():
    """Cycles from the first instruction offered to each one's push_next: a GEMM's
    weights load (4 columns) then its rows stream and drain the array (latency 7); the
    next GEMM's weights load while the first streams; an ALU of 8 rows waits for the
    array to drain, then takes one cycle a row with its operands in different banks (10
    cycles) and two in the same bank (20)."""
    spad = np.ones((CFG.spad_depth, R), np.int8)
    acc = np.zeros((CFG.acc_depth, C), np.int32)
    insns = [isa.gemm(wgt=0, inp=8, acc=0, m=16, push_next=1),
             isa.gemm(wgt=4, inp=24, acc=16, m=16, push_next=1),
             isa.alu(op="add", dst=0, src=33, count=8, dst_stride=1, src_stride=1, push_next=1),
             isa.alu(op="add", dst=0, src=32, count=8, dst_stride=1, src_stride=1, push_next=1)]
    _, done = _run(insns, spad, acc.copy())
    assert done == [31, 47, 57, 77]
    # A reader of lower priority on the accumulator every cycle delays nothing.
    _, done = _run(insns, spad, acc.copy(), reader=1.0)
    assert done == [31, 47, 57, 77]


def test_trace_pulses():
    """The trace port of the same program: a GEMM from its first row entering the array
    to its last (16 cycles each, the second straight after the first: its weights were
    preloaded); its push_next comes when its last row is written, the array's latency (7)
    later. An ALU from the cycle the array has drained to its push_next. Spans [b, e] are
    inclusive here: e - b + 1 cycles."""
    spad = np.ones((CFG.spad_depth, R), np.int8)
    acc = np.zeros((CFG.acc_depth, C), np.int32)
    insns = [isa.gemm(wgt=0, inp=8, acc=0, m=16, push_next=1),
             isa.gemm(wgt=4, inp=24, acc=16, m=16, push_next=1),
             isa.alu(op="add", dst=0, src=33, count=8, dst_stride=1, src_stride=1, push_next=1),
             isa.alu(op="add", dst=0, src=32, count=8, dst_stride=1, src_stride=1, push_next=1)]
    spans = []
    _, done = _run(insns, spad, acc.copy(), spans=spans)
    (b0, e0), (b1, e1), (b2, e2), (b3, e3) = spans
    assert (e0 - b0 + 1, e1 - b1 + 1) == (16, 16) and b1 == e0 + 1
    assert (done[0], done[1]) == (e0 + 7, e1 + 7)
    assert (e2, e3) == (done[2], done[3]) and b2 == done[1] + 1
    # The second ALU is taken (IDLE), takes its tokens (WAIT) and finds the array drained.
    assert b3 == e2 + 3
    # One cycle a row with operands in different banks, two in one bank, plus two.
    assert (e2 - b2 + 1, e3 - b3 + 1) == (10, 18)
    # Random gaps and a reader: one start and one completion per instruction, in order.
    spans = []
    _run(insns, spad, acc.copy(), gaps=0.5, reader=0.5, seed=4, spans=spans)
    assert len(spans) == 4 and all(b <= e for b, e in spans)
    assert all(e < b for (_, e), (b, _) in zip(spans, spans[1:]))
