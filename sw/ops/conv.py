"""2-D convolution (any kernel, stride, zero padding and groups), BatchNorm2d folded in
(or, where it follows no convolution, as a depthwise 1x1 convolution).

Quantized as a GEMM (:func:`sw.ops.gemm.quantize_gemm`); the golden is
:func:`sw.golden.conv2d` with the input zero point as padding, then the per-channel
store path. The lowering is the compiler's implicit GEMM: one activation row per
output pixel gathered by strided LOADs, weight tiles per (kh, kw, channel chunk),
block-diagonal tiles for groups (docs/compiler.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import QuantContext, refuse_options, register
from .gemm import GemmOp, QLinear, quantize_gemm

__all__ = ["Conv", "QConv", "ConvOp"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Conv:
    """Float attributes: ``weight`` [Cout, Cin/groups, KH, KW], ``bias`` [Cout]."""
    weight: torch.Tensor
    bias: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int


@dataclass(frozen=True)
class QConv(QLinear):
    """Integer attributes: those of a GEMM plus the convolution's geometry."""
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int


@register
class ConvOp(GemmOp):
    name = "conv"

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        return F.conv2d(args[0], a.weight, a.bias, a.stride, a.padding, 1, a.groups)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        qnode, fields = quantize_gemm(node, ctx)
        a = node.attrs
        qnode.attrs = QConv(**fields, stride=a.stride, padding=a.padding, groups=a.groups)
        return qnode

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        acc = golden.conv2d(args[0], a.w_q, stride=a.stride, padding=a.padding, groups=a.groups,
                            pad_value=a.zp_in)
        acc = acc.permute(0, 2, 3, 1)   # channels last for the per-channel store path
        y = golden.requantize(acc, a.bias_q, a.mult, a.shift, node.out.zero_point, lo, hi)
        return y.permute(0, 3, 1, 2).contiguous()

    def packed(self, c, node: QNode, src_shape) -> bool:
        """Whether the convolution reduces over (kw, channel) runs instead of channel chunks.

        With few input channels (an image's 1 or 3), chunks of one pixel's channels
        waste most of the array's rows; the taps of one kernel row are contiguous in
        NHWC when the row is stored with its border, so they pack into full chunks.
        """
        if node.attrs.groups != 1 or len(src_shape) != 3:
            return False
        cin = src_shape[0]
        kw = node.attrs.w_q.shape[3]
        sh, pw = node.attrs.stride[0], node.attrs.padding[1]
        return (kw > 1 and 2 * cin <= c.R and pw <= c.MAX_PAD
                and sh * (src_shape[2] + 2 * pw) * cin <= c.MAX_Y_STRIDE)

    def input_pad_w(self, c, node: QNode, shape) -> int:
        return node.attrs.padding[1] if self.packed(c, node, shape) else 0

    def input_im2col(self, c, node: QNode, shape) -> tuple[int, ...] | None:
        """As the model input's only reader: the input as this layer's im2col matrix when
        that needs fewer reduction chunks than reading it in place (an image's few
        channels; ResNet's 7x7 stem: 10 chunks of 147 taps instead of 14 of kernel rows).

        The host writes the matrix (:func:`sw.program.im2col`), so its rows are the taps in
        the (kh, kw, channel) order of the weights, padded to a multiple of ``rows`` bytes
        so that every chunk is one aligned vector."""
        a = node.attrs
        if a.groups != 1 or len(shape) != 3:
            return None
        cin = shape[0]
        kh, kw = a.w_q.shape[2], a.w_q.shape[3]
        if kh * kw == 1:
            return None
        k_pad = _ceil(kh * kw * cin, c.R) * c.R
        in_place = kh * _ceil(kw * cin, c.R) if self.packed(c, node, shape) else \
            kh * kw * _ceil(cin, c.R)
        if k_pad // c.R >= in_place or k_pad > c.MAX_X_STRIDE:
            return None
        return (kh, kw, *a.stride, *a.padding, k_pad)

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        return c.gemm_layer(node, layer_id, src, out, *self.gemm_form(c, node, src))

    def gemm_form(self, c, node, src):
        """How the compiler's implicit GEMM reads this layer (``gemm_layer``'s weights,
        geometry, stride, padding, groups and ``packed``): over ``src`` as it is stored, or,
        when ``src`` is this layer's im2col matrix, as a 1x1 convolution over its rows."""
        a = node.attrs
        wt = a.w_q.numpy().transpose(0, 2, 3, 1)          # [Cout, KH, KW, Cin_g]
        if src.im2col is not None:
            k_pad = src.im2col[6]
            flat = np.zeros((wt.shape[0], 1, 1, k_pad), np.int8)
            flat[:, 0, 0, :wt[0].size] = wt.reshape(wt.shape[0], -1)
            _, oh, ow = node.shape
            return flat, (k_pad, oh, ow), (1, 1), (0, 0), 1, False
        pw = a.padding[1]
        packed = src.pad_w == pw and pw > 0 and self.packed(c, node, src.shape)
        return wt, src.geometry, a.stride, a.padding, a.groups, packed


@fx.module(nn.Conv2d)
def _from_conv2d(t: fx.Tracer, fx_node, mod: nn.Conv2d, inp: str, where: str) -> None:
    padding = mod.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same" and all(k % 2 for k in mod.kernel_size):
        padding = tuple(k // 2 for k in mod.kernel_size)     # symmetric for odd kernels
    refuse_options(where, "Conv2d", dilation=(fx.pair(mod.dilation), (1, 1)),
                   padding_mode=(mod.padding_mode, "zeros"),
                   **({"padding": (padding, "numeric, 'valid', or 'same' with odd kernels")}
                      if isinstance(padding, str) else {}))
    w = mod.weight.detach().clone()
    b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
    t.add(Node(fx_node.name, "conv", [inp], Conv(w, b, fx.pair(mod.stride), fx.pair(padding),
                                                 mod.groups), where=where))


@fx.function(F.conv2d, constants=True)
def _from_function(t: fx.Tracer, fx_node) -> None:
    """``F.conv2d`` with constant weights (a module's parameters, or the torch.export front
    end's ``aten.conv2d``)."""
    names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    kw = {**dict(zip(names, fx_node.args)), **fx_node.kwargs}
    where = t.place(fx_node)
    w, b = t.constant(kw.get("weight")), t.constant(kw.get("bias"))
    if w is None or (kw.get("bias") is not None and b is None):
        raise UnsupportedOpError(f"conv2d at {where}: only constant weights and bias are "
                                 f"supported")
    padding = kw.get("padding", 0)
    if padding == "valid":
        padding = 0
    elif padding == "same" and all(k % 2 for k in w.shape[2:]):
        padding = tuple(k // 2 for k in w.shape[2:])
    refuse_options(where, "conv2d", dilation=(fx.pair(kw.get("dilation", 1)), (1, 1)),
                   **({"padding": (padding, "numeric, 'valid', or 'same' with odd kernels")}
                      if isinstance(padding, str) else {}))
    w = w.detach().clone().float()
    b = b.detach().clone().float() if b is not None else torch.zeros(w.shape[0])
    t.add(Node(fx_node.name, "conv", [t.src(kw["input"])],
               Conv(w, b, fx.pair(kw.get("stride", 1)), fx.pair(padding), kw.get("groups", 1)),
               where=t.where(fx_node)))


@fx.module(nn.BatchNorm2d)
def _from_batchnorm(t: fx.Tracer, fx_node, bn: nn.BatchNorm2d, inp: str, where: str) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedOpError(f"BatchNorm2d at {where}: track_running_stats=False is not "
                                 f"supported (inference needs the running statistics)")
    _batchnorm(t, fx_node, inp, where, bn.weight, bn.bias, bn.running_mean, bn.running_var,
               bn.eps)


@fx.function(F.batch_norm, constants=True)
def _from_batch_norm(t: fx.Tracer, fx_node) -> None:
    """``F.batch_norm`` in inference (the torch.export front end's
    ``_native_batch_norm_legit_no_training``), on constant statistics."""
    names = ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum",
             "eps"]
    kw = {**dict(zip(names, fx_node.args)), **fx_node.kwargs}
    where = t.place(fx_node)
    stats = [t.constant(kw.get(k)) for k in ("running_mean", "running_var")]
    if kw.get("training") or any(s is None for s in stats):
        raise UnsupportedOpError(f"batch_norm at {where}: only inference on the running "
                                 f"statistics is supported")
    _batchnorm(t, fx_node, t.src(kw["input"]), t.where(fx_node), t.constant(kw.get("weight")),
               t.constant(kw.get("bias")), *stats, kw.get("eps", 1e-5))


def _batchnorm(t: fx.Tracer, fx_node, inp: str, where: str, gamma, beta, mean, var,
               eps: float) -> None:
    """Folded into the convolution it follows; otherwise (pre-activation BatchNorm, as in
    DenseNet) a per-channel affine map: a depthwise 1x1 convolution."""
    gamma = gamma.detach() if gamma is not None else torch.ones_like(var)
    beta = beta.detach() if beta is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + eps)
    shift = beta - mean * scale
    prev = t.find(inp)
    if prev.op == "conv" and len(fx_node.args[0].users) == 1 and not prev.act:
        w, b = prev.attrs.weight, prev.attrs.bias
        prev.attrs = replace(prev.attrs, weight=w * scale[:, None, None, None],
                             bias=b * scale + shift)
        t.alias(fx_node.name, inp)
        return
    n = scale.numel()
    t.add(Node(fx_node.name, "conv", [inp], Conv(scale.view(n, 1, 1, 1).clone(), shift.clone(),
                                                 (1, 1), (0, 0), n), where=where))
