"""Element-wise multiply of two tensors: of one shape, or a feature map by a per-channel
vector (``[C, 1, 1]``: squeeze-and-excitation's ``scale * input``).

Integer form: ``acc = (x - zp_x) * (s - zp_s)`` (at most 255 x 255, no overflow), then the
store path's ``MBQM(acc, s_x * s_s / s_out) + zp_out`` and the clamp of a fused ReLU. The
lowering loads both operands into the accumulator, subtracts the zero points with
immediate ALU adds, multiplies row by row (the vector's row with source stride 0) and
stores through the requantizer.
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

__all__ = ["QMul", "Mul"]


@dataclass(frozen=True)
class QMul:
    """Integer attributes: the operands' zero points, the output multiplier and shift;
    ``broadcast``: the second operand is one vector per channel."""
    zp1: int
    zp2: int
    mult: int
    shift: int
    broadcast: bool


@register
class Mul(Op):
    name = "mul"
    op_class = "elementwise"
    fuses_activation = True

    def vector_ops(self, node, in_shapes):
        return math.prod(node.shape)                  # one multiply per output element

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a, b = args
        if a.dim() == 4 and a.shape[2:] == (1, 1):
            a, b = b, a                                # the vector second
        if a.shape != b.shape and not (a.dim() == 4 and b.shape == (a.shape[0], a.shape[1], 1, 1)):
            raise UnsupportedOpError(
                f"mul at {node.where}: operands {list(a.shape)} and {list(b.shape)}; supported: "
                f"one shape, or a [batch, C, H, W] map by a [batch, C, 1, 1] vector")
        return a * b

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        out = ctx.out(node)
        inputs = list(node.inputs)
        if ctx.shape(inputs[0]) != ctx.shape(node.name):
            inputs.reverse()                           # the per-channel vector second
        q1, q2 = ctx.q(inputs[0]), ctx.q(inputs[1])
        m, s = golden.quantize_multiplier(q1.scale * q2.scale / out.scale)
        broadcast = ctx.shape(inputs[0]) != ctx.shape(inputs[1])
        attrs = QMul(q1.zero_point, q2.zero_point, m, s, broadcast)
        return QNode(node.name, node.op, inputs, out, ctx.shape(node.name), attrs, node.act,
                     node.where, act_clamp(node.act, out))

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        acc = (args[0].to(torch.int64) - a.zp1) * (args[1].to(torch.int64) - a.zp2)
        y = golden.multiply_by_quantized_multiplier(acc, a.mult, a.shift) + node.out.zero_point
        return torch.clamp(y, lo, hi).to(torch.int8)

    def lower(self, c, node, layer_id, args, out):
        x1, x2 = args
        a = node.attrs
        ch, h, w = x1.geometry
        n_pix = h * w
        lo, hi = node.clamp
        banks = c.cfg.acc_banks
        if a.broadcast:
            c.check(x2.geometry == (ch, 1, 1), node, f"operand shapes {x1.shape} and {x2.shape}")
            per = min(c.cfg.acc_depth - banks - 1, c.MAX_VECTORS)
        else:
            c.check(x1.geometry == x2.geometry, node, f"operand shapes {x1.shape} and {x2.shape} differ")
            per = min((c.cfg.acc_depth - 1) // 2, c.MAX_VECTORS)
        params = [c.param_load(0, 0, a.mult, a.shift)]
        for first, c0, length, p0, n in c.blocks(ch, n_pix, per):
            # The second operand's rows start at a distance from the first's that is not a
            # multiple of the banks, so the multiply reads and writes different banks.
            row2 = n + (n % banks == 0)
            loads = [c.acc_load(0, x1.addr + p0 * ch + c0, n, ch, 1, 0, length)]
            if a.broadcast:
                loads.append(c.acc_load(row2, x2.addr + c0, 1, 0, 1, 0, length))
            else:
                loads.append(c.acc_load(row2, x2.addr + p0 * ch + c0, n, ch, 1, 0, length))
            n2 = 1 if a.broadcast else n
            alus = [
                isa.alu(op="add", use_imm=1, imm=-a.zp1, dst=0, count=n, dst_stride=1),
                isa.alu(op="add", use_imm=1, imm=-a.zp2, dst=row2, count=n2, dst_stride=1),
                isa.alu(op="mul", dst=0, src=row2, count=n, dst_stride=1,
                        src_stride=0 if a.broadcast else 1),
            ]
            store = isa.store(acc=0, dram=out.addr + p0 * out.pixel_stride + c0, rows=n,
                              stride=out.pixel_stride, length=length, param=0,
                              out_zp=out.q.zero_point, clamp_lo=lo, clamp_hi=hi)
            c.chunk(layer_id, first, loads, params, alus, [store])
        return 0


@fx.function(operator.mul, torch.mul, "mul")
def _from_mul(t: fx.Tracer, fx_node) -> None:
    a, b = fx_node.args[0], fx_node.args[1]
    from .matmul import scale_pattern
    if scale_pattern(t, fx_node):
        return                                         # attention's scaling of a matmul
    if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)):
        raise UnsupportedOpError(f"mul at {t.place(fx_node)}: multiplying by a constant is not "
                                 f"supported (except a matmul's scaling, folded into it)")
    # Which operand is a per-channel vector is known once shapes are (the quantizer puts
    # it second).
    t.add(Node(fx_node.name, "mul", [t.src(a), t.src(b)], where=t.where(fx_node)))
