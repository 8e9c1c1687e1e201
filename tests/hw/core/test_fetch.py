"""The fetch unit alone, in the Amaranth simulator, with a modelled DMA reader (random
acceptance and latency) and a dispatcher that stalls at random: words in program
order with their indices, the window fault entry, and exact cycles without stalls."""
import random

import pytest
from amaranth.sim import Simulator

from hw.core.fetch import FetchUnit


def _run(words, *, base=0x100, window=None, stall_req=0.0, latency=(1, 1), stall_out=0.0,
         seed=0, max_cycles=3000, count=None):
    """Fetch ``words`` placed at ``base``; returns [(cycle, word, index, fault)]."""
    dut = FetchUnit()
    rng = random.Random(seed)
    memory = {base + 16 * i: w for i, w in enumerate(words)}
    count = len(words) if count is None else count
    lo, hi = window or (0, 1 << 20)
    out = []

    async def bench(ctx):
        ctx.set(dut.enable, 1)
        ctx.set(dut.insn_base, base)
        ctx.set(dut.insn_count, count)
        ctx.set(dut.win_lo, lo)
        ctx.set(dut.win_hi, hi)
        inflight = []
        for t in range(max_cycles):
            req_ready = rng.random() >= stall_req
            ctx.set(dut.dma_req.ready, req_ready)
            head = inflight[0] if inflight and inflight[0][0] <= t else None
            ctx.set(dut.dma_resp.valid, head is not None)
            if head is not None:
                ctx.set(dut.dma_resp.payload.data.as_value(), head[1])
                ctx.set(dut.dma_resp.payload.tag, head[2])
            out_ready = rng.random() >= stall_out
            ctx.set(dut.insns.ready, out_ready)
            if ctx.get(dut.dma_req.valid) and req_ready:
                addr = ctx.get(dut.dma_req.payload.addr)
                assert ctx.get(dut.dma_req.payload.nbytes) == 16 and lo <= addr < hi
                due = max(t + rng.randint(*latency), inflight[-1][0] + 1 if inflight else 0)
                inflight.append((due, memory[addr], ctx.get(dut.dma_req.payload.tag)))
            if head is not None and ctx.get(dut.dma_resp.ready):
                inflight.pop(0)
            if ctx.get(dut.insns.valid) and out_ready:
                p = dut.insns.payload
                out.append((t, ctx.get(p.entry.word), ctx.get(p.entry.index), ctx.get(p.fault)))
                if ctx.get(p.fault):
                    break
            if len(out) == count:
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def _words(n, seed=0):
    rng = random.Random(seed)
    return [rng.getrandbits(128) for _ in range(n)]


@pytest.mark.parametrize("stall_req, latency, stall_out, seed", [
    (0.0, (1, 1), 0.0, 1), (0.5, (1, 6), 0.0, 2), (0.0, (1, 3), 0.7, 3), (0.3, (2, 9), 0.4, 4)])
def test_words_in_order_under_stalls(stall_req, latency, stall_out, seed):
    words = _words(40, seed)
    out = _run(words, stall_req=stall_req, latency=latency, stall_out=stall_out, seed=seed)
    assert [(w, i, f) for _, w, i, f in out] == [(w, i, 0) for i, w in enumerate(words)]


def test_window_fault_after_the_words_before_it():
    words = _words(10)
    # The window ends inside word 6: words 0..5 come out, then the fault entry for 6.
    out = _run(words, window=(0x100, 0x100 + 16 * 6 + 8), latency=(1, 4), seed=5)
    assert [(i, f) for _, _, i, f in out] == [(i, 0) for i in range(6)] + [(6, 1)]
    assert [w for _, w, _, f in out if not f] == words[:6]


def test_exact_cycles_without_stalls():
    """With a one-cycle DMA and a ready dispatcher: the first word is offered three cycles
    after enable (request, response, FIFO), then one word per cycle."""
    out = _run(_words(20))
    assert [t for t, *_ in out] == list(range(3, 23))
