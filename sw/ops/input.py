"""The model input: quantized on the host with the calibrated scale and zero point."""

from __future__ import annotations

import torch

from ..ir import Node, QNode
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
        return QNode(node.name, "input", [], ctx.out(node), ctx.shape(node.name), None, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        return node.out.quantize(args[0].to(torch.float32))
