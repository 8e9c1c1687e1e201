"""sw/ops/activation.py: ReLU exact and ReLU6 within half a step of the float reference,
standalone and fused; bit-exact on the functional model."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step


class PoolThen(nn.Module):
    """Activations after pooling: nothing to fuse into, so they stand alone."""

    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = act

    def forward(self, x):
        return self.act(F.max_pool2d(self.conv(x), 2))


@pytest.mark.parametrize("op, act, tol", [
    ("relu", torch.relu, lambda q, fargs, node, qins: 1e-6),
    ("relu6", F.relu6, lambda q, fargs, node, qins: output_step(q)),
])
def test_standalone_golden_tracks_float(op, act, tol):
    golden_vs_float(lambda: PoolThen(act), (3, 6, 6), op, tol)


@pytest.mark.parametrize("act", [torch.relu, F.relu6])
def test_standalone_lowering_bit_exact(act):
    bit_exact_on_func(lambda: PoolThen(act), (3, 6, 6))


def test_fused_into_the_producer():
    model = Seq(nn.Conv2d(2, 3, 1), nn.ReLU6(), nn.Linear(3, 3), nn.ReLU())
    graph = sw.frontend.trace(model)
    assert [(n.op, n.act) for n in graph.nodes] == [("input", None), ("conv", "relu6"),
                                                    ("linear", "relu")]
    assert graph.nodes[1].where == "body.0+body.1"
    qmodel = sw.quantize(model, [torch.randn(2, 2, 1, 3)])
    conv = qmodel.nodes[1]
    assert conv.clamp[0] == max(-128, conv.out.zero_point) and conv.clamp[1] < 127 or \
        conv.out.scale * (127 - conv.out.zero_point) <= 6.0 + conv.out.scale


def test_an_activation_read_twice_is_not_fused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) + y
    graph = sw.frontend.trace(Twice())
    assert [n.op for n in graph.nodes] == ["input", "conv", "relu", "add"]
    bit_exact_on_func(Twice, (2, 3, 3))
