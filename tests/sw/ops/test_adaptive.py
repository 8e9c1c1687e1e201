"""sw/ops/adaptive.py: adaptive average and max pooling to any output size (equal,
unequal and overlapping windows, upsampling as in VGG at small inputs): the golden
against PyTorch's float operator, bit-exact on the functional model."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.adaptive import QAdaptivePool, windows

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)

    def forward(self, x):
        return F.adaptive_max_pool2d(F.adaptive_avg_pool2d(self.conv(x), (3, 2)), 2)


AVG = {
    "equal": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d(2)), (3, 6, 4)),
    "overlapping": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d((3, 2))), (3, 5, 7)),
    "upsampling_vgg": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d(7)), (3, 2, 2)),
    "functional": (Functional, (3, 7, 5)),
}
MAX = {
    "equal": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AdaptiveMaxPool2d(3)), (3, 6, 6)),
    "overlapping": (lambda: Seq(nn.Conv2d(3, 7, 1), nn.AdaptiveMaxPool2d((2, 3))), (3, 5, 4)),
}


def test_windows_are_pytorchs():
    x = torch.arange(7.0).view(1, 1, 1, 7)
    for out in range(1, 9):
        want = F.adaptive_avg_pool2d(x, (1, out)).flatten()
        got = torch.tensor([x[0, 0, 0, a:b].mean() for a, b in windows(7, out)])
        assert torch.allclose(got, want)


@pytest.mark.parametrize("case", list(AVG))
def test_avg_golden_tracks_float(case):
    factory, shape = AVG[case]
    op = "adaptive_maxpool" if case == "functional" else "adaptive_avgpool"
    golden_vs_float(factory, shape, op, lambda q, fargs, node, qins: output_step(q))


@pytest.mark.parametrize("case", list(MAX))
def test_max_golden_equals_float(case):
    factory, shape = MAX[case]
    golden_vs_float(factory, shape, "adaptive_maxpool", lambda q, fargs, node, qins: 1e-6)


@pytest.mark.parametrize("case", [("avg", k) for k in AVG] + [("max", k) for k in MAX])
def test_lowering_bit_exact(case):
    kind, name = case
    factory, shape = (AVG if kind == "avg" else MAX)[name]
    bit_exact_on_func(factory, shape)


def test_one_parameter_group_per_window_size():
    model = Seq(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d((3, 2)))
    qmodel = sw.quantize(model, [torch.randn(2, 3, 5, 7)])
    (q,) = [n for n in qmodel.nodes if n.op == "adaptive_avgpool"]
    # rows 5 -> 3: windows of 2, 3, 2; columns 7 -> 2: 4, 4 -> counts 8 and 12.
    assert isinstance(q.attrs, QAdaptivePool) and q.attrs.counts == (8, 12)


def test_output_size_1_is_global_pooling():
    graph = sw.frontend.trace(Seq(nn.AdaptiveAvgPool2d((1, 1))))
    assert [n.op for n in graph.nodes] == ["input", "gap"]


@pytest.mark.parametrize("mod, message", [
    (nn.AdaptiveAvgPool2d((None, 2)), "AdaptiveAvgPool2d at .?body.0.?: output size None"),
    (nn.AdaptiveMaxPool2d(2, return_indices=True),
     "AdaptiveMaxPool2d at .?body.0.?: return_indices=True is not supported"),
])
def test_unsupported_options(mod, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(Seq(mod), [torch.randn(2, 2, 4, 4)])


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool2d((2, 3)), nn.AdaptiveMaxPool2d((3, 7)),
                                  nn.AdaptiveAvgPool2d((2, 50))])
def test_window_rows_over_the_accumulator_are_split(pool):
    """A row of windows wider than tiny's 128 accumulator rows (8 x 60 inputs to 2 x 3:
    4 x 60 pixels a row) runs in column spans that fit; bit-exact."""
    from .common import TINY
    bit_exact_on_func(lambda: Seq(nn.Conv2d(3, 4, 1), pool), (3, 8, 60), configs=[TINY])


def test_windows_over_the_accumulator_are_named():
    """One window over tiny's 128 accumulator rows: a CompileError naming the layer with
    its module path, the sizes and the limit (no deep traceback)."""
    from .common import TINY
    qmodel = sw.quantize(Seq(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d((1, 2))),
                         [torch.randn(2, 3, 8, 60)])
    with pytest.raises(sw.CompileError, match=r"at body.1\): .* a window of 8 x 30 pixels needs "
                                              r"241 accumulator rows, the NPU has 128"):
        sw.compile(qmodel, TINY)
