"""The load unit alone, in the Amaranth simulator: LOADs of every memory with padding
and strides, against the functional model's memories, with a modelled DMA reader
(random acceptance and response gaps) and random write-port stalls, and exact cycles
without them."""
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import NPUConfig, isa
from hw.core.load import LoadUnit
from sim.functional import FunctionalModel, place_program

CFG = NPUConfig.preset("tiny")
R, C = CFG.rows, CFG.cols


def _expected(dram, insns):
    """The three memories after the LOADs, by the functional model."""
    image = dram.copy()
    # (without their tokens: nothing here pops them)
    words = [isa.load(**{**i.fields, "push_next": 0}).encode() for i in insns]
    words.append(isa.finish().encode())
    base = len(image) - 16 * len(words)
    place_program(image, base, words)
    model = FunctionalModel(CFG)
    model.run(image, base, len(words))
    return model.spad, model.acc, model.param


def _run(insns, dram, *, stall_req=0.0, stall_resp=0.0, stall_wr=0.0, seed=0,
         max_cycles=20000):
    """Run LOADs; returns the written memories and the cycle each LOAD finished."""
    dut = LoadUnit(CFG)
    rng = random.Random(seed)
    mems = {"spad": np.zeros((CFG.spad_depth, R), np.int8),
            "acc": np.zeros((CFG.acc_depth, C), np.int32),
            "param": np.zeros((CFG.param_depth, C), np.int32)}
    finished, begins, ends = [], [], []

    async def bench(ctx):
        pending = list(enumerate(insns))
        inflight = []            # (due cycle, data bytes, tag)
        ctx.set(dut.tokens.ready, 1)
        for t in range(max_cycles):
            if pending:
                i, insn = pending[0]
                ctx.set(dut.insn.valid, 1)
                ctx.set(dut.insn.payload.word, insn.encode())
                ctx.set(dut.insn.payload.index, i)
            else:
                ctx.set(dut.insn.valid, 0)
            req_ready = rng.random() >= stall_req
            ctx.set(dut.dma_req.ready, req_ready)
            head = inflight[0] if inflight and inflight[0][0] <= t else None
            ctx.set(dut.dma_resp.valid, head is not None)
            if head is not None:
                ctx.set(dut.dma_resp.payload.data.as_value(),
                        int.from_bytes(bytes(head[1]), "little"))
                ctx.set(dut.dma_resp.payload.tag, head[2])
            grants = {name: rng.random() >= stall_wr for name in mems}
            for name, port in (("spad", dut.spad), ("acc", dut.acc), ("param", dut.param)):
                ctx.set(port.grant, ctx.get(port.en) and grants[name])
            if ctx.get(dut.insn.valid) and ctx.get(dut.insn.ready):
                pending.pop(0)
            if ctx.get(dut.dma_req.valid) and req_ready:
                p = dut.dma_req.payload
                addr, n = ctx.get(p.addr), ctx.get(p.nbytes)
                delay = 1 + (rng.randrange(4) if stall_resp else 0)
                due = max(t + delay, inflight[-1][0] + 1 if inflight else 0)
                blob = list(dram[addr:addr + n]) + [0xA5] * (len(dut.dma_resp.payload.data) - n)
                inflight.append((due, blob, ctx.get(p.tag)))
            if head is not None and ctx.get(dut.dma_resp.ready):
                inflight.pop(0)
            for name, port in (("spad", dut.spad), ("acc", dut.acc), ("param", dut.param)):
                if ctx.get(port.en) and ctx.get(port.grant):
                    row = ctx.get(port.data)
                    width = mems[name].shape[1]
                    bits = 8 if name == "spad" else 32
                    vals = [(row >> (bits * k)) & ((1 << bits) - 1) for k in range(width)]
                    dtype = np.uint8 if bits == 8 else np.uint32
                    mems[name][ctx.get(port.addr)] = np.array(vals, dtype).view(mems[name].dtype)
            if ctx.get(dut.tokens.done.push_next):
                finished.append(t)
            if ctx.get(dut.begin):
                begins.append(t)
            if ctx.get(dut.end):
                ends.append(t)
            if len(finished) == len(insns) and ctx.get(dut.idle) and not inflight:
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(finished) == len(insns), "the load unit did not finish"
    # The trace port: each instruction starts (takes its tokens) and completes (gives
    # them) once, in order, one after the other.
    assert ends == finished and len(begins) == len(insns)
    assert all(b <= e for b, e in zip(begins, ends))
    assert all(e < b for e, b in zip(ends, begins[1:]))
    return mems, finished


def _loads(rng):
    out = []
    row = {"spad": 0, "acc": 0, "param": 0}
    for k in range(6):
        mem = ("spad", "acc", "param")[k % 3]
        width = R if mem == "spad" else C
        pads = [int(v) for v in rng.integers(0, 3, 4)] if mem != "param" else [0, 0, 0, 0]
        ys, xs = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        rows = (pads[0] + ys + pads[1]) * (pads[2] + xs + pads[3])
        out.append(isa.load(mem=mem, sram=row[mem], dram=int(rng.integers(0, 600)),
                            y_size=ys, x_size=xs, y_stride=int(rng.integers(0, 120)),
                            x_stride=int(rng.integers(0, 30)),
                            length=int(rng.integers(1, width + 1)), pad_top=pads[0],
                            pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
                            pad_value=int(rng.integers(-128, 128)), push_next=1))
        row[mem] += rows
    return out


@pytest.mark.parametrize("stalls, seed", [
    ((0.0, 0.0, 0.0), 1), ((0.5, 0.0, 0.0), 2), ((0.0, 1.0, 0.0), 3), ((0.0, 0.0, 0.5), 4),
    ((0.3, 1.0, 0.4), 5)])
def test_random_loads_against_functional_model(stalls, seed):
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, 4096, dtype=np.uint8)
    insns = _loads(rng)
    mems, _ = _run(insns, dram, stall_req=stalls[0], stall_resp=stalls[1],
                   stall_wr=stalls[2], seed=seed)
    spad, acc, param = _expected(dram, insns)
    np.testing.assert_array_equal(mems["spad"], spad)
    np.testing.assert_array_equal(mems["acc"], acc)
    np.testing.assert_array_equal(mems["param"], param)


def test_exact_cycles_without_stalls():
    """Cycles from the LOAD offered to its finish (token given), with a one-cycle DMA:
    IDLE, WAIT, one vector (read or padding) per cycle, the last response: 3 + vectors;
    a padding write waits a cycle for a response written in the same cycle (padded:
    15 vectors, 3 such waits)."""
    dram = np.arange(4096, dtype=np.uint32).astype(np.uint8)
    got = {}
    for ys, pad in ((1, 0), (4, 0), (4, 1)):
        insn = isa.load(mem="acc", sram=0, dram=0, y_size=ys, x_size=2, y_stride=16,
                        x_stride=4, length=C, pad_top=pad, pad_left=pad, push_next=1)
        _, finished = _run([insn], dram)
        got[(ys, pad)] = finished[0]
    assert got == {(1, 0): 5, (4, 0): 11, (4, 1): 21}
