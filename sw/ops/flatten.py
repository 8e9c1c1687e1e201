"""Flatten to [batch, features]: free on the NPU (a view of its operand's bytes; the
linear layer that reads it permutes its weights to the NHWC order in DRAM)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["Flatten"]


@register
class Flatten(Op):
    name = "flatten"
    view = True
    tokens = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.flatten(args[0], 1)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        return QNode(node.name, node.op, node.inputs, ctx.q(node.inputs[0]), ctx.shape(node.name),
                     None, None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        return torch.flatten(args[0], 1)

    def lower_view(self, c, node, args):
        src = args[0]
        chw = src.shape if len(src.shape) == 3 else src.chw
        return c.tensor(node, src.addr, chw)


@fx.module(nn.Flatten)
def _from_module(t: fx.Tracer, fx_node, mod: nn.Flatten, inp: str, where: str) -> None:
    if mod.start_dim != 1 or mod.end_dim != -1:
        raise UnsupportedOpError(f"Flatten at {where}: only start_dim=1, end_dim=-1")
    t.add(Node(fx_node.name, "flatten", [inp], where=where))


@fx.function(torch.flatten, "flatten")
def _from_flatten(t: fx.Tracer, fx_node) -> None:
    start = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("start_dim", 0)
    if start != 1:
        from .reshape import image_rows_pattern, is_flat, reshape_pattern
        if start == 2 and image_rows_pattern(t, fx_node):
            return                                   # an image's pixels as rows: a view
        if start % 8 not in (0, 1) and is_flat(t, fx_node.args[0]):
            reshape_pattern(t, fx_node, "shape")     # heads merged: [B, T, H, D] to [B, T, H*D]
            return
        raise UnsupportedOpError(f"flatten at {t.place(fx_node)}: only start_dim=1 is supported"
                                 f" (and start_dim=2 of an image)")
    t.add(Node(fx_node.name, "flatten", [t.src(fx_node.args[0])], where=t.where(fx_node)))


@fx.function("view", "reshape", torch.reshape)
def _from_view(t: fx.Tracer, fx_node) -> None:
    target, name = fx_node.target, fx_node.name
    shape = t.const(tuple(fx_node.args[1:]))
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    from .layout import view_pattern
    if view_pattern(t, fx_node, tuple(shape)):
        return
    if len(shape) != 2 or shape[1] != -1:
        from .reshape import image_rows_pattern, is_flat, reshape_pattern
        if is_flat(t, fx_node.args[0]):
            reshape_pattern(t, fx_node, "shape")     # heads of a token-shaped tensor
            return
        if image_rows_pattern(t, fx_node):
            return
        raise UnsupportedOpError(f"{target} at {t.place(fx_node)}: only x.{target}(batch, -1) (a flatten) is supported"
                             f" on images (and any view of a flat, token-shaped tensor)")
    t.add(Node(name, "flatten", [t.src(fx_node.args[0])], where=t.where(fx_node)))
