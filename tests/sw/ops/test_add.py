"""sw/ops/add.py: the residual add within quantization error of the float sum, bit-exact
on the functional model, with and without a fused ReLU."""
import pytest
import torch
import torch.nn as nn

import sw
from sw.ops.add import ADD_SHIFT, QAdd

from .common import Residual, bit_exact_on_func, golden_vs_float, output_step


def add_tolerance(q, fargs, node, qins):
    """Output rounding and the rounding of the operands' integer multipliers."""
    return output_step(q) + (fargs[0].abs() + fargs[1].abs()) * 2.0 ** -(ADD_SHIFT - 1)


@pytest.mark.parametrize("relu", [False, True])
def test_golden_tracks_float(relu):
    golden_vs_float(lambda: Residual(4, relu), (4, 5, 5), "add", add_tolerance)


@pytest.mark.parametrize("relu", [False, True])
def test_lowering_bit_exact(relu):
    bit_exact_on_func(lambda: Residual(5, relu), (5, 4, 4))


def test_relu_fuses_and_attributes():
    model = Residual(3, True)
    graph = sw.frontend.trace(model)
    (add,) = [n for n in graph.nodes if n.op == "add"]
    assert add.act == "relu" and graph.output == add.name and add.where == "add+relu"
    q = sw.quantize(model, [torch.randn(2, 3, 4, 4)]).node(add.name)
    assert isinstance(q.attrs, QAdd) and q.clamp == (max(-128, q.out.zero_point), 127)


def test_adding_a_constant_is_unsupported():
    class AddC(nn.Module):
        def forward(self, x):
            return x + 1
    with pytest.raises(sw.UnsupportedOpError, match=r"add at add \(in the model's forward\): adding a constant"):
        sw.quantize(AddC(), [torch.randn(2, 4)])
