"""sw/ops/softmax.py: integer-only softmax over token features (I-BERT exp, Newton
reciprocal): the golden within 1 output step (1/256) of the float softmax of its int8
input, the functional model and the RTL bit-exact against the golden for features below,
at and above the array's columns, not a multiple of them, one token, and a causal mask;
the front-end forms, and clear errors for the dimensions it does not take."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw import ops
from sw.ops.softmax import SOFTMAX_OUT, causal_softmax

from .common import CONFIGS, TINY, bit_exact_on_func, golden_vs_float


class Scores(nn.Module):
    """A Linear (the scores) and a softmax of one of its forms."""

    def __init__(self, f, form="module"):
        super().__init__()
        self.lin = nn.Linear(f, f)
        self.sm = nn.Softmax(dim=-1)
        self.form = form

    def forward(self, x):
        y = self.lin(x)
        if self.form == "module":
            return self.sm(y)
        if self.form == "F":
            return F.softmax(y, dim=-1)
        if self.form == "torch":
            return torch.softmax(y, -1)
        if self.form == "method":
            return y.softmax(dim=2)
        return causal_softmax(y)


#: (tokens, features): features under, at and over tiny's 4 columns, not a multiple of
#: them, one token, and 8 x 24 (the bench's shape).
SHAPES = [(3, 3), (5, 4), (4, 10), (1, 7), (2, 16), (8, 24)]


def _golden_tolerance(q, fargs, node, qins):
    return SOFTMAX_OUT.scale * (1 + 1e-6)


@pytest.mark.parametrize("t, f", SHAPES)
def test_golden_tracks_float(t, f):
    golden_vs_float(lambda: Scores(f), (t, f), "softmax", _golden_tolerance)


@pytest.mark.parametrize("scale", [0.002, 0.05, 0.5, 5.0])
def test_golden_on_every_input_scale(scale):
    """Softmax of int8 rows straight from the golden, input scales from tiny (a flat
    distribution) to large (one-hot): within one output step of the float softmax."""
    torch.manual_seed(int(scale * 1000))
    x = torch.randint(-128, 128, (64, 12), dtype=torch.int64)
    x[0] = 127                                       # a flat row
    x[1] = -128
    qnode = ops.get("softmax").quantize(
        sw.ir.Node("s", "softmax", ["x"]),
        ops.QuantContext({}, {"x": sw.ir.QParams(scale, 0)}, {"s": (64, 12)}))
    got = SOFTMAX_OUT.dequantize(ops.get("softmax").golden(qnode, [x.to(torch.int8)]))
    want = torch.softmax(x.double() * scale, -1)
    err = (got - want).abs().max().item()
    assert err <= SOFTMAX_OUT.scale, err * 256


@pytest.mark.parametrize("t, f", SHAPES)
def test_bit_exact_on_func(t, f):
    bit_exact_on_func(lambda: Scores(f), (t, f))


@pytest.mark.parametrize("t", [1, 5, 6])
def test_causal_bit_exact_and_masked(t):
    bit_exact_on_func(lambda: Scores(t, "causal"), (t, t))
    golden_vs_float(lambda: Scores(t, "causal"), (t, t), "softmax", _golden_tolerance)
    torch.manual_seed(0)
    model = Scores(t, "causal").eval()
    x = torch.randn(2, t, t)
    y = sw.quantize(model, [x])(x)
    above = torch.ones(t, t).triu(1).bool()
    assert (y[:, above] == 0).all()                 # masked features get probability 0


@pytest.mark.parametrize("form", ["module", "F", "torch", "method"])
def test_every_form_traces_to_softmax(form):
    graph = sw.frontend.trace(Scores(6, form))
    assert [n.op for n in graph.nodes if n.op == "softmax"] == ["softmax"]
    bit_exact_on_func(lambda: Scores(6, form), (3, 6), configs=[TINY])


def test_batch_of_vectors():
    """[batch, features] (one token a sample)."""
    bit_exact_on_func(lambda: nn.Sequential(nn.Linear(9, 9), nn.Softmax(dim=1)), (9,))


@pytest.mark.parametrize("dim", [0, 1, -2])
def test_other_dims_are_refused_by_name(dim):
    model = nn.Sequential(nn.Linear(6, 6), nn.Softmax(dim=dim)).eval()
    with pytest.raises(sw.UnsupportedOpError, match=rf"softmax at 1: dim={dim} of a 3-D tensor"):
        sw.quantize(model, [torch.randn(2, 4, 6)])


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
def test_implicit_dim_is_refused():
    model = nn.Sequential(nn.Linear(6, 6), nn.Softmax()).eval()
    with pytest.raises(sw.UnsupportedOpError, match=r"Softmax at 1: dim=None"):
        sw.quantize(model, [torch.randn(2, 4, 6)])


def test_causal_needs_a_square_block():
    with pytest.raises(sw.UnsupportedOpError, match=r"causal mask needs a square \[T, T\] block"):
        sw.quantize(Scores(6, "causal").eval(), [torch.randn(2, 4, 6)])


def test_too_many_features_for_the_accumulator_is_a_clear_error():
    torch.manual_seed(0)
    q = sw.quantize(Scores(40).eval(), [torch.randn(2, 2, 40)])
    with pytest.raises(sw.compiler.CompileError, match=r"layer sm \(softmax at sm\): 40 features "
                                                       r"need 36 accumulator rows a token"):
        sw.compile(q, NPUConfig.preset("tiny", acc_depth=32))


def test_exp_multiplier_is_capped():
    """A huge input scale keeps the exponent in int32 (and the softmax one-hot)."""
    qnode = ops.get("softmax").quantize(
        sw.ir.Node("s", "softmax", ["x"]),
        ops.QuantContext({}, {"x": sw.ir.QParams(1e4, 0)}, {"s": (1, 3)}))
    y = ops.get("softmax").golden(qnode, [torch.tensor([[5, 4, -128]], dtype=torch.int8)])
    assert y.tolist() == [[127, -128, -128]]
    assert qnode.attrs.a * 511 < 2**31 and qnode.attrs.a < round(1e4 * 2**15 / math.log(2))


@pytest.mark.parametrize("t, f, causal", [(3, 10, False), (4, 4, True)])
def test_bit_exact_on_rtl(t, f, causal):
    torch.manual_seed(5)
    model = Scores(f, "causal" if causal else "module").eval()
    qmodel = sw.quantize(model, [torch.randn(4, t, f)])
    program = sw.compile(qmodel, TINY)
    x = torch.randn(t, f)
    y = sw.Device(TINY, backend="rtl").run(program, x)
    assert torch.equal(y, qmodel(x))



def test_per_head_scores_are_rows_and_an_image_is_refused():
    """Per-head scores [batch, heads, T, T] made by a matmul are rows of the last
    dimension (bit-exact, causal too); a 4-D model input is a channel-last image, whose
    bytes are not rows of its last dimension: refused by name, never a wrong answer."""
    class Scores(nn.Module):
        def __init__(self, causal):
            super().__init__()
            self.causal = causal

        def forward(self, x):
            q = x.unflatten(-1, (2, -1)).transpose(1, 2)             # [B, 2, T, D]
            s = q @ q.transpose(-2, -1)
            return causal_softmax(s) if self.causal else torch.softmax(s, dim=-1)

    for causal in (False, True):
        bit_exact_on_func(lambda: Scores(causal), (5, 8))

    class Heads(nn.Module):
        def forward(self, x):
            return torch.softmax(x, dim=-1)

    qmodel = sw.quantize(Heads().eval(), [torch.randn(2, 2, 3, 3)])
    with pytest.raises(sw.CompileError, match=r"softmax.*channel-last image"):
        sw.compile(qmodel, CONFIGS[0])
