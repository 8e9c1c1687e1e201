"""The requantizer alone, in the Amaranth simulator, against the PyTorch golden."""
import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from hw.requant import Requantizer
from sw import golden

I32_MIN, I32_MAX = -2**31, 2**31 - 1


def run_requant(acc, bias, mult, shift, zp, lo, hi):
    lanes = acc.shape[1]
    dut = Requantizer(lanes=lanes, tag_width=16)
    outs, tags, out_cycles = [], [], []

    async def bench(ctx):
        for lane in range(lanes):
            ctx.set(dut.bias[lane], int(bias[lane]))
            ctx.set(dut.mult[lane], int(mult[lane]))
            ctx.set(dut.shift[lane], int(shift[lane]))
        ctx.set(dut.out_zp, zp)
        ctx.set(dut.clamp_lo, lo)
        ctx.set(dut.clamp_hi, hi)
        for t in range(len(acc) + Requantizer.LATENCY + 1):
            if t < len(acc):
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.i_tag, t)
                for lane in range(lanes):
                    ctx.set(dut.i_acc[lane], int(acc[t][lane]))
            else:
                ctx.set(dut.i_valid, 0)
            if ctx.get(dut.o_valid):
                outs.append([ctx.get(dut.o_data[lane]) for lane in range(lanes)])
                tags.append(ctx.get(dut.o_tag))
                out_cycles.append(t)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(outs), tags, out_cycles


def golden_of(acc, bias, mult, shift, zp, lo, hi):
    return golden.requantize(torch.tensor(acc), torch.tensor(bias), torch.tensor(mult),
                             torch.tensor(shift), zp, lo, hi).numpy()


def test_random_and_edge_values():
    rng = np.random.default_rng(5)
    lanes = 6
    n = 200
    acc = rng.integers(I32_MIN, I32_MAX + 1, (n, lanes), dtype=np.int64)
    acc[:60] = rng.integers(-3000, 3000, (60, lanes))
    acc[60] = [I32_MIN, I32_MAX, 0, -1, 1, I32_MIN]
    bias = np.array([0, 7, -5, 1 << 30, I32_MIN, 3])
    mult = np.array([1 << 30, I32_MIN, int(rng.integers(1 << 30, 1 << 31)), I32_MAX, 1 << 30,
                     int(rng.integers(I32_MIN, I32_MAX))])
    shift = np.array([-1, 0, -31, 5, -7, 30])
    outs, tags, cycles = run_requant(acc, bias, mult, shift, -3, -100, 120)
    assert np.array_equal(outs, golden_of(acc, bias, mult, shift, -3, -100, 120))
    # Full throughput, fixed latency, tags in order.
    assert tags == list(range(n))
    assert cycles == [t + Requantizer.LATENCY for t in range(n)]


def test_ties_round_away_from_zero():
    # x * 0.5 * 2**-1 = x / 4 with x = 4k + 2 is a tie after SRDHM.
    acc = np.array([[2, -2, 6, -6], [10, -10, 14, -14], [5, -5, 7, -7]])
    mult = np.array([1 << 30] * 4)
    shift = np.array([-1] * 4)
    outs, _, _ = run_requant(acc, np.zeros(4, int), mult, shift, 0, -128, 127)
    assert np.array_equal(outs, golden_of(acc, np.zeros(4, int), mult, shift, 0, -128, 127))
    assert outs[1].tolist() == [3, -3, 4, -4]


def test_shift_saturates_like_the_model():
    """Shifts outside -31..30 are saturated by the hardware (docs/numerics.md)."""
    from sim.functional import requantize_np
    acc = np.array([[1 << 20, -(1 << 20), 12345, -77]])
    mult = np.array([1 << 30] * 4)
    shift = np.array([-40, 40, -31, 30])
    outs, _, _ = run_requant(acc, np.zeros(4, int), mult, shift, 1, -128, 127)
    assert np.array_equal(outs[0], requantize_np(acc, np.zeros(4), mult, shift, 1, -128, 127)[0])


@pytest.mark.parametrize("kwargs", [{"lanes": 0}, {"lanes": 4, "tag_width": 0}])
def test_constructor_errors(kwargs):
    with pytest.raises(ValueError, match="must be a positive int"):
        Requantizer(**kwargs)
