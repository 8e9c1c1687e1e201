"""Max and average pooling (kernel, stride, padding), on the ALU over accumulator rows.

Both keep their input's quantization. Max pooling pads with -128; average pooling
pads with the input zero point (``count_include_pad``) and divides the window sum by
its size through the requantizer. The lowering loads the input rows of a block of
output rows into the accumulator, applies one ALU instruction per output row and
kernel tap, and stores through the store path.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw import isa

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["Pool", "QAvgPool", "MaxPool", "AvgPool"]


@dataclass(frozen=True)
class Pool:
    """Window geometry (also the integer attributes of max pooling). With ``ceil_mode`` the
    last window of a row or column may hang over the input's end (PyTorch's rule: it
    starts inside the input or its left padding); max pooling pads it with -128."""
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    ceil_mode: bool = False


@dataclass(frozen=True, kw_only=True)
class QAvgPool(Pool):
    """Integer attributes of average pooling: the ``1 / count`` multiplier and shift and
    the input zero point (the padding value)."""
    mult: int
    shift: int
    zp_in: int
    count: int


class _Pool(Op):
    is_max = True
    op_class = "pooling"

    def vector_ops(self, node, in_shapes):
        k_h, k_w = node.attrs.kernel
        return math.prod(node.shape) * k_h * k_w     # one max or add per window element

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        a = node.attrs
        ch, h, w = src.geometry
        _, oh_n, ow_n = out.geometry
        (k_h, k_w), (sh, sw), (ph, pw) = a.kernel, a.stride, a.padding
        is_max = self.is_max
        wp = (ow_n - 1) * sw + k_w
        pad_value = -128 if is_max else a.zp_in
        op = isa.AluOp.MAX if is_max else isa.AluOp.ADD
        params = [c.identity_params(0) if is_max else c.param_load(0, 0, a.mult, a.shift)]
        # Output rows per block so that the input rows and the outputs fit the accumulator.
        per = 1
        while per < oh_n and ((per) * sh + k_h) * wp + (per + 1) * ow_n <= c.cfg.acc_depth:
            per += 1
        c.check(((per - 1) * sh + k_h) * wp + per * ow_n <= c.cfg.acc_depth, node,
                "a pooling window row does not fit the accumulator")
        for first, c0, length, oh0, nout in c.blocks(ch, oh_n, per):
            ny = (nout - 1) * sh + k_h
            ih0 = oh0 * sh - ph
            top = max(0, -ih0)
            first_ih = max(0, ih0)
            last_ih = min(h - 1, ih0 + ny - 1)
            vy = last_ih - first_ih + 1
            bottom = ny - top - vy
            vx = min(w, wp - pw)
            right = wp - pw - vx
            c.check(max(top, bottom, pw, right) <= c.MAX_PAD and vy > 0, node,
                    f"pooling padding over {c.MAX_PAD} is not supported")
            out_base = ny * wp
            load = c.acc_load(0, src.addr + first_ih * w * ch + c0, vy, w * ch, vx, ch,
                              length, pad_top=top, pad_bottom=bottom, pad_left=pw,
                              pad_right=right, pad_value=pad_value)
            alus = []
            for r in range(nout):
                for dy in range(k_h):
                    for dx in range(k_w):
                        first_tap = dy == 0 and dx == 0
                        alus.append(isa.alu(op=isa.AluOp.MOV if first_tap else op,
                                            dst=out_base + r * ow_n,
                                            src=(r * sh + dy) * wp + dx, count=ow_n,
                                            dst_stride=1, src_stride=sw))
            store = isa.store(acc=out_base, dram=out.addr + oh0 * ow_n * out.pixel_stride + c0,
                              rows=nout * ow_n, stride=out.pixel_stride, length=length, param=0,
                              out_zp=0, clamp_lo=-128, clamp_hi=127)
            c.chunk(layer_id, first, [load], params, alus, [store])
        return 0


@register
class MaxPool(_Pool):
    name = "maxpool"
    is_max = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        return F.max_pool2d(args[0], a.kernel, a.stride, a.padding, ceil_mode=a.ceil_mode)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name), node.attrs,
                     None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        ph, pw = a.padding
        (k_h, k_w), (sh, sw) = a.kernel, a.stride
        _, h, w = args[0].shape[1:]
        _, oh, ow = node.shape
        # The padding the output size asks for: ceil_mode's last windows reach further.
        extra_h = max(0, (oh - 1) * sh + k_h - (h + 2 * ph))
        extra_w = max(0, (ow - 1) * sw + k_w - (w + 2 * pw))
        xp = F.pad(args[0].to(torch.float64), (pw, pw + extra_w, ph, ph + extra_h), value=-128.0)
        return F.max_pool2d(xp, a.kernel, a.stride).to(torch.int8)


@register
class AvgPool(_Pool):
    name = "avgpool"
    is_max = False

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        return F.avg_pool2d(args[0], a.kernel, a.stride, a.padding)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        a = node.attrs
        count = a.kernel[0] * a.kernel[1]
        m, s = golden.quantize_multiplier(1.0 / count)
        attrs = QAvgPool(a.kernel, a.stride, a.padding, mult=m, shift=s, zp_in=q_in.zero_point,
                         count=count)
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name), attrs, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        ph, pw = a.padding
        xp = F.pad(args[0].to(torch.float64), (pw, pw, ph, ph), value=float(a.zp_in))
        s = F.avg_pool2d(xp, a.kernel, a.stride, divisor_override=1).to(torch.int64)
        y = golden.multiply_by_quantized_multiplier(s, a.mult, a.shift)
        return torch.clamp(y, lo, hi).to(torch.int8)


@fx.module(nn.MaxPool2d)
def _from_maxpool2d(t: fx.Tracer, fx_node, mod: nn.MaxPool2d, inp: str, where: str) -> None:
    _refuse(where, "MaxPool2d", dilation=(fx.pair(mod.dilation), (1, 1)),
            return_indices=(mod.return_indices, False))
    t.add(Node(fx_node.name, "maxpool", [inp], Pool(
        fx.pair(mod.kernel_size), fx.pair(mod.stride or mod.kernel_size), fx.pair(mod.padding),
        bool(mod.ceil_mode)), where=where))


@fx.module(nn.AvgPool2d)
def _from_avgpool2d(t: fx.Tracer, fx_node, mod: nn.AvgPool2d, inp: str, where: str) -> None:
    _refuse(where, "AvgPool2d", ceil_mode=(mod.ceil_mode, False),
            count_include_pad=(mod.count_include_pad, True),
            divisor_override=(mod.divisor_override, None))
    t.add(Node(fx_node.name, "avgpool", [inp], Pool(
        fx.pair(mod.kernel_size), fx.pair(mod.stride or mod.kernel_size), fx.pair(mod.padding)),
        where=where))


def _refuse(where: str, name: str, **options) -> None:
    """UnsupportedOpError naming each option (``name=(value, supported)``) that is not at
    its supported value."""
    bad = [f"{k}={v!r}" for k, (v, ok) in options.items() if v != ok]
    if bad:
        raise UnsupportedOpError(f"{name} at {where}: {', '.join(bad)} "
                                 f"{'is' if len(bad) == 1 else 'are'} not supported")


@fx.function(F.max_pool2d, F.avg_pool2d)
def _from_function(t: fx.Tracer, fx_node) -> None:
    target, name, where = fx_node.target, fx_node.name, t.place(fx_node)
    is_max = target is F.max_pool2d
    order = (["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
             if is_max else
             ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
              "divisor_override"])
    kw = dict(zip(order, fx_node.args[1:]))
    kw.update(fx_node.kwargs)
    kernel = fx.pair(kw["kernel_size"])
    stride = fx.pair(kw.get("stride") or kernel)
    padding = fx.pair(kw.get("padding", 0))
    if is_max:
        _refuse(where, target.__name__, dilation=(fx.pair(kw.get("dilation", 1)), (1, 1)),
                return_indices=(bool(kw.get("return_indices", False)), False))
    else:
        _refuse(where, target.__name__, ceil_mode=(bool(kw.get("ceil_mode", False)), False),
                count_include_pad=(bool(kw.get("count_include_pad", True)), True),
                divisor_override=(kw.get("divisor_override"), None))
    t.add(Node(name, "maxpool" if is_max else "avgpool", [t.src(fx_node.args[0])],
               Pool(kernel, stride, padding, bool(kw.get("ceil_mode", False)) and is_max),
               where=t.where(fx_node)))
