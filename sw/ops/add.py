"""Residual add of two tensors of one shape.

Both operands are rescaled to ``2**ADD_SHIFT`` units of the larger input scale on the
ALU (integer multipliers ``a1``, ``a2``), summed, and requantized to the output's
calibrated quantization; a following ReLU fuses into the output clamp.
"""

from __future__ import annotations

import math

import operator
from dataclasses import dataclass

import torch

from hw import isa

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, act_clamp, register

__all__ = ["ADD_SHIFT", "QAdd", "Add"]

#: Residual add: both inputs are scaled to ``2**ADD_SHIFT`` units of the larger scale.
ADD_SHIFT = 14


@dataclass(frozen=True)
class QAdd:
    """Integer attributes: the operands' multipliers and zero points, the output
    multiplier and shift."""
    a1: int
    a2: int
    zp1: int
    zp2: int
    mult: int
    shift: int


@register
class Add(Op):
    name = "add"
    op_class = "elementwise"
    tokens = True

    def vector_ops(self, node, in_shapes):
        return math.prod(node.shape)                  # one add per output element
    fuses_activation = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0] + args[1]

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        out = ctx.out(node)
        q1, q2 = ctx.q(node.inputs[0]), ctx.q(node.inputs[1])
        base = max(q1.scale, q2.scale)
        a1 = int(round(q1.scale / base * (1 << ADD_SHIFT)))
        a2 = int(round(q2.scale / base * (1 << ADD_SHIFT)))
        m, s = golden.quantize_multiplier(base / (1 << ADD_SHIFT) / out.scale)
        attrs = QAdd(a1=a1, a2=a2, zp1=q1.zero_point, zp2=q2.zero_point, mult=m, shift=s)
        return QNode(node.name, "add", node.inputs, out, ctx.shape(node.name), attrs, node.act,
                     node.where, act_clamp(node.act, out))

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        acc = golden.wrap_int32((args[0].to(torch.int64) - a.zp1) * a.a1
                                + (args[1].to(torch.int64) - a.zp2) * a.a2)
        y = golden.multiply_by_quantized_multiplier(acc, a.mult, a.shift) + node.out.zero_point
        return torch.clamp(y, lo, hi).to(torch.int8)

    def lower(self, c, node, layer_id, args, out):
        x1, x2 = args
        a = node.attrs
        ch, h, w = x1.geometry
        c.check(x1.geometry == x2.geometry, node, f"operand shapes {x1.shape} and {x2.shape} differ")
        n_pix = h * w
        # The second operand sits in the rows after the first, at a distance that is not a
        # multiple of acc_banks, so each row's two operands are in different banks and the
        # ALU adds a row per cycle (hw/sram.py interleaves rows over banks by low bits).
        per = min((c.cfg.acc_depth - 1) // 2, c.MAX_VECTORS)
        lo, hi = node.clamp
        # (x1 - z1) a1 + (x2 - z2) a2 = x1 a1 + x2 a2 - (z1 a1 + z2 a2): the constant goes
        # to the store path's bias, so the ALU makes three passes instead of five.
        bias = -(a.zp1 * a.a1 + a.zp2 * a.a2)
        params = [c.param_load(0, bias, a.mult, a.shift)]
        for first, c0, length, p0, n in c.blocks(ch, n_pix, per):
            x2_row = n + (n % c.cfg.acc_banks == 0)
            loads = [c.acc_load(0, x1.addr + p0 * ch + c0, n, ch, 1, 0, length),
                     c.acc_load(x2_row, x2.addr + p0 * ch + c0, n, ch, 1, 0, length)]
            alus = [
                isa.alu(op="mul", use_imm=1, imm=a.a1, dst=0, count=n, dst_stride=1),
                isa.alu(op="mul", use_imm=1, imm=a.a2, dst=x2_row, count=n, dst_stride=1),
                isa.alu(op="add", dst=0, src=x2_row, count=n, dst_stride=1, src_stride=1),
            ]
            store = isa.store(acc=0, dram=out.addr + p0 * out.pixel_stride + c0, rows=n,
                              stride=out.pixel_stride,
                              length=length, param=0, out_zp=out.q.zero_point, clamp_lo=lo,
                              clamp_hi=hi)
            c.chunk(layer_id, first, loads, params, alus, [store])
        return 0


@fx.function(operator.add, torch.add, "add", operator.iadd)
def _from_add(t: fx.Tracer, fx_node) -> None:
    a, b = fx_node.args[:2]
    from .embedding import add_constant      # position embeddings fold into the lookup
    if add_constant(t, fx_node, a, b) or add_constant(t, fx_node, b, a):
        return
    from .attention import causal_mask_add   # a causal mask added to attention scores
    if causal_mask_add(t, fx_node, a, b) or causal_mask_add(t, fx_node, b, a):
        return
    if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)) or \
            t.constant(a) is not None or t.constant(b) is not None:
        raise UnsupportedOpError(f"add at {t.place(fx_node)}: adding a constant is not supported")
    t.add(Node(fx_node.name, "add", [t.src(a), t.src(b)], where=t.where(fx_node)))
