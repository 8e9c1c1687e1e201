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


class Means(nn.Module):
    """torchvision's forms: ``x.mean([2, 3])`` (MNASNet), ``torch.mean(..., keepdim=True)``."""

    def __init__(self, keepdim):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        self.keepdim = keepdim

    def forward(self, x):
        x = self.conv(x)
        if self.keepdim:
            return torch.flatten(torch.mean(x, dim=(-2, -1), keepdim=True), 1)
        return x.mean([2, 3])


CASES = {
    "mean": (lambda: Means(False), (3, 5, 4)),
    "mean_keepdim": (lambda: Means(True), (3, 3, 6)),
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


def test_mean_over_other_dimensions_is_named():
    class M(nn.Module):
        def forward(self, x):
            return x.mean(1)
    with pytest.raises(sw.UnsupportedOpError, match=r"mean at mean \(in the model's forward\): only "
                                                     r"the mean over the spatial dimensions"):
        sw.quantize(M(), [torch.randn(2, 2, 4, 4)])
