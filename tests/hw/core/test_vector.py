"""The vector ALU datapath alone, in the Amaranth simulator, against Python integers."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.core import VectorALU
from hw.isa import AluOp


def _wrap(v):
    return ((v + 2**31) % 2**32) - 2**31


def _lane(op, d, s, row):
    """One lane of ``op`` in Python integers (``row``: all of the source's lanes)."""
    sh = s & 31
    if op is AluOp.RSUM:
        return _wrap(sum(row))
    if op is AluOp.RMAX:
        return max(row)
    if op is AluOp.CLZ:
        return 32 - (s % 2**32).bit_length()
    if op is AluOp.MULH:
        return (d * s) // 2**32
    if op is AluOp.RSHR:
        return (d + (1 << sh >> 1)) // 2**sh      # exact: round half up
    return _wrap({
        AluOp.MOV: s, AluOp.ADD: d + s, AluOp.SUB: d - s, AluOp.MUL: d * s,
        AluOp.MAX: max(d, s), AluOp.MIN: min(d, s),
        AluOp.SHR: d // 2**sh, AluOp.SHL: d << sh,
    }[op])


def _reference(op, d, s):
    row = [int(v) for v in s]
    return np.array([_lane(op, int(a), int(b), row) for a, b in zip(d, s)], np.int64)


def test_reference_edges():
    """The references' corners: CLZ of 0 and of negative words, MULH's floor, RSHR's ties
    and the shift of 0, RSUM's wrap."""
    assert [_lane(AluOp.CLZ, 0, v, []) for v in (0, 1, -1, 2**30)] == [32, 31, 0, 1]
    assert _lane(AluOp.MULH, -1, 1, []) == -1 and _lane(AluOp.MULH, 2**31 - 1, 2**31 - 1, []) == 2**30 - 1
    assert [_lane(AluOp.RSHR, d, 1, []) for d in (-3, -2, -1, 1, 3)] == [-1, -1, 0, 1, 2]
    assert _lane(AluOp.RSHR, 2**31 - 1, 0, []) == 2**31 - 1
    assert _lane(AluOp.RSUM, 0, 0, [2**31 - 1, 1]) == -2**31


@pytest.mark.parametrize("lanes", [1, 4, 7])
def test_every_op_against_numpy(lanes):
    dut = VectorALU(lanes=lanes)
    rng = np.random.default_rng(lanes)
    checked = []

    async def bench(ctx):
        for op in AluOp:
            for trial in range(20):
                big = trial % 2 == 0
                lo, hi = (-2**31, 2**31) if big else (-300, 300)
                d = rng.integers(lo, hi, lanes, dtype=np.int64).astype(np.int32)
                s = rng.integers(lo, hi, lanes, dtype=np.int64).astype(np.int32)
                if trial % 5 == 4:
                    s[:] = rng.choice([0, 1, -1, -2**31, 2**31 - 1], lanes)   # corners
                ctx.set(dut.op, op)
                for c in range(lanes):
                    ctx.set(dut.d[c], int(d[c]))
                    ctx.set(dut.s[c], int(s[c]))
                got = np.array([ctx.get(dut.out[c]) for c in range(lanes)], np.int64)
                np.testing.assert_array_equal(got, _reference(op, d, s), err_msg=op.name)
                checked.append(op)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert set(checked) == set(AluOp) and len(checked) == 20 * len(AluOp)


@pytest.mark.parametrize("lanes", [0, 65, True, 2.0])
def test_lanes_validated(lanes):
    with pytest.raises(ValueError, match="VectorALU lanes must be an int from 1 to 64"):
        VectorALU(lanes=lanes)


@pytest.mark.parametrize("mul_bits", [1, 2, 4, 8, 16])
def test_sequential_multiplier_against_numpy(mul_bits):
    """MUL and MULH with ``mul_bits``: the result in the mul_done cycle, 32 / mul_bits
    cycles after mul_start, with the corners (-2**31 times itself, 0, -1) among them; the
    other operations stay combinational."""
    lanes = 3
    dut = VectorALU(lanes=lanes, mul_bits=mul_bits)
    rng = np.random.default_rng(mul_bits)
    steps = 32 // mul_bits
    checked = []

    async def bench(ctx):
        for trial in range(24):
            op = (AluOp.MUL, AluOp.MULH, AluOp.ADD)[trial % 3]
            d = rng.integers(-2**31, 2**31, lanes, dtype=np.int64).astype(np.int32)
            s = rng.integers(-2**31, 2**31, lanes, dtype=np.int64).astype(np.int32)
            if trial % 4 == 3:
                d[:] = rng.choice([0, 1, -1, -2**31, 2**31 - 1], lanes)
                s[:] = rng.choice([0, 1, -1, -2**31, 2**31 - 1], lanes)
            ctx.set(dut.op, op)
            for c in range(lanes):
                ctx.set(dut.d[c], int(d[c]))
                ctx.set(dut.s[c], int(s[c]))
            want = _reference(op, d, s)
            if op is AluOp.ADD:
                got = np.array([ctx.get(dut.out[c]) for c in range(lanes)], np.int64)
                np.testing.assert_array_equal(got, want)
                continue
            ctx.set(dut.mul_start, 1)
            for cycle in range(steps):
                assert ctx.get(dut.mul_done) == (cycle == steps - 1)
                if cycle == steps - 1:
                    got = np.array([ctx.get(dut.out[c]) for c in range(lanes)], np.int64)
                    np.testing.assert_array_equal(got, want, err_msg=f"{op.name} {d} {s}")
                    checked.append(op)
                await ctx.tick()
                ctx.set(dut.mul_start, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 16


@pytest.mark.parametrize("mul_bits", [3, 32, -1])
def test_mul_bits_validated(mul_bits):
    with pytest.raises(ValueError, match="VectorALU mul_bits must be 0, 1, 2, 4, 8 or 16"):
        VectorALU(lanes=4, mul_bits=mul_bits)
