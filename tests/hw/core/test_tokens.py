"""The token counters alone, in the Amaranth simulator, against a Python model built from
the ISA's tables: random heads, starts and completions; readiness checked every cycle."""
import random

import pytest
from amaranth.sim import Simulator

from hw.core import Tokens
from hw.isa import DEP_FLAGS, TOKEN_POPS, TOKEN_PUSHES, Queue, TokenQueue


class _Model:
    def __init__(self, depth):
        self.depth = depth
        self.count = {t: 0 for t in TokenQueue}
        self.reserved = {t: 0 for t in TokenQueue}

    def ready(self, q, flags):
        pops = all(not flags[f] or self.count[t] for f, t in TOKEN_POPS[q].items())
        room = all(not flags[f] or self.count[t] + self.reserved[t] < self.depth
                   for f, t in TOKEN_PUSHES[q].items())
        return pops and room


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_random_traffic_against_model(depth):
    dut = Tokens(depth=depth)
    rng = random.Random(depth)
    model = _Model(depth)
    stats = {"ready": 0, "started": 0, "given": 0}

    async def bench(ctx):
        # Per queue: the flags of its head and the pushes it still owes (started work).
        owed = {q: [] for q in Queue}
        heads = {q: None for q in Queue}
        for _ in range(3000):
            starts, gives = {}, {}
            for q in Queue:
                unit = dut.queue[q.value]
                # A head that waits long is replaced (nothing was taken), so traffic goes on.
                if heads[q] is None or rng.random() < 0.1:
                    heads[q] = {f: rng.random() < 0.5 for f in DEP_FLAGS}
                flags = heads[q]
                for f in DEP_FLAGS:
                    ctx.set(getattr(unit.flags, f), flags[f])
                ready = model.ready(q, flags)
                assert ctx.get(unit.ready) == ready, (q, flags, model.count, model.reserved)
                stats["ready"] += ready
                start = ready and rng.random() < 0.6
                ctx.set(unit.start, start)
                starts[q] = start
                # Give some owed pushes (each flag at most once per cycle).
                give = {f: False for f in DEP_FLAGS}
                if owed[q] and rng.random() < 0.4:
                    for f in owed[q].pop(0):
                        give[f] = True
                for f in DEP_FLAGS:
                    ctx.set(getattr(unit.done, f), give[f])
                gives[q] = give
            await ctx.tick()
            for q in Queue:
                flags = heads[q]
                for f, t in TOKEN_PUSHES[q].items():
                    if gives[q][f]:
                        model.count[t] += 1
                        model.reserved[t] -= 1
                        stats["given"] += 1
                if starts[q]:
                    for f, t in TOKEN_POPS[q].items():
                        model.count[t] -= flags[f]
                    pushes = [f for f in TOKEN_PUSHES[q] if flags[f]]
                    for f in pushes:
                        model.reserved[TOKEN_PUSHES[q][f]] += 1
                    if pushes:
                        owed[q].append(pushes)
                    heads[q] = None
                    stats["started"] += 1
            for t in TokenQueue:
                assert ctx.get(dut.count[t.value]) == model.count[t]
                assert ctx.get(dut.reserved[t.value]) == model.reserved[t]
                assert 0 <= model.count[t] + model.reserved[t] <= depth

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert stats["started"] > 500 and stats["given"] > 200


def test_pop_waits_for_push_exact_cycles():
    """A load pushes L2C when it finishes; the compute head popping it is ready the next
    cycle; a push into a full queue waits until the consumer pops."""
    dut = Tokens(depth=1)
    trace = []

    async def bench(ctx):
        load, comp = dut.queue[Queue.LOAD.value], dut.queue[Queue.COMPUTE.value]
        ctx.set(comp.flags.pop_prev, 1)
        ctx.set(load.flags.push_next, 1)
        for t in range(6):
            trace.append((ctx.get(load.ready), ctx.get(comp.ready)))
            ctx.set(load.start, t == 0)
            ctx.set(load.done.push_next, t == 2)
            ctx.set(comp.start, t == 4)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # t0 the load starts and reserves the one place (the next load waits); t2 it finishes,
    # so the token is there at t3; t4 compute pops it and the place is free at t5.
    assert trace == [(1, 0), (0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]


@pytest.mark.parametrize("depth", [0, 256, True])
def test_depth_validated(depth):
    with pytest.raises(ValueError, match="Tokens depth must be an int from 1 to 255"):
        Tokens(depth=depth)
