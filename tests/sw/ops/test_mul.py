"""sw/ops/mul.py: element-wise multiply (one shape) and a feature map by a per-channel
vector (squeeze-and-excitation's ``scale * input``, either operand order): the golden
within a step of the float product, bit-exact on the functional model."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw

from .common import CONFIGS, bit_exact_on_func, golden_vs_float, output_step


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation's form (the scale's activation a ReLU6 here)."""

    def __init__(self, c=6, squeeze=3):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.scale_activation = nn.ReLU6()

    def forward(self, x):
        x = self.conv(x)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class Product(nn.Module):
    def __init__(self, relu=False):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 5, 1), nn.Conv2d(3, 5, 3, padding=1)
        self.relu = relu

    def forward(self, x):
        y = torch.mul(self.a(x), self.b(x))
        return F.relu(y) if self.relu else y


class VectorSecond(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 20, 1)                 # more channels than a tile

    def forward(self, x):
        y = self.conv(x)
        return y * F.adaptive_avg_pool2d(y, 1)


CASES = {
    "se": (SqueezeExcitation, (3, 5, 6)),
    "product": (Product, (3, 4, 4)),
    "product_relu": (lambda: Product(relu=True), (3, 4, 5)),
    "vector_second": (VectorSecond, (3, 3, 3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_float(case):
    factory, shape = CASES[case]
    # One step of rounding, one of the clamp at the calibrated range (the product of the
    # rounded operands can pass the float product's range).
    golden_vs_float(factory, shape, "mul", lambda q, fargs, node, qins: 2 * output_step(q))


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape, configs=CONFIGS)


def test_relu_fuses_into_the_multiply():
    graph = sw.frontend.trace(Product(relu=True))
    assert [n.op for n in graph.nodes][-1] == "mul" and graph.nodes[-1].act == "relu"


def test_constants_and_other_shapes_are_refused():
    class Const(nn.Module):
        def forward(self, x):
            return x * 2

    class Rows(nn.Module):
        def forward(self, x):
            return x * x.mean(1, keepdim=True)
    with pytest.raises(sw.UnsupportedOpError, match="multiplying by a constant"):
        sw.quantize(Const(), [torch.randn(2, 3, 4, 4)])
    with pytest.raises(sw.UnsupportedOpError, match="mean at"):
        sw.quantize(Rows(), [torch.randn(2, 3, 4, 4)])
