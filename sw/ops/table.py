"""Element-wise nonlinear activations as 256-entry tables: SiLU, Sigmoid, Hardswish,
Hardsigmoid, Tanh, GELU, LeakyReLU.

With int8 input and output, the function has 256 possible inputs, so the quantizer
computes its whole result once, from the float function, at the input's and the
output's quantization: ``table[q + 128] = clamp(round(f(s_in (q - zp_in)) / s_out) +
zp_out)``. The table is exact by construction (it is the float function rounded once,
with no polynomial or fixed-point approximation of its own) and costs one lookup per
element: the STORE's ``lut`` bit maps each requantized lane through it
(docs/isa.md). A standalone activation runs as a load and a store through the identity
requantizer with the table; its calibrated output range sets ``s_out``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode, QParams
from .activation import load_store
from .base import Op, QuantContext, register

__all__ = ["QTable", "TableActivation", "activation_table", "TABLE_OPS", "Elementwise"]


@dataclass(frozen=True)
class QTable:
    """Integer attributes: the table (256 int8 entries, input -128 first)."""
    table: tuple[int, ...]


def activation_table(fn, q_in: QParams, q_out: QParams) -> np.ndarray:
    """The int8 table of float function ``fn`` from quantization ``q_in`` to ``q_out``."""
    x = (torch.arange(-128, 128, dtype=torch.float64) - q_in.zero_point) * q_in.scale
    y = fn(x)
    q = torch.round(y / q_out.scale) + q_out.zero_point
    return torch.clamp(q, -128, 127).to(torch.int8).numpy()


class TableActivation(Op):
    """A nonlinear element-wise function; ``fn(x, node)`` is its float form."""
    op_class = "elementwise"
    tokens = True

    @staticmethod
    def fn(x: torch.Tensor, node: Node) -> torch.Tensor:
        raise NotImplementedError

    def vector_ops(self, node, in_shapes):
        return math.prod(node.shape)                  # one lookup per element

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return self.fn(args[0], node)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in, out = ctx.q(node.inputs[0]), ctx.out(node)
        table = activation_table(lambda x: self.fn(x, node), q_in, out)
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name),
                     QTable(tuple(int(v) for v in table)), None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        table = torch.tensor(node.attrs.table, dtype=torch.int8)
        return table[args[0].to(torch.int64) + 128]

    def lower(self, c, node, layer_id, args, out):
        params = c.param_load(0, 0, 1 << 30, 1, table=node.attrs.table)
        return load_store(c, layer_id, args[0], out, params, clamp_lo=-128, clamp_hi=127, lut=1)


class Elementwise(nn.Module):
    """A module that computes an element-wise function of its one input in several
    operations (Hugging Face's ``NewGELUActivation``: the tanh formula written out), as one
    table: the torch.export front end puts it in place of those operations."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


#: op name -> (float function of (x, node), modules, functions and methods)
TABLE_OPS = {
    "silu": (lambda x, node: F.silu(x), [nn.SiLU], [F.silu, "silu"]),
    "sigmoid": (lambda x, node: torch.sigmoid(x), [nn.Sigmoid],
                [torch.sigmoid, F.sigmoid, "sigmoid"]),
    "hardswish": (lambda x, node: F.hardswish(x), [nn.Hardswish], [F.hardswish]),
    "hardsigmoid": (lambda x, node: F.hardsigmoid(x), [nn.Hardsigmoid], [F.hardsigmoid]),
    "tanh": (lambda x, node: torch.tanh(x), [nn.Tanh], [torch.tanh, F.tanh, "tanh"]),
    "gelu": (lambda x, node: F.gelu(x, approximate=node.attrs or "none"), [nn.GELU], [F.gelu]),
    "leaky_relu": (lambda x, node: F.leaky_relu(x, node.attrs), [nn.LeakyReLU], [F.leaky_relu]),
    # any element-wise module (attrs: the module), tabulated by running it
    "elementwise": (lambda x, node: node.attrs(x), [Elementwise], []),
}


def _module_attr(name, mod):
    if name == "gelu":
        return mod.approximate
    if name == "leaky_relu":
        return float(mod.negative_slope)
    if name == "elementwise":
        return mod.fn
    return None


def _function_attr(t, name, fx_node):
    kw = dict(fx_node.kwargs)
    if name == "gelu":
        value = kw.get("approximate", "none")
        if value not in ("none", "tanh"):
            raise UnsupportedOpError(f"gelu at {t.place(fx_node)}: approximate={value!r}")
        return value
    if name == "leaky_relu":
        slope = fx_node.args[1] if len(fx_node.args) > 1 else kw.get("negative_slope", 0.01)
        return float(slope)
    return None


def _register_patterns(name, modules, functions):
    label = ", ".join(m.__name__ for m in modules)

    @fx.module(*modules, label=label)
    def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
        t.add(Node(fx_node.name, name, [inp], attrs=_module_attr(name, mod), where=where))

    @fx.function(*functions)
    def _from_function(t: fx.Tracer, fx_node) -> None:
        t.add(Node(fx_node.name, name, [t.src(fx_node.args[0])],
                   attrs=_function_attr(t, name, fx_node), where=t.where(fx_node)))


for _name, (_fn, _modules, _functions) in TABLE_OPS.items():
    register(type(f"Table_{_name}", (TableActivation,), {"name": _name, "fn": staticmethod(_fn)}))
    _register_patterns(_name, _modules, _functions)
