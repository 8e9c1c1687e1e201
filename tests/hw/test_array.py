"""The systolic array alone, in the Amaranth simulator, against numpy."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import WEIGHT_WAVEFRONT, MacOptions, SystolicArray


def run_array(rows, cols, tiles, vectors, sels, seed=0, gap_every=0, mac=None):
    """Load `tiles` (two weight buffers), stream `vectors` with buffer `sels`."""
    dut = SystolicArray(rows=rows, cols=cols, mac=mac)
    outs = []
    cycles = {}

    async def bench(ctx):
        for b, tile in enumerate(tiles):
            for c in range(cols):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_buf, b)
                ctx.set(dut.w_col, c)
                for r in range(rows):
                    ctx.set(dut.w_data[r], int(tile[r][c]))
                await ctx.tick()
        ctx.set(dut.w_en, 0)
        for _ in range(WEIGHT_WAVEFRONT - 1):     # the last column's write takes effect
            await ctx.tick()
        i = 0
        t = 0
        while len(outs) < len(vectors):
            if i < len(vectors) and not (gap_every and t % gap_every == gap_every - 1):
                ctx.set(dut.a_valid, 1)
                ctx.set(dut.a_sel, int(sels[i]))
                for r in range(rows):
                    ctx.set(dut.a[r], int(vectors[i][r]))
                cycles.setdefault("first_in", t)
                i += 1
            else:
                ctx.set(dut.a_valid, 0)
                for r in range(rows):
                    ctx.set(dut.a[r], 99)  # garbage while not valid must not leak
            if ctx.get(dut.out_valid):
                cycles.setdefault("first_out", t)
                outs.append([ctx.get(dut.out[c]) for c in range(cols)])
            await ctx.tick()
            t += 1
            if t > 10 * (len(vectors) + rows + cols):
                raise AssertionError("array stopped producing results")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return dut, np.array(outs), cycles


@pytest.mark.parametrize("rows, cols", [(2, 2), (4, 4), (3, 5), (6, 3), (8, 8)])
def test_random_tiles_against_numpy(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = [rng.integers(-128, 128, (rows, cols)) for _ in range(2)]
    n = 3 * (rows + cols)
    vectors = rng.integers(-128, 128, (n, rows))
    # Switch buffers mid-stream, back to back: the wavefront carries the selection.
    sels = (np.arange(n) // 5) % 2
    dut, outs, cycles = run_array(rows, cols, tiles, vectors, sels)
    expect = np.array([vectors[i] @ tiles[sels[i]] for i in range(n)])
    assert np.array_equal(outs, expect)
    assert cycles["first_out"] - cycles["first_in"] == dut.latency == rows + cols - 1


def test_extremes_and_gaps():
    rows, cols = 4, 3
    tiles = [np.full((rows, cols), -128), np.full((rows, cols), 127)]
    vectors = np.array([[-128] * rows, [127] * rows, [-128, 127, 0, 1]] * 4)
    sels = np.array([0, 1, 0] * 4)
    _, outs, _ = run_array(rows, cols, tiles, vectors, sels, gap_every=3)
    expect = np.array([vectors[i] @ tiles[sels[i]] for i in range(len(vectors))])
    assert np.array_equal(outs, expect)
    assert outs[0][0] == 4 * 128 * 128


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 1, "cols": 4}, "rows must be an int from 2 to 64, not 1"),
    ({"rows": 4, "cols": 65}, "cols must be an int from 2 to 64, not 65"),
    ({"rows": 4.0, "cols": 4}, "rows must be an int"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SystolicArray(**kwargs)


# Implementation options (hw.array.MacOptions) change how products are built, never the
# results: each is checked against numpy on random tiles, buffer switches and gaps.
@pytest.mark.parametrize("rows, cols, mac", [
    (4, 4, "pipelined"),
    (3, 5, MacOptions(product_register=True, narrow_sums=True)),
    (4, 3, MacOptions(dsp_products=5)),                       # the hybrid: 7 products in LUTs
    (5, 4, MacOptions(dsp_products=0, product_register=True, narrow_sums=True)),
    (4, 4, "registered"),
    (3, 4, MacOptions(operand_register=True, dsp_products=5, narrow_sums=True)),
])
def test_mac_options_against_numpy(rows, cols, mac):
    rng = np.random.default_rng(rows * 10 + cols + 7)
    tiles = [rng.integers(-128, 128, (rows, cols)) for _ in range(2)]
    tiles[1][0] = -128                  # the extremes: -128 * -128 in every column
    n = 3 * (rows + cols)
    vectors = rng.integers(-128, 128, (n, rows))
    vectors[0] = -128
    vectors[1] = 127
    sels = (np.arange(n) // 4) % 2
    sels[0] = 1
    dut, outs, cycles = run_array(rows, cols, tiles, vectors, sels, gap_every=5, mac=mac)
    expect = np.array([vectors[i] @ tiles[sels[i]] for i in range(n)])
    assert np.array_equal(outs, expect)
    opts = MacOptions.cast(mac)
    registered = opts.product_register + opts.operand_register
    assert cycles["first_out"] - cycles["first_in"] == dut.latency == rows + cols - 1 + registered


def test_mac_option_errors():
    with pytest.raises(ValueError, match="mac must be a MacOptions or one of generic, pipelined"):
        SystolicArray(rows=2, cols=2, mac="dual")
    with pytest.raises(ValueError, match="dsp_products is 5, more than the 2x2 array's 4 products"):
        SystolicArray(rows=2, cols=2, mac=MacOptions(dsp_products=5))
    with pytest.raises(ValueError, match="kind must be one of generic, ice40_dual, not 'ecp5'"):
        MacOptions(kind="ecp5")
    with pytest.raises(ValueError, match="dsp_products must be None or an int of at least 0"):
        MacOptions(dsp_products=-1)
    with pytest.raises(ValueError, match="product_register must be a bool"):
        MacOptions(product_register=1)
    with pytest.raises(ValueError, match="operand_register must be a bool"):
        MacOptions(operand_register="yes")


@pytest.mark.parametrize("rows, cols, mac", [(2, 2, None), (4, 4, "registered"), (3, 5, None),
                                             (5, 3, "pipelined")])
def test_weight_writes_take_effect_as_a_wavefront(rows, cols, mac):
    """The write contract (WEIGHT_WAVEFRONT): vectors stream on buffer 1 every cycle while
    its columns are rewritten in a shuffled order, one every few cycles; a vector entering
    in cycle e multiplies column c with the new weights exactly when e >= p_c + 2, where p_c
    is the cycle column c's write was presented. Buffer 0, never rewritten, stays intact."""
    rng = np.random.default_rng(rows * cols)
    dut = SystolicArray(rows=rows, cols=cols, mac=mac)
    old, new, other = (rng.integers(-128, 128, (rows, cols)) for _ in range(3))
    order = rng.permutation(cols)
    expect, outs = [], []

    async def bench(ctx):
        def write(b, c, tile):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_buf, b)
            ctx.set(dut.w_col, int(c))
            for r in range(rows):
                ctx.set(dut.w_data[r], int(tile[r][c]))

        async def tick():
            await ctx.tick()
            if ctx.get(dut.out_valid):
                outs.append([ctx.get(dut.out[c]) for c in range(cols)])

        for c in range(cols):
            write(1, c, old)
            await tick()
            write(0, c, other)
            await tick()
        ctx.set(dut.w_en, 0)
        await tick()
        presented = {}
        t = 0
        while t < 3 * cols + 4:
            if t % 3 == 1 and len(presented) < cols:
                c = order[len(presented)]
                write(1, c, new)
                presented[c] = t
            else:
                ctx.set(dut.w_en, 0)
            sel = int(t % 5 == 4)             # every fifth vector on the untouched buffer 0
            v = rng.integers(-128, 128, rows)
            ctx.set(dut.a_valid, 1)
            ctx.set(dut.a_sel, 1 - sel)
            for r in range(rows):
                ctx.set(dut.a[r], int(v[r]))
            if sel:
                expect.append(v @ other)
            else:
                tile = np.array([[new[r][c] if c in presented and t >= presented[c] + WEIGHT_WAVEFRONT
                                  else old[r][c] for c in range(cols)] for r in range(rows)])
                expect.append(v @ tile)
            await tick()
            t += 1
        ctx.set(dut.a_valid, 0)
        ctx.set(dut.w_en, 0)
        for _ in range(dut.latency + 2):
            await tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(outs), np.array(expect))
