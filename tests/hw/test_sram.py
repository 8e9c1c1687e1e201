"""The banked memory alone, in the Amaranth simulator: grants by fixed priority per
bank, read data and transparency against a Python model, contents read directly."""
import random

import pytest
from amaranth.sim import Simulator

from hw.sram import BankedMemory


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=8, depth=16, banks=3, reads=1, writes=1), "banks=3 must be a power of two"),
    (dict(width=8, depth=12, banks=8, reads=1, writes=1), "dividing depth=12"),
    (dict(width=0, depth=16, banks=2, reads=1, writes=1), "width must be an int of at least 1"),
    (dict(width=8, depth=16, banks=2, reads=0, writes=1), "reads must be an int of at least 1"),
    (dict(width=8, depth=16, banks=2, reads=1, writes=True), "writes must be an int"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BankedMemory(**kwargs)


def _grants(requests, banks):
    """Per client, granted or not: the first client requesting a bank takes it."""
    taken = set()
    out = []
    for en, addr in requests:
        bank = addr % banks
        ok = bool(en) and bank not in taken
        if ok:
            taken.add(bank)
        out.append(ok)
    return out


@pytest.mark.parametrize("banks, reads, writes, transparent", [
    (2, 3, 2, True), (2, 2, 1, False), (4, 3, 2, False), (1, 2, 2, True),
])
def test_random_requests_against_model(banks, reads, writes, transparent):
    depth, width = 32, 12
    dut = BankedMemory(width=width, depth=depth, banks=banks, reads=reads, writes=writes,
                       transparent=transparent)
    rng = random.Random(banks * 100 + reads * 10 + writes)
    model = [rng.randrange(1 << width) for _ in range(depth)]
    checked = {"grants": 0, "reads": 0}

    async def bench(ctx):
        for a, v in enumerate(model):
            ctx.set(dut.memories[a % banks].data[a // banks], v)
        expect = [None] * reads     # data due this cycle from last cycle's granted reads
        for _ in range(400):
            rq = [(rng.random() < 0.7, rng.randrange(depth)) for _ in range(reads)]
            wq = [(rng.random() < 0.6, rng.randrange(depth), rng.randrange(1 << width))
                  for _ in range(writes)]
            for port, (en, addr) in zip(dut.read, rq):
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
            for port, (en, addr, value) in zip(dut.write, wq):
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                ctx.set(port.data, value)
            for j, want in enumerate(expect):
                if want is not None:
                    assert ctx.get(dut.read[j].data) == want
                    checked["reads"] += 1
            rg = _grants(rq, banks)
            wg = _grants([(en, addr) for en, addr, _ in wq], banks)
            assert [ctx.get(p.grant) for p in dut.read] == rg
            assert [ctx.get(p.grant) for p in dut.write] == wg
            checked["grants"] += 1
            before = list(model)
            for (en, addr, value), ok in zip(wq, wg):
                if ok:
                    model[addr] = value
            seen = model if transparent else before
            expect = [seen[addr] if ok else None for (_, addr), ok in zip(rq, rg)]
            await ctx.tick()
        for a, v in enumerate(model):
            assert ctx.get(dut.memories[a % banks].data[a // banks]) == v

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["grants"] == 400 and checked["reads"] > 300


def _stream_cycles(start_lo, start_hi, n=8):
    """Cycles two read clients each take to read n consecutive rows from their start rows,
    both beginning in cycle 0: client 0 (the higher priority) and client 1."""
    dut = BankedMemory(width=8, depth=64, banks=2, reads=2, writes=1)
    done = {}

    async def bench(ctx):
        nxt = [0, 0]
        starts = [start_lo, start_hi]
        for t in range(4 * n):
            for j in range(2):
                ctx.set(dut.read[j].en, nxt[j] < n)
                ctx.set(dut.read[j].addr, starts[j] + nxt[j])
            for j in range(2):
                if nxt[j] < n and ctx.get(dut.read[j].grant):
                    nxt[j] += 1
                    if nxt[j] == n:
                        done[j] = t + 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return done[0], done[1]


def test_priority_and_interleaving_exact_cycles():
    # Streams on opposite banks never wait.
    assert _stream_cycles(0, 9) == (8, 8)
    # A collision costs the lower-priority stream one cycle: then the two alternate banks.
    assert _stream_cycles(0, 16) == (8, 9)
    assert _stream_cycles(5, 5) == (8, 9)
