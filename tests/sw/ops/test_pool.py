"""sw/ops/pool.py: max pooling exact and average pooling within half a step of the float
reference; both bit-exact on the functional model; unsupported options named."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.pool import Pool, QAvgPool, divisors

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


class FunctionalAvg(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return F.avg_pool2d(self.conv(x), 3, 2, 1, True, False)


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
    # Border windows with their own divisors (PyTorch's): ceil_mode's last windows hang
    # over the end, count_include_pad=False counts only the input's cells.
    "k3_s2_ceil": (lambda: Seq(nn.Conv2d(3, 5, 1), nn.AvgPool2d(3, 2, ceil_mode=True)), (3, 8, 6)),
    "k3_s2_p1_ceil": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
                      (3, 6, 7)),
    "k3_s1_p1_exclude_pad": (lambda: Seq(nn.Conv2d(3, 5, 1),
                                         nn.AvgPool2d(3, 1, 1, count_include_pad=False)), (3, 5, 6)),
    "k2_s2_p1_ceil_exclude_pad": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.AvgPool2d(
        2, 2, 1, ceil_mode=True, count_include_pad=False)), (3, 5, 7)),
    "divisor_override": (lambda: Seq(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, 1, divisor_override=5)),
                         (3, 6, 6)),
    "functional_ceil_exclude_pad": (lambda: FunctionalAvg(), (3, 7, 5)),
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
    assert isinstance(q.attrs, QAvgPool) and q.attrs.counts == (4,) and q.attrs.biases == (0,)


@pytest.mark.parametrize("h, k, s, p, ceil, include", [
    (8, 3, 2, 0, True, True), (6, 3, 2, 1, True, True), (5, 3, 1, 1, False, False),
    (7, 2, 2, 1, True, False), (9, 4, 3, 2, True, True), (10, 3, 3, 1, True, False)])
def test_divisors_are_pytorchs(h, k, s, p, ceil, include):
    """The divisor of every window is the one PyTorch's avg_pool2d divides by (read off a
    pooling of ones, divisor_override=1 giving the sums)."""
    x = torch.ones(1, 1, h, h)
    mean = F.avg_pool2d(x, k, s, p, ceil, include)
    sums = F.avg_pool2d(x, k, s, p, ceil, True, divisor_override=1)
    want = torch.round(sums / mean)[0, 0].int()
    d = torch.tensor(divisors(h, k, s, p, mean.shape[-1], include))
    assert torch.equal(d[:, None] * d[None, :], want)


def test_border_windows_have_their_own_groups():
    model = Seq(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True,
                                                count_include_pad=False)).eval()
    x = torch.randn(2, 3, 6, 6)
    q = sw.quantize(model, [x]).nodes[-1]
    # Rows and columns: windows of 2, 3, 3 and 1 input cells: divisors 1 .. 9.
    assert q.attrs.counts == (1, 2, 3, 4, 6, 9)
    assert q.attrs.groups[0] == (3, 4, 4, 1)


def test_ceil_mode_shapes_follow_pytorch():
    model = Seq(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, ceil_mode=True)).eval()
    x = torch.randn(2, 3, 8, 6)
    q = sw.quantize(model, [x])
    assert q(x).shape == model(x).shape == (2, 4, 4, 3)
    assert sw.frontend.trace(model).nodes[2].attrs.ceil_mode


@pytest.mark.parametrize("mod, message", [
    (nn.MaxPool2d(2, dilation=2), r"MaxPool2d at body.0: dilation=\(2, 2\) is not supported"),
    (nn.MaxPool2d(2, dilation=2, return_indices=True),
     r"MaxPool2d at body.0: dilation=\(2, 2\), return_indices=True are not supported"),
])
def test_unsupported_options(mod, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(Seq(mod), [torch.randn(2, 2, 4, 4)])


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2), nn.MaxPool2d(3, 1, 1),
                                  nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)])
def test_window_rows_over_the_accumulator_are_split(pool):
    """A row of windows wider than tiny's 128 accumulator rows (3 input rows x 61 pixels)
    runs in spans of output columns that fit; bit-exact."""
    from .common import TINY
    bit_exact_on_func(lambda: Seq(nn.Conv2d(3, 4, 1), pool), (3, 7, 60), configs=[TINY])


def test_window_over_the_accumulator_is_named():
    """One window over tiny's 128 accumulator rows: a CompileError naming the layer with
    its module path, the sizes and the limit."""
    from .common import TINY
    qmodel = sw.quantize(Seq(nn.Conv2d(3, 4, 1), nn.MaxPool2d(12)), [torch.randn(2, 3, 12, 30)])
    with pytest.raises(sw.CompileError, match=r"at body.1\): kernel \(12, 12\): a window needs "
                                              r"145 accumulator rows, the NPU has 128"):
        sw.compile(qmodel, TINY)
