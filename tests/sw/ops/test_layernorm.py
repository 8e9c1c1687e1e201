"""sw/ops/layernorm.py: integer-only LayerNorm over token features (exact centring, a
per-row shift, Newton rsqrt, gamma and beta in the store path): the golden within 0.6
output steps of the float LayerNorm of its int8 input up to 64 features and 0.75 up to
3,072, whatever the rows' spread; the functional model and the RTL bit-exact against the
golden for features below, at and above the array's columns, not a multiple of them, one
token; with and without gamma and beta, from the module and the function; clear errors
for what it does not take."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw import ops
from sw.ir import Node, QParams
from sw.ops.layernorm import LayerNormAttrs

from .common import TINY, bit_exact_on_func, golden_vs_float


class Norm(nn.Module):
    """A Linear, then LayerNorm (random gamma of both signs and beta), as a module or the
    function."""

    def __init__(self, f, affine=True, bias=True, function=False):
        super().__init__()
        self.lin = nn.Linear(f, f)
        self.ln = nn.LayerNorm(f, elementwise_affine=affine, bias=bias)
        self.function = function
        if affine:
            with torch.no_grad():
                self.ln.weight.uniform_(-2, 2)
                if bias:
                    self.ln.bias.uniform_(-1, 1)

    def forward(self, x):
        y = self.lin(x)
        if self.function:
            return F.layer_norm(y, (y.shape[-1],), self.ln.weight, self.ln.bias, 1e-5)
        return self.ln(y)


SHAPES = [(3, 3), (5, 4), (4, 10), (1, 7), (2, 16), (8, 24)]


def _tolerance(q, fargs, node, qins):
    # The output's rounding (half a step) and TFLite's double rounding, plus what the
    # fixed-point rsqrt and the input's rounding of the mean leave: under 0.1 step.
    return 1.1 * q.out.scale


@pytest.mark.parametrize("t, f", SHAPES)
def test_golden_tracks_float(t, f):
    golden_vs_float(lambda: Norm(f), (t, f), "layernorm", _tolerance)


@pytest.mark.parametrize("f", [4, 7, 24, 64, 768, 3072])
@pytest.mark.parametrize("spread", [255, 20, 3])
def test_golden_on_int8_rows(f, spread):
    """Straight from the golden: random int8 rows spanning ``spread`` steps (one constant,
    one gamma 0), error in output steps, max 0.6 up to 64 features and 0.75 beyond (the
    sum of squares keeps fewer bits), mean 0.35 (the rounding alone gives 0.5 and 0.25)."""
    torch.manual_seed(f + spread)
    x = torch.randint(-128, -128 + spread, (64, f))
    x[0] = 5
    w = torch.empty(f).uniform_(-2, 2)
    b = torch.empty(f).uniform_(-1, 1)
    w[0] = 0.0
    node = Node("ln", "layernorm", ["x"],
                attrs=LayerNormAttrs(f, 1e-5, tuple(w.tolist()), tuple(b.tolist())))
    want = F.layer_norm(x.double() * 0.05, (f,), w.double(), b.double(), 1e-5)
    ctx = ops.QuantContext({"ln": (want.min().item(), want.max().item())},
                           {"x": QParams(0.05, 3)}, {"ln": (64, f)})
    q = ops.get("layernorm").quantize(node, ctx)
    got = q.out.dequantize(ops.get("layernorm").golden(q, [x.to(torch.int8)]))
    err = (got - want).abs() / q.out.scale
    bound = 0.6 if f <= 64 else 0.75
    assert err.max() <= bound and err.mean() <= 0.35, (err.max().item(), err.mean().item())


@pytest.mark.parametrize("t, f", SHAPES)
def test_bit_exact_on_func(t, f):
    bit_exact_on_func(lambda: Norm(f), (t, f))


@pytest.mark.parametrize("affine, bias", [(False, False), (True, False)])
def test_without_gamma_or_beta(affine, bias):
    bit_exact_on_func(lambda: Norm(10, affine, bias), (3, 10))
    golden_vs_float(lambda: Norm(10, affine, bias), (3, 10), "layernorm", _tolerance)


def test_the_function_form():
    graph = sw.frontend.trace(Norm(6, function=True), example=torch.randn(2, 3, 6))
    assert [n.op for n in graph.nodes][-1] == "layernorm"
    bit_exact_on_func(lambda: Norm(6, function=True), (3, 6))
    golden_vs_float(lambda: Norm(6, function=True), (3, 6), "layernorm", _tolerance)


def test_batch_of_vectors():
    bit_exact_on_func(lambda: nn.Sequential(nn.Linear(9, 9), nn.LayerNorm(9)), (9,))


def test_a_constant_row_gives_beta():
    """Zero variance: eps keeps the rsqrt finite and the output is beta (within the step
    that rounding it in the bias and again in the store path may add)."""
    f = 6
    b = torch.linspace(-1, 1, f)
    node = Node("ln", "layernorm", ["x"], attrs=LayerNormAttrs(f, 1e-5, (1.0,) * f, tuple(b.tolist())))
    ctx = ops.QuantContext({"ln": (-1.0, 1.0)}, {"x": QParams(0.1, 0)}, {"ln": (2, f)})
    q = ops.get("layernorm").quantize(node, ctx)
    y = ops.get("layernorm").golden(q, [torch.full((2, f), 17, dtype=torch.int8)])
    want = torch.round(b / q.out.scale) + q.out.zero_point
    assert ((y - want).abs() <= 1).all() and (y[0] == y[1]).all()   # beta rounded twice


def test_two_dims_are_refused_by_name():
    model = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm([4, 6])).eval()
    with pytest.raises(sw.UnsupportedOpError, match=r"LayerNorm at 1: normalized_shape=\[4, 6\]"):
        sw.quantize(model, [torch.randn(2, 4, 6)])


def test_too_many_blocks_for_the_parameter_groups_is_a_clear_error():
    torch.manual_seed(0)
    q = sw.quantize(Norm(40).eval(), [torch.randn(2, 2, 40)])
    with pytest.raises(sw.compiler.CompileError, match=r"40 features take 10 parameter groups of "
                                                       r"4, the configuration has 8"):
        sw.compile(q, NPUConfig.preset("tiny", param_depth=24))


@pytest.mark.parametrize("t, f", [(3, 10), (2, 4)])
def test_bit_exact_on_rtl(t, f):
    torch.manual_seed(6)
    model = Norm(f).eval()
    qmodel = sw.quantize(model, [torch.randn(4, t, f)])
    assert any(m < 0 for m in qmodel.nodes[-1].attrs.mult)        # a negative gamma
    program = sw.compile(qmodel, TINY)
    x = torch.randn(t, f)
    y = sw.Device(TINY, backend="rtl").run(program, x)
    assert torch.equal(y, qmodel(x))


def test_a_parameter_read_by_another_operation_is_still_named():
    """F.layer_norm reads its weight and bias as constants; a parameter anywhere else is
    still an unsupported get_attr, named."""
    class AddParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.p = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return self.lin(x) + self.p

    with pytest.raises(sw.UnsupportedOpError, match=r"unsupported node get_attr p at p"):
        sw.quantize(AddParam().eval(), [torch.randn(2, 3, 4)])
