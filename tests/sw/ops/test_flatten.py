"""sw/ops/flatten.py: every spelling of a flatten, exact against the float reference and
free on the NPU (no layer of its own)."""
import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig

from .common import Seq, bit_exact_on_func, golden_vs_float


class Spelled(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(12, 2)
        self.how = how

    def forward(self, x):
        y = self.conv(x)
        if self.how == "torch.flatten":
            y = torch.flatten(y, 1)
        elif self.how == "method":
            y = y.flatten(1)
        elif self.how == "view":
            y = y.view(2, -1)
        else:
            y = y.reshape((2, -1))
        return self.fc(y)


@pytest.mark.parametrize("how", ["torch.flatten", "method", "view", "reshape"])
def test_spellings_are_exact_and_free(how):
    golden_vs_float(lambda: Spelled(how), (2, 4, 4), "flatten", lambda q, fargs, node, qins: 0.0)
    torch.manual_seed(0)
    qmodel = sw.quantize(Spelled(how), [torch.randn(2, 2, 4, 4)])
    program = sw.compile(qmodel, NPUConfig.preset("tiny"))
    assert [layer["op"] for layer in program.layers] == ["conv", "linear"]


def test_lowering_bit_exact():
    bit_exact_on_func(lambda: Seq(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4)),
                      (2, 5, 5))


@pytest.mark.parametrize("model, message", [
    (Seq(nn.Flatten(0)), "Flatten at body.0: only start_dim=1, end_dim=-1"),
    (Spelled("bad"), None),
])
def test_unsupported_flattens(model, message):
    if message is None:
        class View3(nn.Module):
            def forward(self, x):
                return x.view(2, 3, -1)
        model, message = View3(), r"view at view \(in the model's forward\): only x.view\(batch, -1\)"
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(model, [torch.randn(2, 2, 4, 4)])
