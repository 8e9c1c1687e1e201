"""The store unit alone, in the Amaranth simulator: STOREs from a modelled accumulator
and parameter memory to a modelled DMA writer, against the golden's requantization,
with random accumulator-bank and DMA stalls, and exact cycles without them."""
import random

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from hw import NPUConfig, isa
from hw.core.store import StoreUnit
from sw import golden

CFG = NPUConfig.preset("tiny")
C = CFG.cols


def _memories(seed):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2**20, 2**20, (CFG.acc_depth, C)).astype(np.int32)
    param = np.zeros((CFG.param_depth, C), np.int32)
    for g in range(CFG.param_groups):
        param[3 * g] = rng.integers(-5000, 5000, C)
        qm = [golden.quantize_multiplier(s) for s in rng.uniform(1e-4, 2e-2, C)]
        param[3 * g + 1] = [q[0] for q in qm]
        param[3 * g + 2] = [q[1] for q in qm]
    return acc, param


def _expected(insn, acc, param):
    g = insn.param
    rows = torch.from_numpy(acc[insn.acc:insn.acc + insn.rows].copy())
    out = golden.requantize(rows, torch.from_numpy(param[3 * g].copy()),
                            torch.from_numpy(param[3 * g + 1].copy()),
                            torch.from_numpy(param[3 * g + 2].copy()),
                            insn.out_zp, insn.clamp_lo, insn.clamp_hi).numpy()
    return [(insn.dram + r * insn.stride, insn.length, out[r].astype(np.uint8).tolist())
            for r in range(insn.rows)]


def _lane_bytes(value, lanes):
    return [(value >> (8 * k)) & 0xFF for k in range(lanes)]


def _run(insns, acc, param, *, stall_acc=0.0, stall_dma=0.0, seed=0, max_cycles=5000,
         cfg=CFG):
    """Run STOREs; returns the DMA requests and the cycle each instruction finished."""
    dut = StoreUnit(cfg)
    rng = random.Random(seed)
    reqs, finished, tags, idle_at, begins, ends = [], [], [], [], [], []

    async def bench(ctx):
        pending = list(enumerate(insns))
        ctx.set(dut.tokens.ready, 1)
        ctx.set(dut.dma_idle, 1)
        acc_due = param_due = None
        for t in range(max_cycles):
            if pending:
                i, insn = pending[0]
                ctx.set(dut.insn.valid, 1)
                ctx.set(dut.insn.payload.word, insn.encode())
                ctx.set(dut.insn.payload.index, i)
            else:
                ctx.set(dut.insn.valid, 0)
            # Read data of last cycle's granted reads.
            if acc_due is not None:
                ctx.set(dut.acc.data, sum((int(v) & 0xFFFFFFFF) << (32 * c)
                                          for c, v in enumerate(acc[acc_due])))
            if param_due is not None and param_due < len(param):   # (one read past a group)
                ctx.set(dut.param.data, sum((int(v) & 0xFFFFFFFF) << (32 * c)
                                            for c, v in enumerate(param[param_due])))
            grant = rng.random() >= stall_acc
            ctx.set(dut.acc.grant, grant)
            ctx.set(dut.param.grant, 1)
            ready = rng.random() >= stall_dma
            ctx.set(dut.dma.ready, ready)
            acc_due = ctx.get(dut.acc.addr) if ctx.get(dut.acc.en) and grant else None
            param_due = ctx.get(dut.param.addr) if ctx.get(dut.param.en) else None
            if ctx.get(dut.insn.valid) and ctx.get(dut.insn.ready):
                pending.pop(0)
            if ctx.get(dut.dma.valid) and ready:
                p = dut.dma.payload
                reqs.append((ctx.get(p.addr), ctx.get(p.nbytes),
                             _lane_bytes(ctx.get(p.data.as_value()), C)))
                tags.append(ctx.get(p.tag))
            if ctx.get(dut.tokens.done.push_prev):
                finished.append(t)
            if ctx.get(dut.begin):
                begins.append(t)
            if ctx.get(dut.end):
                ends.append(t)
            if len(finished) == len(insns) and ctx.get(dut.idle):
                idle_at.append(t)
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(finished) == len(insns) and idle_at, "the store unit did not finish"
    # The trace port: each instruction starts (takes its tokens) and completes (gives
    # them) once, in order, one after the other.
    assert ends == finished and len(begins) == len(insns)
    assert all(b <= e for b, e in zip(begins, ends))
    assert all(e < b for e, b in zip(ends, begins[1:]))
    # Rows leave in program order, each tagged with its instruction's index, and the
    # unit is idle only once the last one has gone to the DMA writer.
    assert tags == [i for i, insn in enumerate(insns) for _ in range(insn.rows)]
    assert len(reqs) == sum(insn.rows for insn in insns)
    return reqs, finished, idle_at[0]


def _stores(rng, n):
    out = []
    for _ in range(n):
        rows = int(rng.integers(1, 20))
        lo = int(rng.integers(-128, 50))
        out.append(isa.store(acc=int(rng.integers(0, CFG.acc_depth - rows)), rows=rows,
                             dram=int(rng.integers(0, 1 << 16)), stride=int(rng.integers(0, 40)),
                             length=int(rng.integers(1, C + 1)),
                             param=int(rng.integers(0, CFG.param_groups)),
                             out_zp=int(rng.integers(-10, 10)), clamp_lo=lo,
                             clamp_hi=int(rng.integers(lo, 128)), push_prev=1))
    return out


# requant_lanes 1 and 2: each row in 4 and 2 passes through fewer requantizer lanes.
@pytest.mark.parametrize("requant_lanes", [0, 1, 2])
@pytest.mark.parametrize("stall_acc, stall_dma, seed", [
    (0.0, 0.0, 1), (0.5, 0.0, 2), (0.0, 0.6, 3), (0.4, 0.4, 4)])
def test_random_stores_against_golden(stall_acc, stall_dma, seed, requant_lanes):
    rng = np.random.default_rng(seed)
    acc, param = _memories(seed)
    insns = _stores(rng, 6)
    reqs, _, _ = _run(insns, acc, param, stall_acc=stall_acc, stall_dma=stall_dma, seed=seed,
                      cfg=CFG.replace(requant_lanes=requant_lanes))
    want = [r for insn in insns for r in _expected(insn, acc, param)]
    assert reqs == want


def test_exact_cycles_without_stalls():
    """Cycles from the instruction offered to the finish (tokens given) and to idle (the
    last row gone to the DMA writer), without stalls: IDLE, WAIT, four cycles of
    parameters, a row per cycle, then the read, the requantizer's 5 stages and the FIFO
    behind the last row: 14 + n, one row as many (its token waits for the row too)."""
    acc, param = _memories(0)
    got = {}
    for n in (1, 2, 8, 30):
        insn = isa.store(acc=0, rows=n, dram=0, stride=C, length=C, param=0, clamp_lo=-128,
                         clamp_hi=127, push_prev=1)
        _, finished, idle_at = _run([insn], acc, param)
        got[n] = (finished[0], idle_at)
    assert got == {1: (15, 16), 2: (16, 17), 8: (22, 23), 30: (44, 45)}
