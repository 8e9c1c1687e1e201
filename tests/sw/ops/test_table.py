"""sw/ops/table.py: SiLU, Sigmoid, Hardswish, Hardsigmoid, Tanh, GELU and LeakyReLU as
256-entry tables: the golden within a rounding step of the float function, bit-exact on
the functional model, from modules, functions and methods."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw.compiler import CompileError

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step

MODULES = {
    "silu": nn.SiLU(),
    "sigmoid": nn.Sigmoid(),
    "hardswish": nn.Hardswish(),
    "hardsigmoid": nn.Hardsigmoid(),
    "tanh": nn.Tanh(),
    "gelu": nn.GELU(),
    "leaky_relu": nn.LeakyReLU(0.2),
}


class Functional(nn.Module):
    """Each function form after a convolution (the method forms too)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        a = F.silu(y) + torch.sigmoid(y)
        b = y.tanh() + F.hardswish(y)
        c = F.gelu(y, approximate="tanh") + F.leaky_relu(y, 0.1)
        return F.hardsigmoid(a) + b.sigmoid() + c


@pytest.mark.parametrize("op", list(MODULES))
def test_golden_tracks_float(op):
    factory = lambda: Seq(nn.Conv2d(3, 5, 3, padding=1), MODULES[op])  # noqa: E731
    golden_vs_float(factory, (3, 5, 4), op, lambda q, fargs, node, qins: output_step(q))


@pytest.mark.parametrize("op", list(MODULES))
def test_lowering_bit_exact(op):
    bit_exact_on_func(lambda: Seq(nn.Conv2d(3, 5, 3, padding=1), MODULES[op]), (3, 5, 4))


def test_every_function_form_bit_exact():
    graph = sw.frontend.trace(Functional())
    ops = {n.op for n in graph.nodes}
    assert set(MODULES) <= ops, set(MODULES) - ops
    bit_exact_on_func(Functional, (3, 4, 4))


def test_the_table_follows_the_module_options():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    tables = []
    for mod in (nn.LeakyReLU(0.01), nn.LeakyReLU(0.5), nn.GELU(), nn.GELU(approximate="tanh")):
        torch.manual_seed(1)
        q = sw.quantize(Seq(nn.Conv2d(3, 4, 1), mod).eval(), [x])
        tables.append(q.nodes[-1].attrs.table)
    assert tables[0] != tables[1] and tables[2] != tables[3]


def test_too_few_parameter_rows_is_a_clear_error():
    torch.manual_seed(0)
    q = sw.quantize(Seq(nn.Conv2d(3, 4, 1), nn.SiLU()).eval(), [torch.randn(4, 3, 4, 4)])
    cfg = NPUConfig.preset("tiny", cols=2, param_depth=24)      # a table takes 32 rows
    with pytest.raises(CompileError, match="activation table needs 35 parameter rows"):
        sw.compile(q, cfg)


def test_an_unknown_gelu_approximation_is_refused():
    class Bad(nn.Module):
        def forward(self, x):
            return F.gelu(x, approximate="erf")
    with pytest.raises(sw.frontend.UnsupportedOpError, match="approximate='erf'"):
        sw.frontend.trace(Bad())


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_module_and_function_forms_agree_on_tokens(approximate):
    """nn.GELU() and F.gelu(x), nn.GELU(approximate="tanh") and F.gelu(x, approximate="tanh"),
    on token tensors: the same table as the module, and bit-exact on the functional model."""
    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            return F.gelu(y) if approximate == "none" else F.gelu(y, approximate="tanh")

    torch.manual_seed(0)
    fn = Fn().eval()
    mod = Seq(nn.Linear(8, 8), nn.GELU(approximate=approximate)).eval()
    mod.body[0].load_state_dict(fn.lin.state_dict())
    x = torch.randn(4, 3, 8)
    tables = [sw.quantize(m, [x]).nodes[-1].attrs.table for m in (fn, mod)]
    assert tables[0] == tables[1]
    bit_exact_on_func(Fn, (3, 8))
