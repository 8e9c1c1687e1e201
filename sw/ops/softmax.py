"""Softmax over the features of token rows, integer-only on the vector ALU (I-BERT style).

Per token row of int8 inputs ``x`` (scale ``s``), as a row program (:mod:`sw.ops.rows`):

1. ``d = x - max(x)`` (``RMAX``), so every ``exp`` is at most 1;
2. ``z = -d * A`` with ``A = round(s * 2**15 / ln 2)``: ``exp(s d) = 2**(-z / 2**15)``, split
   into the integer part ``q = z >> 15`` and the fraction ``u`` (Q15);
3. ``2**(-u)`` by a second-order polynomial, ``1 + b u + a u**2`` with ``a + b = -1/2``
   (exact at both ends, least squares between: relative error under 0.33 %), in Q15 by
   Horner's rule with rounding shifts, then shifted right by ``q`` (at most 31): ``e``;
4. ``S = sum(e)`` (``RSUM``), normalised by ``CLZ`` to ``[2**30, 2**31)``, and its
   reciprocal by three Newton-Raphson steps ``y = y (2 - v y)`` (``MULH``) from the
   linear start ``48/17 - 32/17 v``;
5. ``p = e / S`` as ``MULH(e, y)`` shifted back with rounding (``RSHR``), stored with the
   fixed output quantization: scale 1/256, zero point -128 (probabilities in [0, 1)).

``causal`` masks the features ``j > i`` of token ``i`` (a [T, T] block of attention
scores): the mask, a DRAM constant, lowers those inputs by 256 (below every real one, so
not the max) and raises their ``q`` to 31 (``e = 0``). The lanes past the features of a
last, partial block of ``cols`` carry the same mask (the constant's padding), so they are
neither the max nor in the sum. Error figures: docs/numerics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode, QParams
from .base import Op, QuantContext, register
from .rows import RowProgram, Step, lower_rows, mask_bytes, run_rows

__all__ = ["QSoftmax", "Softmax", "SoftmaxAttrs", "causal_softmax", "SOFTMAX_OUT", "SOFTMAX_OUT_SYMMETRIC",
           "softmax_program"]

#: The output quantization: probabilities in [0, 1) in 1/256 steps (1 itself clamps to 255/256).
SOFTMAX_OUT = QParams(1.0 / 256, -128)
#: The output quantization where a matmul reads it (P @ V takes symmetric operands, zero
#: point 0): probabilities in 1/128 steps, [0, 127] (one bit less; 1 clamps to 127/128).
SOFTMAX_OUT_SYMMETRIC = QParams(1.0 / 128, 0)
#: Fraction bits of the exponent ``z`` and of the polynomial.
FRAC = 15
#: 2**(-u) ~ 1 + POLY_B u + POLY_A u**2 on u in [0, 1), in Q15.
POLY_A, POLY_B = 5630, -22014
#: Newton-Raphson start for 1/v, v in [0.5, 1): 48/17 (Q29) - v * 32/17 (MULH by Q30).
RECIP_C48, RECIP_K32 = 1515870810, 2021161080
#: The largest exponent multiplier: keeps ``z`` (inputs and the mask's 256 apart, 511
#: steps) and ``q << 15`` inside int32; any larger scale already makes one step e = 0.
A_MAX = (1 << 31) // 1024


@dataclass(frozen=True)
class SoftmaxAttrs:
    """Front-end attributes: the dimension, and whether features past the token are masked."""
    dim: int = -1
    causal: bool = False


@dataclass(frozen=True)
class QSoftmax:
    """Integer attributes: the exponent multiplier ``A``, the causal mask flag, and whether
    the output is :data:`SOFTMAX_OUT_SYMMETRIC` (else :data:`SOFTMAX_OUT`)."""
    a: int
    causal: bool
    symmetric: bool = False


def softmax_program(a: int, symmetric: bool = False) -> RowProgram:
    """The row program of a softmax with exponent multiplier ``a``, the output in 1/256
    steps (``symmetric``: 1/128)."""
    steps = [
        Step("shl", "v", imm=8, masked=True),        # v: the mask, 0 or 1, times 256
        Step("sub", "x", "v", masked=True),
        Step("rmax", "m", "x"),
        Step("sub", "x", "m"),                        # d <= 0
        Step("mul", "x", imm=-a),                     # z = -d A (Q15 of -x / ln 2)
        Step("mov", "q", "x"),
        Step("shr", "q", imm=FRAC),                   # integer part
        Step("shl", "q", imm=FRAC),
        Step("sub", "x", "q"),                        # u: the fraction
        Step("shr", "q", imm=FRAC),
        Step("shr", "v", imm=3, masked=True),         # the mask times 32
        Step("add", "q", "v", masked=True),
        Step("min", "q", imm=31),
        Step("mov", "v", "x"),                        # 2**(-u), Horner
        Step("mul", "v", imm=POLY_A),
        Step("rshr", "v", imm=FRAC),
        Step("add", "v", imm=POLY_B),
        Step("mul", "v", "x"),
        Step("rshr", "v", imm=FRAC),
        Step("add", "v", imm=1 << FRAC),
        Step("shr", "v", "q"),                        # e, Q15, at most 1
        Step("rsum", "s", "v"),                       # S >= 2**15 (the max's e is 1)
        Step("clz", "n", "s"),
        Step("mov", "r", "n"),
        Step("mul", "r", imm=-1),
        Step("add", "r", imm=21 + symmetric),         # the output's shift, 21 - clz >= 5
        Step("add", "n", imm=-1),
        Step("shl", "s", "n"),                        # v = S << (clz - 1), in [2**30, 2**31)
        Step("mov", "y", "s"),
        Step("mulh", "y", imm=RECIP_K32),
        Step("mul", "y", imm=-1),
        Step("add", "y", imm=RECIP_C48),              # y ~ 1/v, Q29
    ]
    for _ in range(3):
        steps += [
            Step("mov", "w", "s"),
            Step("mulh", "w", "y"),                   # v y, Q28
            Step("mul", "w", imm=-1),
            Step("add", "w", imm=1 << 29),            # 2 - v y, Q28
            Step("mulh", "y", "w"),                   # Q25
            Step("shl", "y", imm=4),                  # Q29
        ]
    steps += [
        Step("mulh", "v", "y"),                       # 256 e / S, times 2**(21 - clz)
        Step("rshr", "v", "r"),
    ]
    return RowProgram(tuple(steps), wide=("x", "v", "q"), narrow=("m", "s", "n", "r", "y", "w"),
                      x_pad=-128, mask_pad=1, out="v")


def _causal_mask(t: int, f: int) -> torch.Tensor:
    return (torch.arange(f)[None, :] > torch.arange(t)[:, None]).to(torch.int64)


def causal_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension of a [..., T, T] block with the features ``j > i`` of
    row ``i`` masked (a decoder's attention); torch.fx traces it as one call, the softmax
    node with ``causal=True``."""
    if isinstance(x, torch.fx.Proxy):
        return x.tracer.create_proxy("call_function", causal_softmax, (x,), {})
    t, f = x.shape[-2], x.shape[-1]
    return torch.softmax(x.masked_fill(_causal_mask(t, f).bool(), float("-inf")), dim=-1)


@register
class Softmax(Op):
    name = "softmax"
    op_class = "normalization"
    tokens = True

    def vector_ops(self, node, in_shapes):
        return 5 * math.prod(node.shape)              # max, subtract, exp, sum, divide

    def _check(self, node: Node, x: torch.Tensor) -> None:
        a = node.attrs or SoftmaxAttrs()
        if a.dim not in (-1, x.dim() - 1):
            raise UnsupportedOpError(f"softmax at {node.where}: dim={a.dim} of a {x.dim()}-D "
                                     f"tensor; only the last dimension (features) is supported")
        if x.dim() < 2:
            raise UnsupportedOpError(f"softmax at {node.where}: a {x.dim()}-D tensor; supported: "
                                     f"[batch, ..., features] (rows of the last dimension)")
        if a.causal and (x.dim() < 3 or x.shape[-1] != x.shape[-2]):
            raise UnsupportedOpError(f"softmax at {node.where}: a causal mask needs a square "
                                     f"[T, T] block, not {list(x.shape[1:])}")

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        x = args[0]
        self._check(node, x)
        if (node.attrs or SoftmaxAttrs()).causal:
            return causal_softmax(x)
        return torch.softmax(x, dim=-1)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        a = max(1, min(A_MAX, round(q_in.scale * (1 << FRAC) / math.log(2))))
        causal = (node.attrs or SoftmaxAttrs()).causal
        symmetric = node.name in ctx.symmetric
        out = SOFTMAX_OUT_SYMMETRIC if symmetric else SOFTMAX_OUT
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name),
                     QSoftmax(a, causal, symmetric), None, node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        x = args[0].to(torch.int64)
        mask = _causal_mask(x.shape[-2], x.shape[-1]) if node.attrs.causal else None
        y = run_rows(softmax_program(node.attrs.a, node.attrs.symmetric), x, mask) + \
            node.out.zero_point
        return torch.clamp(y, -128, 127).to(torch.int8)

    def lower(self, c, node, layer_id, args, out):
        x = args[0]
        f, t, _ = x.geometry
        a = node.attrs
        mask_addr = None
        stride = f
        if a.causal:
            # [..., T, T] scores (heads first): the [T, T] mask once per block of T rows.
            block = _causal_mask(x.shape[-2], f).numpy()
            mask_addr = c.const(mask_bytes(np.tile(block, (t // block.shape[0], 1))))
        elif f % c.C:
            mask_addr, stride = c.const(mask_bytes(np.zeros(f))), 0   # one row, read T times
        lower_rows(c, node, layer_id, softmax_program(a.a, a.symmetric), x, out, mask_addr=mask_addr,
                   mask_stride=stride, params=[c.identity_params(0)], group_of_block=lambda b: 0,
                   out_zp=node.out.zero_point)
        return 0


def _dim_of(fx_node, default=None):
    if len(fx_node.args) > 1:
        return fx_node.args[1]
    return fx_node.kwargs.get("dim", default)


@fx.module(nn.Softmax)
def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
    if mod.dim is None:
        raise UnsupportedOpError(f"Softmax at {where}: dim=None (implicit) is not supported; "
                                 f"give dim=-1")
    t.add(Node(fx_node.name, "softmax", [inp], attrs=SoftmaxAttrs(mod.dim), where=where))


@fx.function(F.softmax, torch.softmax, "softmax")
def _from_function(t: fx.Tracer, fx_node) -> None:
    dim = _dim_of(fx_node)
    if not isinstance(dim, int):
        raise UnsupportedOpError(f"softmax at {t.place(fx_node)}: dim={dim!r}; give dim=-1")
    if fx_node.kwargs.get("dtype") is not None:
        raise UnsupportedOpError(f"softmax at {t.place(fx_node)}: dtype= is not supported")
    from .attention import causal_input       # scores + a constant causal mask
    t.add(Node(fx_node.name, "softmax", [t.src(fx_node.args[0])],
               attrs=SoftmaxAttrs(dim, causal=causal_input(t, fx_node.args[0])),
               where=t.where(fx_node)))


@fx.function(causal_softmax)
def _from_causal(t: fx.Tracer, fx_node) -> None:
    t.add(Node(fx_node.name, "softmax", [t.src(fx_node.args[0])],
               attrs=SoftmaxAttrs(-1, causal=True), where=t.where(fx_node)))
