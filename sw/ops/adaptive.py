"""Adaptive average and max pooling to any output size (AdaptiveAvgPool2d(7) of VGG and
AlexNet, AdaptiveMaxPool2d), on the ALU over accumulator rows.

Output pixel ``(i, j)`` of an ``OH x OW`` output pools input rows
``floor(i * H / OH) .. ceil((i + 1) * H / OH) - 1`` and the columns likewise, as PyTorch
defines it; the windows may differ in size and overlap. Both keep their input's
quantization. Average pooling divides each window's sum by its own count through the
requantizer: one parameter group per distinct count, each output pixel stored with the
group of its window. ``AdaptiveAvgPool2d(1)`` stays the ``gap`` operator (one pass over
all pixels, any input size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw import isa

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["AdaptivePool", "QAdaptivePool", "AdaptiveAvgPool", "AdaptiveMaxPool", "windows", "runs"]


@dataclass(frozen=True)
class AdaptivePool:
    """The output size ``(OH, OW)``."""
    output_size: tuple[int, int]


@dataclass(frozen=True)
class QAdaptivePool(AdaptivePool):
    """Integer attributes of adaptive average pooling: ``counts`` are the distinct window
    sizes, ``mults`` and ``shifts`` their ``1 / count`` multipliers (group ``g`` of the
    layer's parameters is ``counts[g]``)."""
    counts: tuple[int, ...]
    mults: tuple[int, ...]
    shifts: tuple[int, ...]


def windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows of ``size`` inputs to ``out`` outputs: ``(start, stop)``."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def runs(values) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in ``values``: the output pixels one
    STORE writes with one parameter group (pooling with windows of several sizes)."""
    out, start = [], 0
    for j in range(1, len(values) + 1):
        if j == len(values) or values[j] != values[start]:
            out.append((start, j))
            start = j
    return out


def _per_window(x: torch.Tensor, size: tuple[int, int], fn) -> torch.Tensor:
    """``fn(window)`` (int8 ``[N, C]``) for each output pixel of the adaptive pooling of
    ``x`` (``[N, C, H, W]``) to ``size``."""
    oh_n, ow_n = size
    out = torch.empty(x.shape[0], x.shape[1], oh_n, ow_n, dtype=torch.int8)
    for i, (h0, h1) in enumerate(windows(x.shape[2], oh_n)):
        for j, (w0, w1) in enumerate(windows(x.shape[3], ow_n)):
            out[:, :, i, j] = fn(x[:, :, h0:h1, w0:w1])
    return out


def _output_size(v, where: str, name: str) -> tuple[int, int]:
    size = fx.pair(v)
    if any(s is None for s in size):
        raise UnsupportedOpError(f"{name} at {where}: output size None (keep the input size) "
                                 f"is not supported; give both sizes")
    return size


class _Adaptive(Op):
    is_max = True
    op_class = "pooling"

    def vector_ops(self, node, in_shapes):
        _, h, w = in_shapes[0]
        oh, ow = node.attrs.output_size
        taps = sum(b - a for a, b in windows(h, oh)) * sum(b - a for a, b in windows(w, ow))
        return node.shape[0] * taps

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        a = node.attrs
        ch, h, w = src.geometry
        oh_n, ow_n = a.output_size
        rows, cols = windows(h, oh_n), windows(w, ow_n)
        if self.is_max:
            params = [c.identity_params(0)]
        else:
            c.check(len(a.counts) <= c.cfg.param_groups, node,
                    f"{len(a.counts)} window sizes need as many parameter groups; the NPU has "
                    f"{c.cfg.param_groups}")
            params = [c.param_load(g, 0, m, s) for g, (m, s) in enumerate(zip(a.mults, a.shifts))]
        op = isa.AluOp.MAX if self.is_max else isa.AluOp.ADD
        uniform = w % ow_n == 0           # equal windows side by side: one vector op per tap
        acc = c.cfg.acc_depth
        widest = max(w1 - w0 for w0, w1 in cols)

        def spans(ny: int) -> list[tuple[int, int]]:
            # Runs of output columns whose windows' input columns and outputs fit the
            # accumulator together (the whole row where it fits).
            out, j0 = [], 0
            while j0 < ow_n:
                j1 = j0 + 1
                while j1 < ow_n and ny * (cols[j1][1] - cols[j0][0]) + j1 + 1 - j0 <= acc:
                    j1 += 1
                out.append((j0, j1))
                j0 = j1
            return out
        for first, c0, length, oh, _ in c.blocks(ch, oh_n, 1):
            h0, h1 = rows[oh]
            ny = h1 - h0
            c.check(ny * widest + 1 <= acc and ny <= c.MAX_VECTORS, node,
                    f"output size {a.output_size} of a {h} x {w} input: a window of {ny} x "
                    f"{widest} pixels needs {ny * widest + 1} accumulator rows, the NPU has "
                    f"{acc}" + (f" (and a LOAD brings at most {c.MAX_VECTORS} rows)"
                                if ny > c.MAX_VECTORS else ""))
            for j0, j1 in spans(ny):
                x0 = cols[j0][0]
                width, n = cols[j1 - 1][1] - x0, j1 - j0
                out_base = ny * width
                load = c.acc_load(0, src.addr + (h0 * w + x0) * ch + c0, ny, w * ch, width, ch,
                                  length)
                alus = []
                if uniform:
                    k = w // ow_n
                    for dy in range(ny):
                        for dx in range(k):
                            alus.append(isa.alu(op=isa.AluOp.MOV if dy == dx == 0 else op,
                                                dst=out_base, src=dy * width + dx, count=n,
                                                dst_stride=1, src_stride=k))
                else:
                    for ow in range(j0, j1):
                        w0, w1 = cols[ow]
                        for dy in range(ny):
                            for dx in range(w0, w1):
                                first_tap = dy == 0 and dx == w0
                                alus.append(isa.alu(op=isa.AluOp.MOV if first_tap else op,
                                                    dst=out_base + ow - j0,
                                                    src=dy * width + dx - x0, count=1))
                # Runs of output pixels with the same parameter group, one store each.
                groups = [0 if self.is_max else a.counts.index(ny * (w1 - w0))
                          for w0, w1 in cols[j0:j1]]
                stores = [isa.store(acc=out_base + r0,
                                    dram=out.addr + (oh * ow_n + j0 + r0) * out.pixel_stride + c0,
                                    rows=r1 - r0, stride=out.pixel_stride, length=length,
                                    param=groups[r0], out_zp=0, clamp_lo=-128, clamp_hi=127)
                          for r0, r1 in runs(groups)]
                c.chunk(layer_id, first and j0 == 0, [load], params, alus, stores)
        return 0


@register
class AdaptiveMaxPool(_Adaptive):
    name = "adaptive_maxpool"
    is_max = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return F.adaptive_max_pool2d(args[0], node.attrs.output_size)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        return QNode(node.name, node.op, node.inputs, ctx.q(node.inputs[0]), ctx.shape(node.name),
                     node.attrs, None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        return _per_window(args[0], node.attrs.output_size, lambda win: win.amax(dim=(2, 3)))


@register
class AdaptiveAvgPool(_Adaptive):
    name = "adaptive_avgpool"
    is_max = False

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return F.adaptive_avg_pool2d(args[0], node.attrs.output_size)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        _, h, w = ctx.shape(node.inputs[0])
        oh_n, ow_n = node.attrs.output_size
        counts = tuple(sorted({(h1 - h0) * (w1 - w0) for h0, h1 in windows(h, oh_n)
                               for w0, w1 in windows(w, ow_n)}))
        mults, shifts = zip(*(golden.quantize_multiplier(1.0 / n) for n in counts))
        attrs = QAdaptivePool(node.attrs.output_size, counts, mults, shifts)
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name), attrs, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp

        def mean(win):
            g = a.counts.index(win.shape[2] * win.shape[3])
            s = win.to(torch.int64).sum(dim=(2, 3))
            y = golden.multiply_by_quantized_multiplier(s, a.mults[g], a.shifts[g])
            return torch.clamp(y, lo, hi).to(torch.int8)
        return _per_window(args[0], a.output_size, mean)


def add_adaptive(t: fx.Tracer, fx_node, inp: str, size: tuple[int, int], is_max: bool,
                 where: str) -> None:
    """The node of an adaptive pooling to ``size``: ``gap`` for an average to 1 x 1."""
    if not is_max and size == (1, 1):
        t.add(Node(fx_node.name, "gap", [inp], where=where))
    else:
        t.add(Node(fx_node.name, "adaptive_maxpool" if is_max else "adaptive_avgpool", [inp],
                   AdaptivePool(size), where=where))


@fx.module(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
    name = type(mod).__name__
    if getattr(mod, "return_indices", False):
        raise UnsupportedOpError(f"{name} at {where}: return_indices=True is not supported")
    add_adaptive(t, fx_node, inp, _output_size(mod.output_size, where, name),
                 isinstance(mod, nn.AdaptiveMaxPool2d), where)


@fx.function(F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
def _from_function(t: fx.Tracer, fx_node) -> None:
    where = t.place(fx_node)
    is_max = fx_node.target is F.adaptive_max_pool2d
    name = fx_node.target.__name__
    size = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("output_size")
    if fx_node.kwargs.get("return_indices") or (len(fx_node.args) > 2 and fx_node.args[2]):
        raise UnsupportedOpError(f"{name} at {where}: return_indices=True is not supported")
    add_adaptive(t, fx_node, t.src(fx_node.args[0]), _output_size(size, where, name), is_max,
                 t.where(fx_node))


@fx.function(torch.mean, "mean")
def _from_mean(t: fx.Tracer, fx_node) -> None:
    """``x.mean([2, 3])`` / ``torch.mean(x, (2, 3), keepdim=True)``: global average pooling
    (then a flatten to ``[batch, channels]`` without ``keepdim``)."""
    where = t.place(fx_node)
    dims = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim")
    keepdim = fx_node.args[2] if len(fx_node.args) > 2 else fx_node.kwargs.get("keepdim", False)
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    if sorted(d % 4 for d in dims) != [2, 3] or fx_node.kwargs.get("dtype") is not None:
        raise UnsupportedOpError(
            f"mean at {where}: only the mean over the spatial dimensions (dim=[2, 3]) of an "
            f"NCHW tensor is supported, not dim={list(dims) or None}")
    inp, where = t.src(fx_node.args[0]), t.where(fx_node)
    if keepdim:
        t.add(Node(fx_node.name, "gap", [inp], where=where))
    else:
        t.add(Node(f"{fx_node.name}_gap", "gap", [inp], where=where))
        t.add(Node(fx_node.name, "flatten", [f"{fx_node.name}_gap"], where=where))
