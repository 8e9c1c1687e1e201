"""LayerNorm over the features of token rows, integer-only on the vector ALU (I-BERT style).

Per token row of F int8 inputs ``x``, as a row program (:mod:`sw.ops.rows`):

1. ``d = F x - sum(x)`` (``RSUM``): ``F (x - mean)`` exactly, with no division (and the
   input zero point cancelled), shifted left by a fixed ``L`` (``|d << L| < 2**30``);
2. a per-row shift ``j`` from the row's largest ``|d|`` (``RMAX``, ``CLZ``) brings it to
   ``2**B`` (``F 2**(2B) <= 2**30``): ``s = (d << L) >> j`` with rounding (``RSHR``) keeps
   ``B`` bits whatever the row's spread, and ``V = sum(s**2)`` stays in int32;
3. ``eps`` in the units of ``V``, which depend on ``j``: a constant shifted right by
   ``2 (j - j_eps)``; ``j_eps``, the least shift at which that constant fits, is also the
   least ``j`` (a row whose variance is far below eps needs no more bits);
4. ``1/sqrt(V)`` by Newton's iteration ``y = y (3 - v y**2) / 2`` (``MULH``), three steps
   from a minimax line on ``v = V 2**e / 2**30`` in [0.5, 2) (``CLZ`` gives the even shift
   ``e``): relative error under 1e-6 before the fixed point's truncations;
5. ``((d << L) >> j2) * (y >> 15)``, ``j2 = max(j - 15 + B, 0)`` (15 bits of the row's
   largest ``|d|``, more than ``s`` keeps), shifted right by ``15 - e/2 + j - j2`` with
   rounding: the normalized value ``(x - mean) / sigma`` in a fixed scale
   ``G = sqrt(F) 2**-15`` (``j`` cancels: the operand and ``V`` carry the same shift);
6. gamma and beta fold into the store path: per feature, the multiplier
   ``G gamma / s_out`` (negative for a negative gamma) and the bias ``beta / (G gamma)``.
   A gamma so small that this bias leaves +-2**30 is raised to the smallest that keeps it
   in (an output error below ``2**-30 |beta| |x - mean| / sigma`` in real units).

Lanes past the features (a last, partial block of ``cols``) are zeroed by a mask of ones
(a DRAM constant, padded with 0) before the reductions. Error figures: docs/numerics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register
from .rows import RowProgram, Step, lower_rows, mask_bytes, run_rows

__all__ = ["LayerNormAttrs", "QLayerNorm", "LayerNorm", "layernorm_program"]

#: Newton start for 1/sqrt(v), v in [0.5, 2): RSQRT_A (Q30) - v * RSQRT_B (MULH of v
#: in Q30 by RSQRT_B / 2**32); a minimax line, relative error 8.6 %.
RSQRT_A, RSQRT_B = 1619202671, 1848983421
#: The largest bias (accumulator units) a feature's beta may need.
BIAS_MAX = 1 << 30


@dataclass(frozen=True)
class LayerNormAttrs:
    """Front-end attributes: features, eps, gamma and beta (None without)."""
    features: int
    eps: float
    weight: tuple[float, ...] | None
    bias: tuple[float, ...] | None


@dataclass(frozen=True)
class QLayerNorm:
    """Integer attributes: the row program's shifts (``shift_l`` = L, ``bits`` = B,
    ``j_eps``) and eps constant, and the store path's per-feature bias, multiplier and
    shift."""
    features: int
    shift_l: int
    bits: int
    j_eps: int
    eps: int
    bias: tuple[int, ...]
    mult: tuple[int, ...]
    shift: tuple[int, ...]


#: The largest eps constant (V units at the least shift): V's sum of squares and eps
#: together stay under 2**31.
EPS_MAX = 1 << 29


def _shifts(f: int) -> tuple[int, int]:
    """(L, B) for F features: ``|d << L| < 2**30`` for ``|d| <= 255 (F - 1)``, and
    ``F 2**(2B) <= 2**30``."""
    return 30 - (255 * max(f - 1, 0)).bit_length(), (30 - (f - 1).bit_length()) // 2


def _eps(eps: float, s_in: float, f: int, shift_l: int) -> tuple[int, int]:
    """(j_eps, constant): ``eps`` in the units of V at shift ``j``, which are
    ``2**(2L - 2j) F**3`` per squared input step, is ``constant >> 2 (j - j_eps)``."""
    e = eps / s_in ** 2 * f ** 3 * 4.0 ** shift_l
    j = 0
    while e / 4.0 ** j > EPS_MAX:
        j += 1
    return j, int(round(e / 4.0 ** j))


def layernorm_program(a: QLayerNorm) -> RowProgram:
    """The row program of a quantized LayerNorm."""
    steps = [
        Step("rsum", "m", "x"),
        Step("mul", "x", imm=a.features),
        Step("sub", "x", "m"),                        # d = F (x - mean)
        Step("mul", "x", "z", masked=True),           # 0 past the features
        Step("shl", "x", imm=a.shift_l),              # |d << L| < 2**30
        Step("mov", "q", "x"),
        Step("mul", "q", imm=-1),
        Step("max", "q", "x"),                        # |d << L|
        Step("rmax", "j", "q"),
        Step("clz", "j", "j"),
        Step("mul", "j", imm=-1),
        Step("add", "j", imm=32 - a.bits),            # bit length - B
        Step("max", "j", imm=a.j_eps),                # the row's shift j
        Step("mov", "q", "x"),
        Step("rshr", "q", "j"),                       # s, |s| <= 2**B
        Step("mul", "q", "q"),
        Step("rsum", "v", "q"),                       # V = sum(s**2) <= 2**30
        Step("mov", "t", "j"),
        Step("add", "t", imm=-a.j_eps),
        Step("shl", "t", imm=1),
        Step("min", "t", imm=31),
        Step("mov", "w", imm=a.eps),
        Step("shr", "w", "t"),                        # eps at shift j
        Step("add", "v", "w"),
        Step("max", "v", imm=1),                      # a constant row, eps 0: no zero
        Step("clz", "n", "v"),
        Step("add", "n", imm=-1),
        Step("shr", "n", imm=1),                      # e / 2
        Step("mov", "e", "n"),
        Step("shl", "e", imm=1),
        Step("shl", "v", "e"),                        # V 2**e in [2**29, 2**31)
        Step("mul", "n", imm=-1),
        Step("add", "n", imm=15),                     # the output's shift, 15 - e/2
        Step("mov", "y", "v"),
        Step("mulh", "y", imm=RSQRT_B),
        Step("mul", "y", imm=-1),
        Step("add", "y", imm=RSQRT_A),                # y ~ 1/sqrt(v), Q30
    ]
    for _ in range(3):
        steps += [
            Step("mov", "w", "y"),
            Step("mulh", "w", "y"),                   # y**2, Q28
            Step("mulh", "w", "v"),                   # v y**2, Q26
            Step("mul", "w", imm=-1),
            Step("add", "w", imm=3 << 26),            # 3 - v y**2
            Step("mulh", "y", "w"),                   # Q24 of y (3 - v y**2)
            Step("shl", "y", imm=5),                  # half of it, Q30
        ]
    steps += [
        Step("mov", "t", "j"),                        # the output's operand keeps 15 bits:
        Step("add", "t", imm=a.bits - 15),            # (d << L) >> j2, j2 = max(j - 15 + B, 0)
        Step("max", "t", imm=0),
        Step("rshr", "x", "t"),
        Step("add", "n", "j"),                        # and its shift grows by j - j2
        Step("sub", "n", "t"),
        Step("shr", "y", imm=15),                     # Q15, so that the product fits int32
        Step("mul", "x", "y"),
        Step("rshr", "x", "n"),                       # (x - mean) / sigma / G
    ]
    return RowProgram(tuple(steps), wide=("x", "z", "q"),
                      narrow=("m", "v", "n", "e", "y", "w", "j", "t"), x_pad=0, mask_pad=0,
                      out="x")


@register
class LayerNorm(Op):
    name = "layernorm"
    op_class = "normalization"
    tokens = True

    def vector_ops(self, node, in_shapes):
        return 7 * math.prod(node.shape)              # mean, centre, square, sum, scale, affine

    def param_bytes(self, node):
        return 3 * 4 * node.attrs.features            # bias, multiplier, shift per feature

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        x = args[0]
        if x.dim() not in (2, 3) or x.shape[-1] != a.features:
            raise UnsupportedOpError(f"layernorm at {node.where}: input {list(x.shape)}; "
                                     f"supported: [batch, ({a.features})] or [batch, tokens, "
                                     f"({a.features})], normalized over the last dimension")
        w = torch.tensor(a.weight) if a.weight is not None else None
        b = torch.tensor(a.bias) if a.bias is not None else None
        return F.layer_norm(x, (a.features,), w, b, a.eps)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        a = node.attrs
        f = a.features
        q_in, out = ctx.q(node.inputs[0]), ctx.out(node)
        shift_l, bits = _shifts(f)
        j_eps, eps = _eps(a.eps, q_in.scale, f, shift_l)
        g = math.sqrt(f) * 2.0 ** -15
        weight = a.weight if a.weight is not None else (1.0,) * f
        beta = a.bias if a.bias is not None else (0.0,) * f
        bias, mult, shift = [], [], []
        for w, b in zip(weight, beta):
            floor = abs(b) / (g * BIAS_MAX)
            if abs(w) < floor or w == 0:
                w = math.copysign(max(floor, 1e-30), w if w != 0 else 1.0)
            m, s = golden.quantize_multiplier(g * abs(w) / out.scale)
            mult.append(-m if w < 0 else m)
            shift.append(s)
            bias.append(int(round(b / (g * w))))
        attrs = QLayerNorm(f, shift_l, bits, j_eps, eps, tuple(bias), tuple(mult), tuple(shift))
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), attrs, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        acc = run_rows(layernorm_program(a), args[0].to(torch.int64), None)
        return golden.requantize(acc, torch.tensor(a.bias), torch.tensor(a.mult),
                                 torch.tensor(a.shift), node.out.zero_point)

    def lower(self, c, node, layer_id, args, out):
        x = args[0]
        a = node.attrs
        f = a.features
        nb = -(-f // c.C)
        c.check(nb <= c.cfg.param_groups, node,
                f"{f} features take {nb} parameter groups of {c.C}, the configuration has "
                f"{c.cfg.param_groups}")
        params = []
        for b in range(nb):
            lanes = slice(b * c.C, min(f, (b + 1) * c.C))
            params.append(c.param_load(b, np.array(a.bias[lanes]), np.array(a.mult[lanes]),
                                       np.array(a.shift[lanes])))
        mask_addr = c.const(mask_bytes(np.ones(f))) if f % c.C else None
        lower_rows(c, node, layer_id, layernorm_program(a), x, out, mask_addr=mask_addr,
                   mask_stride=0, params=params, group_of_block=lambda b: b,
                   out_zp=out.q.zero_point)
        return 0


def _attrs(where, shape, eps, weight, bias) -> LayerNormAttrs:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) != 1:
        raise UnsupportedOpError(f"LayerNorm at {where}: normalized_shape={list(shape)}; only "
                                 f"the last dimension (one size) is supported")
    def values(t):
        return None if t is None else tuple(float(v) for v in t.detach().reshape(-1))
    return LayerNormAttrs(int(shape[0]), float(eps), values(weight), values(bias))


@fx.module(nn.LayerNorm)
def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
    t.add(Node(fx_node.name, "layernorm", [inp],
               attrs=_attrs(where, mod.normalized_shape, mod.eps, mod.weight, mod.bias),
               where=where))


@fx.function(F.layer_norm, constants=True)
def _from_function(t: fx.Tracer, fx_node) -> None:
    names = ("input", "normalized_shape", "weight", "bias", "eps")
    args = dict(zip(names, fx_node.args))
    args.update(fx_node.kwargs)

    def constant(key):
        def value(n):
            if n.name not in t.values:
                raise UnsupportedOpError(f"layer_norm at {t.place(fx_node)}: its {key} needs "
                                         f"an example input to be read (sw.quantize traces "
                                         f"with one)")
            return t.values[n.name]
        return torch.fx.node.map_arg(args.get(key), value)

    t.add(Node(fx_node.name, "layernorm", [t.src(args["input"])],
               attrs=_attrs(t.where(fx_node), constant("normalized_shape"), args.get("eps", 1e-5),
                            constant("weight"), constant("bias")),
               where=t.where(fx_node)))
