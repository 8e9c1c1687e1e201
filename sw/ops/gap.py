"""Global average pooling (AdaptiveAvgPool2d(1), ``x.mean([2, 3])``): the sum over all
pixels, divided by their count through the requantizer; it keeps its input's
quantization. Its front-end patterns are those of adaptive pooling (:mod:`sw.ops.adaptive`)."""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hw import isa

from .. import golden
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["QGap", "GlobalAvgPool"]


@dataclass(frozen=True)
class QGap:
    """Integer attributes: the ``1 / count`` multiplier and shift, the input zero point."""
    mult: int
    shift: int
    zp_in: int
    count: int


@register
class GlobalAvgPool(Op):
    name = "gap"
    op_class = "pooling"

    def vector_ops(self, node, in_shapes):
        return math.prod(in_shapes[0])                # one add per input element

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return F.adaptive_avg_pool2d(args[0], 1)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        _, h, w = ctx.shape(node.inputs[0])
        count = h * w
        m, s = golden.quantize_multiplier(1.0 / count)
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name),
                     QGap(m, s, q_in.zero_point, count), None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        s = args[0].to(torch.int64).sum(dim=(2, 3), keepdim=True)
        y = golden.multiply_by_quantized_multiplier(s, a.mult, a.shift)
        return torch.clamp(y, lo, hi).to(torch.int8)

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        a = node.attrs
        ch, h, w = src.geometry
        n_pix = h * w
        per = min(c.cfg.acc_depth - 1, c.MAX_VECTORS)
        params = [c.param_load(0, 0, a.mult, a.shift)]
        for first, c0, length, p0, n in c.blocks(ch, n_pix, per):
            load = c.acc_load(1, src.addr + p0 * ch + c0, n, ch, 1, 0, length)
            alus = []
            if p0 == 0:
                alus.append(isa.alu(op="mov", dst=0, src=1, count=1))
                if n > 1:
                    alus.append(isa.alu(op="add", dst=0, src=2, count=n - 1, src_stride=1))
            else:
                alus.append(isa.alu(op="add", dst=0, src=1, count=n, src_stride=1))
            stores = []
            if p0 + n == n_pix:
                stores = [isa.store(acc=0, dram=out.addr + c0, rows=1, stride=0, length=length,
                                    param=0, out_zp=0, clamp_lo=-128, clamp_hi=127)]
            c.chunk(layer_id, first, [load], params, alus, stores)
        return 0
