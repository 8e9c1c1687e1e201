"""The AXI4 RAM and the two-master arbiter in the Amaranth simulator: random bursts with
random strobes and back-pressure against a bytearray, SLVERR past the end, the initial
image, the block RAM's exact beat timing, the SPRAM mapping, and two masters sharing one
RAM through the arbiter."""

import random

import pytest
from amaranth.hdl import Fragment, Instance, Module
from amaranth.lib.wiring import connect
from amaranth.sim import Simulator

from hw.axi import RESP_OKAY, RESP_SLVERR
from hw.axi_ram import AXI4Arbiter, AXI4RAM


async def write_burst(ctx, bus, addr, beats, rng, busy=0.3):
    """One INCR write burst of ``beats`` (data, strobe) pairs; returns BRESP."""
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.awlen, len(beats) - 1)
    ctx.set(bus.awid, 1)
    await ctx.tick().until(bus.awready)
    ctx.set(bus.awvalid, 0)
    i = 0
    while i < len(beats):
        valid = rng.random() >= busy
        ctx.set(bus.wvalid, valid)
        ctx.set(bus.wdata, beats[i][0])
        ctx.set(bus.wstrb, beats[i][1])
        ctx.set(bus.wlast, i == len(beats) - 1)
        _, _, ready = await ctx.tick().sample(bus.wready)
        if valid and ready:
            i += 1
    ctx.set(bus.wvalid, 0)
    while True:
        ready = rng.random() >= busy
        ctx.set(bus.bready, ready)
        _, _, valid, resp, bid = await ctx.tick().sample(bus.bvalid, bus.bresp, bus.bid)
        if valid and ready:
            ctx.set(bus.bready, 0)
            assert bid == 1
            return resp


async def read_burst(ctx, bus, addr, n, rng, busy=0.3):
    """One INCR read burst of ``n`` beats; returns [(data, resp)]."""
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arlen, n - 1)
    ctx.set(bus.arid, 2)
    await ctx.tick().until(bus.arready)
    ctx.set(bus.arvalid, 0)
    out = []
    while len(out) < n:
        ready = rng.random() >= busy
        ctx.set(bus.rready, ready)
        _, _, valid, data, resp, last, rid = await ctx.tick().sample(
            bus.rvalid, bus.rdata, bus.rresp, bus.rlast, bus.rid)
        if valid and ready:
            assert rid == 2 and last == (len(out) == n - 1)
            out.append((data, resp))
    ctx.set(bus.rready, 0)
    return out


def _traffic(bus, model, size, beat, seed, log, bursts=40):
    """A writer and a reader of random bursts (part past the end) on ``bus``, checked
    against the bytearray ``model``; reads only after the writes they overlap."""
    rng = random.Random(seed)
    words = (size + 2 * beat) // beat          # reach past the end

    async def bench(ctx):
        for _ in range(bursts):
            word = rng.randrange(words)
            n = rng.randrange(1, 6)
            if rng.random() < 0.5:
                beats = [(rng.getrandbits(8 * beat), rng.getrandbits(beat)) for _ in range(n)]
                resp = await write_burst(ctx, bus, word * beat, beats, rng)
                oob = False
                for k, (value, strb) in enumerate(beats):
                    base = (word + k) * beat
                    if base >= size:
                        oob = True
                        continue
                    for b in range(beat):
                        if strb >> b & 1:
                            model[base + b] = value >> (8 * b) & 0xFF
                assert resp == (RESP_SLVERR if oob else RESP_OKAY)
                log.append("w")
            else:
                got = await read_burst(ctx, bus, word * beat, n, rng)
                for k, (value, resp) in enumerate(got):
                    base = (word + k) * beat
                    if base >= size:
                        assert (value, resp) == (0, RESP_SLVERR)
                    else:
                        want = int.from_bytes(model[base:base + beat], "little")
                        assert (value, resp) == (want, RESP_OKAY), f"word {word + k}"
                log.append("r")
    return bench


@pytest.mark.parametrize("kind, width", [("bram", 32), ("bram", 64), ("spram", 32)])
def test_random_bursts_against_a_bytearray(kind, width):
    size = 256
    init = bytes(random.Random(9).randrange(256) for _ in range(100))
    ram = AXI4RAM(size=size, data_width=width, kind=kind, init=init)
    model = bytearray(init.ljust(size, b"\0"))
    log = []
    sim = Simulator(ram)
    sim.add_clock(1e-6)
    sim.add_testbench(_traffic(ram.s_axi, model, size, width // 8, seed=width, log=log))
    sim.run()
    assert log.count("r") > 10 and log.count("w") > 10


def test_block_ram_beat_timing_matches_the_harness_ram():
    """Back-to-back bursts at full rate: a read's first beat the cycle after its AR, one beat
    a cycle, the next AR with the last beat; a write's response the cycle after wlast."""
    ram = AXI4RAM(size=64, data_width=32, init=bytes(range(64)))
    bus = ram.s_axi
    seen = []

    async def bench(ctx):
        ctx.set(bus.rready, 1)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.arlen, 1)
        for t in range(8):
            ctx.set(bus.araddr, 8 * (t // 2 % 2))
            _, _, arready, rvalid, rdata = await ctx.tick().sample(bus.arready, bus.rvalid,
                                                                    bus.rdata)
            seen.append((arready, rvalid, rdata if rvalid else None))
        ctx.set(bus.arvalid, 0)
        # A two-beat write: AW, then beats in two cycles, B the cycle after.
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.awaddr, 4)
        _, _, awready = await ctx.tick().sample(bus.awready)
        assert awready
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.wstrb, 0b1111)
        for k in range(2):
            ctx.set(bus.wdata, 0x11111111 * (k + 1))
            ctx.set(bus.wlast, k == 1)
            _, _, wready = await ctx.tick().sample(bus.wready)
            assert wready
        ctx.set(bus.wvalid, 0)
        assert ctx.get(bus.bvalid) and not ctx.get(bus.awready)
        ctx.set(bus.bready, 1)
        await ctx.tick()
        assert ctx.get(bus.awready) and not ctx.get(bus.bvalid)
        assert ctx.get(ram.memory.data[1]) == 0x11111111
        assert ctx.get(ram.memory.data[2]) == 0x22222222

    sim = Simulator(ram)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    word = [int.from_bytes(bytes(range(4 * i, 4 * i + 4)), "little") for i in range(4)]
    # AR at cycle 0; beats at 1 and 2; the second AR with the last beat at 2; ...
    assert seen[:5] == [(1, 0, None), (0, 1, word[0]), (1, 1, word[1]), (0, 1, word[2]),
                        (1, 1, word[3])]


def test_spram_maps_to_sb_spram256ka():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    platform = ICEBreakerPlatform()
    for width, size, count in ((32, 131072, 4), (64, 65536, 4), (32, 32768, 2), (16 * 4, 131072, 4)):
        ram = AXI4RAM(size=size, data_width=width, kind="spram")
        frag = Fragment.get(ram, platform)
        cells = [sub for sub, _, _ in frag.subfragments if isinstance(sub, Instance)]
        assert len(cells) == count and all(c.type == "SB_SPRAM256KA" for c in cells)
    with pytest.raises(ValueError, match="cannot be initialised"):
        Fragment.get(AXI4RAM(size=64, data_width=32, kind="spram", init=b"\1"), platform)


def test_ram_argument_errors():
    with pytest.raises(ValueError, match="kind must be one of bram, spram, not 'dram'"):
        AXI4RAM(size=64, data_width=32, kind="dram")
    with pytest.raises(ValueError, match="multiple of the 4-byte beat"):
        AXI4RAM(size=66, data_width=32)
    with pytest.raises(ValueError, match="at most 131072 bytes"):
        AXI4RAM(size=1 << 18, data_width=32, kind="spram")
    with pytest.raises(ValueError, match="at most 64 bits wide"):
        AXI4RAM(size=1024, data_width=128, kind="spram")
    with pytest.raises(ValueError, match="init of 65 bytes"):
        AXI4RAM(size=64, data_width=32, init=bytes(65))


@pytest.mark.parametrize("seed", [1, 2])
def test_two_masters_share_one_ram_through_the_arbiter(seed):
    size, beat = 256, 4
    m = Module()
    m.submodules.ram = ram = AXI4RAM(size=size, data_width=32)
    m.submodules.arb = arb = AXI4Arbiter(data_width=32)
    connect(m, arb.m, ram.s_axi)
    # Each master works on its own half, so the two models never overlap.
    models = [bytearray(size), bytearray(size)]
    logs = [[], []]
    sim = Simulator(m)
    sim.add_clock(1e-6)
    for i, port in enumerate((arb.s0, arb.s1)):
        sim.add_testbench(_half(port, models[i], i, size, beat, seed * 2 + i, logs[i]))
    sim.run()
    assert all(log.count("r") > 5 and log.count("w") > 5 for log in logs)


def _half(bus, model, half, size, beat, seed, log):
    rng = random.Random(seed)
    lo = half * size // 2

    async def bench(ctx):
        for _ in range(30):
            word = rng.randrange(size // 2 // beat - 4)
            n = rng.randrange(1, 5)
            addr = lo + word * beat
            if rng.random() < 0.5:
                beats = [(rng.getrandbits(32), rng.getrandbits(4)) for _ in range(n)]
                assert await write_burst(ctx, bus, addr, beats, rng) == RESP_OKAY
                for k, (value, strb) in enumerate(beats):
                    for b in range(beat):
                        if strb >> b & 1:
                            model[addr + k * beat + b] = value >> (8 * b) & 0xFF
                log.append("w")
            else:
                got = await read_burst(ctx, bus, addr, n, rng)
                want = [(int.from_bytes(model[addr + k * beat:addr + (k + 1) * beat], "little"),
                         RESP_OKAY) for k in range(n)]
                assert got == want
                log.append("r")
    return bench
