"""The read arbiter alone, in the Amaranth simulator: readers on AXI4ReadSignature ports,
an AR grant held until its handshake, R beats routed back by ID."""
import random

import pytest
from amaranth.sim import Simulator

from hw.dma import ReadArbiter


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grants_hold_and_beats_route_by_id(seed):
    dut = ReadArbiter(n=3, data_width=16, id_width=2)
    rng = random.Random(seed)
    log = {"ar": [], "r": {i: [] for i in range(3)}}

    async def bench(ctx):
        want = [None] * 3          # (addr, len) each reader is presenting
        for t in range(600):
            for i, port in enumerate(dut.s):
                if want[i] is None and rng.random() < 0.3:
                    want[i] = (rng.randrange(1 << 16) * 16, rng.randrange(4))
                ctx.set(port.arvalid, want[i] is not None)
                if want[i] is not None:
                    ctx.set(port.araddr, want[i][0])
                    ctx.set(port.arlen, want[i][1])
                ctx.set(port.rready, rng.random() < 0.7)
            arready = rng.random() < 0.5
            ctx.set(dut.m.arready, arready)
            rid = rng.randrange(3)
            ctx.set(dut.m.rvalid, 1)
            ctx.set(dut.m.rid, rid)
            ctx.set(dut.m.rdata, t)
            if ctx.get(dut.m.arvalid):
                sel = ctx.get(dut.m.arid)
                # The lowest waiting reader is shown, unless an earlier grant is held.
                assert want[sel] == (ctx.get(dut.m.araddr), ctx.get(dut.m.arlen))
                if log["ar"] and log["ar"][-1][2] is False:
                    assert sel == log["ar"][-1][0], "a held grant moved"
                log["ar"].append((sel, want[sel], arready))
                for i, port in enumerate(dut.s):
                    assert ctx.get(port.arready) == (arready and i == sel)
                if arready:
                    want[sel] = None
            for i, port in enumerate(dut.s):
                assert ctx.get(port.rvalid) == (i == rid)
                if i == rid:
                    assert ctx.get(dut.m.rready) == ctx.get(port.rready)
                    assert ctx.get(port.rdata) == t
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    handshakes = [a for a in log["ar"] if a[2]]
    assert len({a[0] for a in handshakes}) == 3 and len(handshakes) > 100
