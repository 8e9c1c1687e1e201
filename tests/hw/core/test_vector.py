"""The vector ALU datapath alone, in the Amaranth simulator, against numpy int32."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.core import VectorALU
from hw.isa import AluOp


def _reference(op, d, s):
    d = d.astype(np.int64)
    s = s.astype(np.int64)
    out = {
        AluOp.MOV: s, AluOp.ADD: d + s, AluOp.SUB: d - s, AluOp.MUL: d * s,
        AluOp.MAX: np.maximum(d, s), AluOp.MIN: np.minimum(d, s),
        AluOp.SHR: d >> (s & 31), AluOp.SHL: d << (s & 31),
    }[op]
    return (out & 0xFFFFFFFF).astype(np.uint32).astype(np.int32)


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
