"""sw/ops/gap.py: global average pooling within half a step of the float mean, bit-exact
on the functional model (also over more pixels than one LOAD brings in)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.gap import QGap

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step


class FunctionalGap(nn.Module):
    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


CASES = {
    "module": (lambda: Seq(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), (3, 7, 7)),
    "functional": (FunctionalGap, (5, 4, 6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_float(case):
    factory, shape = CASES[case]
    golden_vs_float(factory, shape, "gap", lambda q, fargs, node, qins: output_step(q))


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape)


def test_quantized_attributes():
    qmodel = sw.quantize(FunctionalGap(), [torch.randn(2, 5, 4, 6)])
    (q,) = [n for n in qmodel.nodes if n.op == "gap"]
    assert isinstance(q.attrs, QGap) and q.attrs.count == 24 and q.out == qmodel.input_qparams


def test_only_global_pooling():
    with pytest.raises(sw.UnsupportedOpError, match="only output size 1"):
        sw.quantize(Seq(nn.AdaptiveAvgPool2d(2)), [torch.randn(2, 2, 4, 4)])
