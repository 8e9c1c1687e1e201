"""Max and average pooling (kernel, stride, padding), on the ALU over accumulator rows.

Both keep their input's quantization. Max pooling pads with -128; average pooling
pads with the input zero point and divides each window's sum by PyTorch's divisor of
that window through the requantizer: the window's size, clipped at the padded input's
end (``ceil_mode``) or at the input itself (``count_include_pad=False``), or
``divisor_override``. Each distinct divisor ``d`` is one parameter group (bias
``(d - kh * kw) * zp``, the ``1 / d`` multiplier), each output pixel is stored with the
group of its window (as adaptive pooling, :mod:`sw.ops.adaptive`). The lowering loads
the input rows of a block of output rows into the accumulator, applies one ALU
instruction per output row and kernel tap, and stores through the store path.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw import isa

from .. import golden
from ..frontend import fx
from ..ir import Node, QNode
from .adaptive import runs
from .base import Op, QuantContext, refuse_options, register

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
    count_include_pad: bool = True        #: average pooling: padding counts in the divisor
    divisor_override: int | None = None   #: average pooling: one divisor for every window


@dataclass(frozen=True, kw_only=True)
class QAvgPool(Pool):
    """Integer attributes of average pooling: the input zero point (the padding value),
    the distinct window divisors ``counts`` (parameter group ``g`` is ``counts[g]``) with
    their ``1 / count`` multipliers, shifts and biases, and the group of each output pixel
    (``groups[oh][ow]``)."""
    zp_in: int
    counts: tuple[int, ...]
    mults: tuple[int, ...]
    shifts: tuple[int, ...]
    biases: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]


def divisors(size: int, kernel: int, stride: int, pad: int, out: int,
             count_include_pad: bool) -> list[int]:
    """PyTorch's ``avg_pool2d`` divisor factors along one dimension, per output index:
    the window clipped at the padded input's end, and with ``count_include_pad=False``
    at the input itself."""
    factors = []
    for i in range(out):
        start = i * stride - pad
        end = min(start + kernel, size + pad)
        factors.append(end - start if count_include_pad else min(end, size) - max(start, 0))
    return factors


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
        if is_max:
            params = [c.identity_params(0)]
            groups = [[0] * ow_n for _ in range(oh_n)]
        else:
            c.check(len(a.counts) <= c.cfg.param_groups, node,
                    f"{len(a.counts)} window divisors need as many parameter groups; the NPU "
                    f"has {c.cfg.param_groups}")
            params = [c.param_load(g, b, m, s)
                      for g, (b, m, s) in enumerate(zip(a.biases, a.mults, a.shifts))]
            groups = a.groups
        c.check(ch <= c.MAX_X_STRIDE and w * ch <= c.MAX_Y_STRIDE, node,
                f"input pixels {ch} channels apart (rows {w * ch} bytes) are over the "
                f"{c.MAX_X_STRIDE} ({c.MAX_Y_STRIDE}) bytes a LOAD can stride")
        acc = c.cfg.acc_depth
        # Output rows per block so that the input rows and the outputs fit the accumulator;
        # where one row of windows does not, spans of output columns that do.
        per = 1
        while per < oh_n and (per * sh + k_h) * wp + (per + 1) * ow_n <= acc:
            per += 1
        if k_h * wp + ow_n <= acc:
            spans = [(0, ow_n)]
        else:
            c.check(k_h * k_w + 1 <= acc, node,
                    f"kernel {a.kernel}: a window needs {k_h * k_w + 1} accumulator rows, the "
                    f"NPU has {acc}")
            spans, j0 = [], 0
            while j0 < ow_n:
                j1 = j0 + 1
                while j1 < ow_n and k_h * (j1 * sw + k_w - j0 * sw) + j1 + 1 - j0 <= acc:
                    j1 += 1
                spans.append((j0, j1))
                j0 = j1
        for first, c0, length, oh0, nout in c.blocks(ch, oh_n, per if len(spans) == 1 else 1):
            ny = (nout - 1) * sh + k_h
            ih0 = oh0 * sh - ph
            top = max(0, -ih0)
            first_ih = max(0, ih0)
            last_ih = min(h - 1, ih0 + ny - 1)
            vy = last_ih - first_ih + 1
            bottom = ny - top - vy
            for j0, j1 in spans:
                n = j1 - j0
                iw0, iw1 = j0 * sw - pw, (j1 - 1) * sw + k_w - pw   # input columns, padded
                left, right = max(0, -iw0), max(0, iw1 - w)
                vx = min(iw1, w) - max(iw0, 0)
                span_w = iw1 - iw0
                c.check(max(top, bottom, left, right) <= c.MAX_PAD and vy > 0 and vx > 0, node,
                        f"pooling padding over {c.MAX_PAD} is not supported")
                out_base = ny * span_w
                load = c.acc_load(0, src.addr + (first_ih * w + max(iw0, 0)) * ch + c0, vy,
                                  w * ch, vx, ch, length, pad_top=top, pad_bottom=bottom,
                                  pad_left=left, pad_right=right, pad_value=pad_value)
                alus = []
                for r in range(nout):
                    for dy in range(k_h):
                        for dx in range(k_w):
                            first_tap = dy == 0 and dx == 0
                            alus.append(isa.alu(op=isa.AluOp.MOV if first_tap else op,
                                                dst=out_base + r * n,
                                                src=(r * sh + dy) * span_w + dx, count=n,
                                                dst_stride=1, src_stride=sw))
                # Runs of output pixels with the same parameter group, one store each (the
                # whole block in one when its rows are whole and of a single group).
                block = [g for r in range(nout) for g in groups[oh0 + r][j0:j1]]
                pieces = [(0, len(block))] if len(set(block)) == 1 and n == ow_n else [
                    (r * n + q0, r * n + q1) for r in range(nout)
                    for q0, q1 in runs(groups[oh0 + r][j0:j1])]
                stores = [isa.store(acc=out_base + p0,
                                    dram=out.addr + (oh0 * ow_n + (p0 // n) * ow_n + j0 + p0 % n)
                                    * out.pixel_stride + c0,
                                    rows=p1 - p0, stride=out.pixel_stride, length=length,
                                    param=block[p0], out_zp=0, clamp_lo=-128, clamp_hi=127)
                          for p0, p1 in pieces]
                c.chunk(layer_id, first and j0 == 0, [load], params, alus, stores)
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
        xp = _padded(args[0], node.shape, a, -128.0)
        return F.max_pool2d(xp, a.kernel, a.stride).to(torch.int8)


@register
class AvgPool(_Pool):
    name = "avgpool"
    is_max = False

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        return F.avg_pool2d(args[0], a.kernel, a.stride, a.padding, ceil_mode=a.ceil_mode,
                            count_include_pad=a.count_include_pad,
                            divisor_override=a.divisor_override)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        a = node.attrs
        _, h, w = ctx.shape(node.inputs[0])
        _, oh_n, ow_n = ctx.shape(node.name)
        if a.divisor_override is not None:
            div = [[a.divisor_override] * ow_n for _ in range(oh_n)]
        else:
            dh = divisors(h, a.kernel[0], a.stride[0], a.padding[0], oh_n, a.count_include_pad)
            dw = divisors(w, a.kernel[1], a.stride[1], a.padding[1], ow_n, a.count_include_pad)
            div = [[y * x for x in dw] for y in dh]
        counts = tuple(sorted({d for row in div for d in row}))
        mults, shifts = zip(*(golden.quantize_multiplier(1.0 / d) for d in counts))
        # The ALU sums all kh * kw cells of a window, the padding as zp each; the bias
        # takes their zero points off and puts the output's (the same) back:
        # MBQM(sum + (d - kk) zp, 1 / d) = zp + sum(x - zp) / d.
        kk = a.kernel[0] * a.kernel[1]
        biases = tuple((d - kk) * q_in.zero_point for d in counts)
        groups = tuple(tuple(counts.index(d) for d in row) for row in div)
        attrs = QAvgPool(a.kernel, a.stride, a.padding, a.ceil_mode, a.count_include_pad,
                         a.divisor_override, zp_in=q_in.zero_point, counts=counts,
                         mults=mults, shifts=shifts, biases=biases, groups=groups)
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name), attrs, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        xp = _padded(args[0], node.shape, a, float(a.zp_in))
        s = F.avg_pool2d(xp, a.kernel, a.stride, divisor_override=1).to(torch.int64)
        g = torch.tensor(a.groups)
        pick = [torch.tensor(v, dtype=torch.int64)[g] for v in (a.biases, a.mults, a.shifts)]
        y = golden.multiply_by_quantized_multiplier(s + pick[0], pick[1], pick[2])
        return torch.clamp(y, lo, hi).to(torch.int8)


def _padded(x: torch.Tensor, shape, a: Pool, pad: float) -> torch.Tensor:
    """``x`` (float64) padded with ``pad`` as far as the windows of output ``shape`` reach:
    the padding, and with ``ceil_mode`` the cells past it that the last windows cover."""
    ph, pw = a.padding
    (k_h, k_w), (sh, sw) = a.kernel, a.stride
    h, w = x.shape[2:]
    _, oh, ow = shape
    extra_h = max(0, (oh - 1) * sh + k_h - (h + 2 * ph))
    extra_w = max(0, (ow - 1) * sw + k_w - (w + 2 * pw))
    xp = F.pad(x.to(torch.float64), (pw, pw + extra_w, ph, ph + extra_h), value=pad)
    return xp[:, :, :(oh - 1) * sh + k_h, :(ow - 1) * sw + k_w]


@fx.module(nn.MaxPool2d)
def _from_maxpool2d(t: fx.Tracer, fx_node, mod: nn.MaxPool2d, inp: str, where: str) -> None:
    refuse_options(where, "MaxPool2d", dilation=(fx.pair(mod.dilation), (1, 1)),
            return_indices=(mod.return_indices, False))
    t.add(Node(fx_node.name, "maxpool", [inp], Pool(
        fx.pair(mod.kernel_size), fx.pair(mod.stride or mod.kernel_size), fx.pair(mod.padding),
        bool(mod.ceil_mode)), where=where))


@fx.module(nn.AvgPool2d)
def _from_avgpool2d(t: fx.Tracer, fx_node, mod: nn.AvgPool2d, inp: str, where: str) -> None:
    t.add(Node(fx_node.name, "avgpool", [inp], Pool(
        fx.pair(mod.kernel_size), fx.pair(mod.stride or mod.kernel_size), fx.pair(mod.padding),
        bool(mod.ceil_mode), bool(mod.count_include_pad), mod.divisor_override), where=where))


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
        refuse_options(where, target.__name__, dilation=(fx.pair(kw.get("dilation", 1)), (1, 1)),
                return_indices=(bool(kw.get("return_indices", False)), False))
    ceil_mode = bool(kw.get("ceil_mode", False))
    attrs = (Pool(kernel, stride, padding, ceil_mode) if is_max else
             Pool(kernel, stride, padding, ceil_mode, bool(kw.get("count_include_pad", True)),
                  kw.get("divisor_override")))
    t.add(Node(name, "maxpool" if is_max else "avgpool", [t.src(fx_node.args[0])], attrs,
               where=t.where(fx_node)))
