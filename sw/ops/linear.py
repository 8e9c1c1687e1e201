"""Linear (fully connected) layers, quantized as a GEMM (:mod:`sw.ops.gemm`).

The lowering is the compiler's implicit GEMM on a 1x1 image; after a flatten of a 3-D
tensor the weight columns are permuted from PyTorch's CHW order to the NHWC bytes. A
token-shaped operand ([batch, tokens, features], one sample [T, F]) is T rows of the
same GEMM (a 1x1 convolution of a T x 1 image); the golden takes the leading dimensions
as rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import QuantContext, register
from .gemm import GemmOp, QLinear, quantize_gemm

__all__ = ["Linear", "LinearOp"]


@dataclass(frozen=True)
class Linear:
    """Float attributes: ``weight`` [N, K], ``bias`` [N]."""
    weight: torch.Tensor
    bias: torch.Tensor


@register
class LinearOp(GemmOp):
    name = "linear"
    tokens = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return F.linear(args[0], node.attrs.weight, node.attrs.bias)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        qnode, fields = quantize_gemm(node, ctx)
        qnode.attrs = QLinear(**fields)
        return qnode

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        acc = golden.gemm(args[0], a.w_q)
        return golden.requantize(acc, a.bias_q, a.mult, a.shift, node.out.zero_point, lo, hi)

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        w_q = node.attrs.w_q.numpy()
        if src.chw is not None:
            # PyTorch flattened C,H,W; the bytes in DRAM are H,W,C.
            c0, h0, w0 = src.chw
            perm = np.arange(c0 * h0 * w0).reshape(c0, h0, w0).transpose(1, 2, 0).reshape(-1)
            w_q = w_q[:, perm]
        cin = w_q.shape[1]
        wt = w_q.reshape(w_q.shape[0], 1, 1, cin)          # [Cout, KH, KW, Cin_g]
        # Token-shaped [T, F]: T rows of the GEMM, a 1x1 convolution of a T x 1 image.
        rows = src.shape[0] if len(src.shape) == 2 else 1
        c.check(src.geometry == (cin, rows, 1), node,
                f"operand shape {src.shape} does not match the weights' {cin} input features")
        return c.gemm_layer(node, layer_id, src, out, wt, (cin, rows, 1), (1, 1), (0, 0), 1,
                            False)


@fx.module(nn.Linear)
def _from_module(t: fx.Tracer, fx_node, mod: nn.Linear, inp: str, where: str) -> None:
    w = mod.weight.detach().clone()
    b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
    t.add(Node(fx_node.name, "linear", [inp], Linear(w, b), where=where))


@fx.function(F.linear, constants=True)
def _from_function(t: fx.Tracer, fx_node) -> None:
    """``F.linear(x, weight, bias)`` with constant weights: a module's parameters read in
    its ``forward``, or the torch.export front end's ``aten.linear`` / ``aten.addmm``."""
    args = list(fx_node.args) + [None] * (3 - len(fx_node.args))
    x = args[0]
    w = t.constant(fx_node.kwargs.get("weight", args[1]))
    b_arg = fx_node.kwargs.get("bias", args[2])
    b = t.constant(b_arg)
    if w is None or (b_arg is not None and b is None):
        raise UnsupportedOpError(f"linear at {t.place(fx_node)}: only constant weights and bias "
                                 f"are supported (a product of two activations is a matmul)")
    w = w.detach().clone().float()
    b = b.detach().clone().float() if b is not None else torch.zeros(w.shape[0])
    t.add(Node(fx_node.name, "linear", [t.src(x)], Linear(w, b), where=t.where(fx_node)))
