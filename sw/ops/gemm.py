"""What convolutions and linear layers share: GEMM quantization and its integer attributes.

Weights int8 per output channel, symmetric; bias int32 at ``s_in * s_w`` with the
input zero point folded in; a requantization multiplier and shift per channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hw.isa import PARAM_ELEM_BYTES, PARAM_GROUP_ROWS

from .. import golden
from ..ir import Node, QNode, QParams
from .base import Op, QuantContext, act_clamp

__all__ = ["QLinear", "GemmOp", "quantize_gemm"]


@dataclass(frozen=True)
class QLinear:
    """Integer attributes of a GEMM: int8 weights, folded int32 bias, per-channel
    multiplier and shift, and the input zero point."""
    w_q: torch.Tensor
    bias_q: torch.Tensor
    mult: torch.Tensor
    shift: torch.Tensor
    zp_in: int


def quantize_gemm(node: Node, ctx: QuantContext,
                  out: QParams | None = None) -> tuple[QNode, dict]:
    """The quantized node of a conv or linear ``node`` (attributes ``weight`` and ``bias``)
    and its :class:`QLinear` fields as a dict (the caller builds its own attribute class);
    ``out``: the output's quantization (default: from its calibrated range)."""
    a = node.attrs
    q_in = ctx.q(node.inputs[0])
    out = out or ctx.out(node)
    w = a.weight.to(torch.float64)
    w_flat = w.reshape(w.shape[0], -1)
    s_w = w_flat.abs().amax(dim=1) / 127.0
    s_w = torch.where(s_w > 0, s_w, torch.ones_like(s_w))
    w_q = torch.clamp(torch.round(w / s_w.reshape(-1, *[1] * (w.dim() - 1))), -127, 127).to(torch.int8)
    bias_q = torch.round(a.bias.to(torch.float64) / (q_in.scale * s_w)).to(torch.int64)
    # Fold the input zero point: sum_k (x - zx) w = sum_k x w - zx * sum_k w.
    folded = bias_q - q_in.zero_point * w_q.to(torch.int64).reshape(w.shape[0], -1).sum(dim=1)
    folded = torch.clamp(folded, golden.INT32_MIN, golden.INT32_MAX)
    qm = [golden.quantize_multiplier(float(q_in.scale * sw / out.scale)) for sw in s_w]
    fields = dict(w_q=w_q, bias_q=folded.to(torch.int32), mult=torch.tensor([m for m, _ in qm]),
                  shift=torch.tensor([s for _, s in qm]), zp_in=q_in.zero_point)
    qnode = QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), None, node.act,
                  node.where, act_clamp(node.act, out))
    return qnode, fields


class GemmOp(Op):
    """What convolution and linear operators share in the op table: MACs on the array,
    int8 weights and a parameter group (bias, multiplier, shift) per output channel."""
    op_class = "gemm"
    fuses_activation = True

    def macs(self, node: QNode) -> int:
        # Every output element reduces over one row of weights: Cin/groups * KH * KW, or In.
        return math.prod(node.shape) * node.attrs.w_q[0].numel()

    def param_bytes(self, node: QNode) -> int:
        a = node.attrs
        return a.w_q.numel() + a.bias_q.numel() * PARAM_GROUP_ROWS * PARAM_ELEM_BYTES
