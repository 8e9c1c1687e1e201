"""The model input: quantized on the host with the calibrated scale and zero point; or,
for a model whose input is int64 token ids (node attribute ``"int64"``, which the front
ends set from the example input), passed as it is to the operators that read ids
(:attr:`sw.ops.Op.ids`: the embedding)."""

from __future__ import annotations

import torch

from ..ir import Node, QNode, QParams
from .base import Op, QuantContext, register

__all__ = ["Input"]


@register
class Input(Op):
    """A graph input; ``forward`` and ``golden`` receive the float feed as their one operand."""
    name = "input"
    tokens = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0]

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        if node.attrs == "int64":
            return QNode(node.name, "input", [], QParams(1.0, 0), ctx.shape(node.name), "int64",
                         None, node.where)
        return QNode(node.name, "input", [], ctx.out(node), ctx.shape(node.name), None, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        if node.attrs == "int64":
            return args[0].to(torch.int64)
        return node.out.quantize(args[0].to(torch.float32))
