"""sw/ops/linear.py: the golden within quantization error of the float layer, the lowering
bit-exact on the functional model (also after a flatten of a 3-D tensor)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.gemm import QLinear
from sw.ops.linear import Linear

from .common import TINY, Seq, bit_exact_on_func, golden_vs_float, output_step


def linear_tolerance(q, fargs, node, qins):
    """Output rounding, bias rounding, and each weight's rounding times |x|."""
    w = node.attrs.weight
    s_w = w.abs().amax(1) / 127
    weights = F.linear(fargs[0].abs(), (s_w / 2)[:, None].expand_as(w))
    return output_step(q) + weights + 0.5 * qins[0].scale * s_w


CASES = {
    "odd": (lambda: Seq(nn.Linear(13, 7)), (13,)),
    "relu_stack": (lambda: Seq(nn.Linear(9, 11), nn.ReLU(), nn.Linear(11, 5, bias=False)), (9,)),
    "after_flatten": (lambda: Seq(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(27, 4)), (2, 5, 5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_float(case):
    factory, shape = CASES[case]
    golden_vs_float(factory, shape, "linear", linear_tolerance)


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape)


def test_typed_attributes():
    model = Seq(nn.Linear(4, 3, bias=False))
    (node,) = [n for n in sw.frontend.trace(model).nodes if n.op == "linear"]
    assert isinstance(node.attrs, Linear) and torch.equal(node.attrs.bias, torch.zeros(3))
    q = sw.quantize(model, [torch.randn(2, 4)]).node(node.name)
    assert isinstance(q.attrs, QLinear) and q.attrs.mult.shape == (3,)


@pytest.mark.parametrize("k", [4095, 4096, 9216])
def test_wide_linear_layers_compile(k):
    """LLM hidden sizes (4096) and AlexNet's 9216-input classifier: one pixel, so its LOAD
    needs no pixel stride whatever the width."""
    bit_exact_on_func(lambda: nn.Sequential(nn.Linear(k, 12), nn.ReLU(), nn.Linear(12, 5)), (k,),
                      configs=[TINY])
