"""The dispatcher alone, in the Amaranth simulator: routing by the ISA's queue_of, the
legality and range checks with their error codes, back-pressure from full queues, and
one word per cycle."""
import random

import pytest
from amaranth.sim import Simulator

from hw import NPUConfig, isa
from hw.core.dispatch import Dispatcher
from hw.isa import ErrorCode, Opcode, Queue, fields_of, queue_of

CFG = NPUConfig.preset("tiny")


def _field(opcode, name):
    return next((off, width) for n, _, off, width in fields_of(opcode) if n == name)


def _patch(word, opcode, name, value):
    off, width = _field(opcode, name)
    return (word & ~(((1 << width) - 1) << off)) | (value << off)


def _run(entries, *, stall=0.0, seed=0, count=None, max_cycles=2000):
    """Offer (word, index, fault) entries; returns what each queue received, the error
    (code, index, cycle) if one was raised, and the cycles words left."""
    dut = Dispatcher(CFG)
    rng = random.Random(seed)
    got = {q: [] for q in Queue}
    retired = []
    error = []

    async def bench(ctx):
        ctx.set(dut.enable, 1)
        ctx.set(dut.insn_count, len(entries) if count is None else count)
        pending = list(entries)
        for t in range(max_cycles):
            if pending:
                word, index, fault = pending[0]
                ctx.set(dut.insns.valid, 1)
                ctx.set(dut.insns.payload.entry.word, word)
                ctx.set(dut.insns.payload.entry.index, index)
                ctx.set(dut.insns.payload.fault, fault)
            else:
                ctx.set(dut.insns.valid, 0)
            ready = {q: rng.random() >= stall for q in Queue}
            for q in Queue:
                ctx.set(dut.queue[q.value].ready, ready[q])
            if ctx.get(dut.error):
                error.append((ctx.get(dut.error_code), ctx.get(dut.error_index), t))
                break
            for q in Queue:
                port = dut.queue[q.value]
                if ctx.get(port.valid) and ready[q]:
                    got[q].append((ctx.get(port.payload.word), ctx.get(port.payload.index)))
            if ctx.get(dut.retired):
                retired.append(t)
            if ctx.get(dut.insns.valid) and ctx.get(dut.insns.ready):
                pending.pop(0)
            if not pending:
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, (error[0] if error else None), retired


def _program(rng, n):
    out = []
    for _ in range(n):
        kind = rng.randrange(6)
        if kind == 0:
            insn = isa.load(mem=rng.choice(["spad", "acc", "param"]), sram=0, dram=0, y_size=1,
                            x_size=1, length=1, push_next=rng.randrange(2))
        elif kind == 1:
            insn = isa.store(acc=0, rows=1, dram=0, length=1, clamp_lo=-1, clamp_hi=1,
                             pop_prev=rng.randrange(2))
        elif kind == 2:
            insn = isa.gemm(wgt=0, inp=0, acc=0, m=rng.randrange(1, 9), pop_prev=1)
        elif kind == 3:
            insn = isa.alu(op="add", dst=1, src=2, count=3, dst_stride=1, src_stride=1)
        elif kind == 4:
            insn = isa.config(value=rng.randrange(1 << 32))
        else:
            insn = isa.sync(queue=rng.choice(["load", "compute", "store"]))
        out.append(insn)
    return out


@pytest.mark.parametrize("stall, seed", [(0.0, 1), (0.6, 2)])
def test_routes_by_queue_of_in_order(stall, seed):
    rng = random.Random(seed)
    insns = _program(rng, 60)
    entries = [(i.encode(), k, 0) for k, i in enumerate(insns)]
    got, error, _ = _run(entries, stall=stall, seed=seed)
    assert error is None
    want = {q: [] for q in Queue}
    for k, insn in enumerate(insns):
        want[queue_of(insn.opcode, insn.fields.get("queue"))].append((insn.encode(), k))
    assert got == want


def _illegal_cases():
    ok_load = isa.load(mem="acc", sram=0, dram=0, y_size=1, x_size=1, length=1).encode()
    ok_sync = isa.sync(queue="load").encode()
    ok_cfg = isa.config(value=3).encode()
    gemm = isa.gemm(wgt=0, inp=0, acc=0, m=1).encode()
    return [
        ("opcode 7", _patch(ok_load, Opcode.LOAD, "opcode", 7), ErrorCode.ILLEGAL_OPCODE),
        ("LOAD mem 3", _patch(ok_load, Opcode.LOAD, "mem", 3), ErrorCode.ILLEGAL_OPCODE),
        ("SYNC queue 3", _patch(ok_sync, Opcode.SYNC, "queue", 3), ErrorCode.ILLEGAL_OPCODE),
        ("CONFIG key 1", _patch(ok_cfg, Opcode.CONFIG, "key", 1), ErrorCode.ILLEGAL_OPCODE),
        ("LOAD pop_prev", _patch(ok_load, Opcode.LOAD, "pop_prev", 1), ErrorCode.FIELD_RANGE),
        ("FINISH push_next", _patch(isa.finish().encode(), Opcode.FINISH, "push_next", 1),
         ErrorCode.FIELD_RANGE),
        ("GEMM m 0", _patch(gemm, Opcode.GEMM, "m", 0), ErrorCode.FIELD_RANGE),
        ("LOAD past the accumulator", _patch(ok_load, Opcode.LOAD, "sram", CFG.acc_depth),
         ErrorCode.FIELD_RANGE),
    ]


@pytest.mark.parametrize("name, word, code", _illegal_cases(), ids=[c[0] for c in _illegal_cases()])
def test_checks_stop_at_the_failing_word(name, word, code):
    good = isa.sync(queue="store").encode()
    got, error, _ = _run([(good, 0, 0), (good, 1, 0), (word, 2, 0), (good, 3, 0)])
    assert error[:2] == (code, 2), name
    assert got[Queue.STORE] == [(good, 0), (good, 1)]


def test_fetch_fault_is_a_window_error():
    good = isa.sync(queue="load").encode()
    _, error, _ = _run([(good, 0, 0), (0, 1, 1)])
    assert error[:2] == (ErrorCode.DMA_WINDOW, 1)


def test_one_word_per_cycle_and_finish():
    """Ready queues take a word every cycle; FINISH is consumed and ends dispatch."""
    words = [isa.sync(queue="compute").encode()] * 10 + [isa.finish().encode()]
    entries = [(w, k, 0) for k, w in enumerate(words)] + [(words[0], 11, 0)]
    got, error, retired = _run(entries, count=100)
    assert error is None and retired == list(range(11))
    assert len(got[Queue.COMPUTE]) == 10
