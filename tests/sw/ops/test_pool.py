"""sw/ops/pool.py: max pooling exact and average pooling within half a step of the float
reference; both bit-exact on the functional model; unsupported options named."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.pool import Pool, QAvgPool

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step


class FunctionalPools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return F.avg_pool2d(F.max_pool2d(self.conv(x), 3, 1, 1), kernel_size=2)


class CeilFunctional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return F.max_pool2d(self.conv(x), 3, 2, ceil_mode=True)


MAX = {
    "k2": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2)), (3, 6, 6)),
    "k3_s2_p1": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.MaxPool2d(3, 2, 1)), (3, 7, 7)),
    # ceil_mode (SqueezeNet, GoogLeNet): the last window hangs over the end of the input.
    "k3_s2_ceil": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.MaxPool2d(3, 2, ceil_mode=True)), (3, 8, 6)),
    "k2_s2_p1_ceil": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2, 2, 1, ceil_mode=True)),
                      (3, 5, 7)),
    "functional_ceil": (lambda: CeilFunctional(), (3, 7, 7)),
}
AVG = {
    "k2": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.AvgPool2d(2)), (3, 6, 4)),
    "k3_s1_p1": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AvgPool2d(3, 1, 1)), (3, 5, 5)),
    "functional": (FunctionalPools, (3, 6, 6)),
}


@pytest.mark.parametrize("case", list(MAX))
def test_max_golden_equals_float(case):
    factory, shape = MAX[case]
    golden_vs_float(factory, shape, "maxpool", lambda q, fargs, node, qins: 1e-6)


@pytest.mark.parametrize("case", list(AVG))
def test_avg_golden_tracks_float(case):
    factory, shape = AVG[case]
    golden_vs_float(factory, shape, "avgpool", lambda q, fargs, node, qins: output_step(q))


@pytest.mark.parametrize("case", [("max", k) for k in MAX] + [("avg", k) for k in AVG])
def test_lowering_bit_exact(case):
    kind, name = case
    factory, shape = (MAX if kind == "max" else AVG)[name]
    bit_exact_on_func(factory, shape)


def test_typed_attributes():
    model = FunctionalPools()
    x = torch.randn(2, 3, 6, 6)
    graph = sw.frontend.trace(model)
    assert [n.op for n in graph.nodes] == ["input", "conv", "maxpool", "avgpool"]
    assert graph.nodes[2].attrs == Pool(kernel=(3, 3), stride=(1, 1), padding=(1, 1))
    assert graph.nodes[3].attrs == Pool(kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    q = sw.quantize(model, [x]).node(graph.nodes[3].name)
    assert isinstance(q.attrs, QAvgPool) and q.attrs.count == 4


def test_ceil_mode_shapes_follow_pytorch():
    model = Seq(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, ceil_mode=True)).eval()
    x = torch.randn(2, 3, 8, 6)
    q = sw.quantize(model, [x])
    assert q(x).shape == model(x).shape == (2, 4, 4, 3)
    assert sw.frontend.trace(model).nodes[2].attrs.ceil_mode


@pytest.mark.parametrize("mod, message", [
    (nn.MaxPool2d(2, dilation=2), r"MaxPool2d at body.0: dilation=\(2, 2\) is not supported"),
    (nn.AvgPool2d(2, count_include_pad=False),
     "AvgPool2d at body.0: count_include_pad=False is not supported"),
    (nn.AvgPool2d(2, ceil_mode=True, divisor_override=3),
     "AvgPool2d at body.0: ceil_mode=True, divisor_override=3 are not supported"),
])
def test_unsupported_options(mod, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(Seq(mod), [torch.randn(2, 2, 4, 4)])
