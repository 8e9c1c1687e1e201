"""Matmul of two activations (attention's ``Q @ K^T`` and ``P @ V``), batched over heads:
``torch.matmul``, ``@`` and ``torch.bmm``, with a scalar factor (``* scale``, ``/ sqrt(d)``)
folded in.

Numerics (docs/numerics.md): both operands are int8, per tensor, symmetric (zero point
0), so ``sum_k (a - 0)(b - 0)`` has no cross terms and the product needs no row or column
sums; the quantizer makes the producers of a matmul's operands symmetric
(:attr:`MatmulOp.symmetric_inputs`). The product ``s_a * s_b * factor / s_out`` is one
requantization multiplier and shift, the bias zero.

Lowering (docs/compiler.md): one operand is the weight-stationary array's stationary
input. ``A @ B`` streams A's rows (``[M, K]``, K contiguous) and holds B's columns as the
weight tiles; a weight tile's rows must be contiguous runs of K, so a ``B`` that is a
transposed view of a row-major tensor (``K^T`` of a ``[T, D]`` K) is read as it is, one
strided LOAD per tile. A row-major ``B`` (``V`` [T, D], reduced over T) is first
transposed into a scratch buffer: on the array (a GEMM with an identity as the streamed
operand and V's rows as the weights, stored through the identity requantizer) or by DMA
(element by element through the accumulator), as :data:`TRANSPOSE` says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import operator
from dataclasses import dataclass

import numpy as np
import torch

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, act_clamp, register

__all__ = ["Matmul", "QMatmul", "MatmulOp", "TRANSPOSE", "transpose_mode", "chosen_transpose", "transposing", "scale_pattern"]

#: How a row-major stationary operand is transposed: "array" (identity GEMMs), "dma"
#: (element copies), or "auto" (the cheaper for its shape, :func:`transpose_mode`). A
#: module-level switch so that bench/attention_matmul.py can measure both.
TRANSPOSE = "auto"


@dataclass(frozen=True)
class Matmul:
    """Float attributes: ``factor``, a scalar the product is multiplied by."""
    factor: float = 1.0


@dataclass(frozen=True)
class QMatmul:
    """Integer attributes: the requantization of the product (per tensor, broadcast over
    the ``n`` output columns as the store path's per-channel rows), a zero bias, and the
    reduction length ``k``."""
    bias_q: torch.Tensor
    mult: torch.Tensor
    shift: torch.Tensor
    k: int


def transpose_mode(k: int, n: int, rows: int, cols: int) -> str:
    """The cheaper transpose of a row-major ``[K, N]`` operand on a ``rows x cols`` array,
    by a cost model fitted to the performance model's cycles (bench/attention_matmul.py,
    docs/compiler.md; its pick is within 1 % of the cheaper on the measured shapes): the
    DMA moves every element as a one-byte vector each way (about 4 cycles an element);
    the array moves ``rows x cols`` blocks, each a weight load, a GEMM of up to ``rows``
    rows and a store, behind a barrier per ``rows`` columns of the result."""
    dma = 4 * k * n + 50
    array = math.ceil(n / rows) * (60 + math.ceil(k / cols) * (50 + (rows + cols) / 2))
    return "dma" if dma < array else "array"


def chosen_transpose(k: int, n: int, rows: int, cols: int, row_stride: int,
                     max_x_stride: int) -> str:
    """How a row-major ``[K, N]`` operand (``row_stride`` elements between its rows) is
    transposed: as :data:`TRANSPOSE` says, or for "auto" the cheaper by
    :func:`transpose_mode`, the array where the rows are further apart than a DMA element
    copy reaches (``max_x_stride``). The compiler and the layer-level model both ask."""
    if TRANSPOSE not in ("auto", "array", "dma"):
        raise ValueError(f"sw.ops.matmul.TRANSPOSE is {TRANSPOSE!r}; expected 'auto', "
                         f"'array' or 'dma'")
    if TRANSPOSE != "auto":
        return TRANSPOSE
    if row_stride > max_x_stride:
        return "array"
    return transpose_mode(k, n, rows, cols)


@contextlib.contextmanager
def transposing(mode: str):
    """Compile with :data:`TRANSPOSE` set to ``mode`` (to measure or test both ways)."""
    global TRANSPOSE
    saved, TRANSPOSE = TRANSPOSE, mode
    try:
        yield
    finally:
        TRANSPOSE = saved


def _check_shapes(where: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() < 3 or a.dim() != b.dim() or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise UnsupportedOpError(
            f"matmul at {where}: operands {list(a.shape)} and {list(b.shape)}; supported: "
            f"[batch, ..., M, K] @ [batch, ..., K, N] with the same leading dimensions "
            f"(no broadcasting)")


@register
class MatmulOp(Op):
    name = "matmul"
    op_class = "gemm"
    fuses_activation = True
    tokens = True
    strided = True
    flat_output = True
    symmetric_inputs = True

    def macs(self, node: QNode) -> int:
        return math.prod(node.shape) * node.attrs.k

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        _check_shapes(node.where, *args)
        return torch.matmul(args[0], args[1]) * node.attrs.factor

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        qa, qb = (ctx.q(i) for i in node.inputs)
        for name, q in zip(node.inputs, (qa, qb)):
            if q.zero_point != 0:
                raise UnsupportedOpError(
                    f"matmul at {node.where}: operand {name} has zero point {q.zero_point}; a "
                    f"matmul of two activations takes symmetric operands (its producer keeps "
                    f"another tensor's quantization)")
        if node.attrs.factor < 0:
            raise UnsupportedOpError(f"matmul at {node.where}: a negative factor "
                                     f"({node.attrs.factor}) is not supported")
        out = ctx.out(node)
        m, s = golden.quantize_multiplier(qa.scale * qb.scale * node.attrs.factor / out.scale)
        shape = ctx.shape(node.name)
        n = shape[-1]
        attrs = QMatmul(torch.zeros(n, dtype=torch.int32), torch.full((n,), m), torch.full((n,), s),
                        ctx.shape(node.inputs[0])[-1])
        return QNode(node.name, node.op, node.inputs, out, shape, attrs, node.act, node.where,
                     act_clamp(node.act, out))

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        lo, hi = node.clamp
        acc = golden.matmul(args[0], args[1])
        return golden.requantize(acc, 0, a.mult[0], a.shift[0], node.out.zero_point, lo, hi)

    def lower(self, c, node, layer_id, args, out):
        from ..compiler import Tensor
        from .reshape import copy_strided
        A, B = args
        for t in args:
            c.check(t.flat, node, f"operand {t.name} {list(t.shape)} is a channel-last image")
        *batch, M, K = A.shape
        N = B.shape[-1]
        sa, sb = A.elem_strides, B.elem_strides
        slots = 0
        first = True
        scratch = []
        if sa[-1] != 1:
            # A's rows must be contiguous runs of K: copy a transposed A row-major.
            addr = c.memory.alloc(A.nbytes)
            scratch.append((addr, A.nbytes))
            copy_strided(c, node, layer_id, A.addr, A.shape, sa, addr, first)
            first = False
            A = Tensor(A.name, A.shape, A.q, addr, flat=True)
            sa = A.elem_strides
        if sb[-2] == 1:
            b_base, b_batch, n_stride = B.addr, sb[:-2], sb[-1]
        else:
            # Row-major B: transpose it to [..., N, K] so that its columns are rows.
            nbytes = B.nbytes
            addr = c.memory.alloc(nbytes)
            scratch.append((addr, nbytes))
            mode = chosen_transpose(K, N, c.R, c.C, sb[-2], c.MAX_X_STRIDE)
            if mode == "dma" or sb[-1] != 1:
                copy_strided(c, node, layer_id, B.addr, (*batch, N, K), (*sb[:-2], sb[-1], sb[-2]),
                             addr, first)
            else:
                slots += self._transpose_on_array(c, node, layer_id, B, addr)
            first = False
            b_base, n_stride = addr, K
            b_batch = Tensor("", (*batch, N, K), B.q, flat=True).elem_strides[:-2]
        for n, idx in enumerate(itertools.product(*map(range, batch))):
            a_sub = Tensor(A.name, (M, K), A.q, A.addr + sum(i * s for i, s in zip(idx, sa)))
            o_sub = Tensor(node.name, (M, N), out.q, out.addr + n * M * N)
            w = _dram_weights(b_base + sum(i * s for i, s in zip(idx, b_batch)), n_stride, N, K)
            slots += c.gemm_layer(node, layer_id, a_sub, o_sub, w, (K, M, 1), (1, 1), (0, 0), 1,
                                  False, src_stride=sa[-2])
        for addr, nbytes in scratch:
            c.memory.release(addr, nbytes)    # the layer barrier orders its reads before reuse
        return slots

    def _transpose_on_array(self, c, node, layer_id, B, dst) -> int:
        """``dst`` [..., N, K] = B [..., K, N] transposed on the array; returns MAC slots.

        For each ``rows`` columns ``n0`` of B: a GEMM layer whose streamed operand is an
        identity ``I`` (``rows`` x ``rows``) and whose weights are B's rows, ``W[k, r] =
        B[k, n0 + r]``: output row ``m``, column ``k`` is ``sum_r I[m, r] W[k, r] = B[k, n0
        + m]``, row ``n0 + m`` of the transpose, stored through the identity requantizer."""
        from ..compiler import Tensor
        *batch, K, N = B.shape
        sb = B.elem_strides
        R = c.R
        ident = dataclasses.replace(
            node, clamp=(-128, 127),
            attrs=QMatmul(torch.zeros(K, dtype=torch.int32), torch.full((K,), 1 << 30),
                          torch.full((K,), 1), K))
        eye = {}
        slots = 0
        for n, idx in enumerate(itertools.product(*map(range, batch))):
            base = B.addr + sum(i * s for i, s in zip(idx, sb))
            for n0 in range(0, N, R):
                rn = min(R, N - n0)
                if rn not in eye:
                    eye[rn] = c.const(np.eye(rn, dtype=np.int8).tobytes())
                src = Tensor("identity", (rn, rn), B.q, eye[rn])
                o_sub = Tensor(node.name, (rn, K), B.q, dst + n * N * K + n0 * K)
                w = _dram_weights(base + n0, sb[-2], K, rn)
                slots += c.gemm_layer(ident, layer_id, src, o_sub, w, (rn, rn, 1), (1, 1), (0, 0),
                                      1, False)
        return slots


def _dram_weights(base: int, n_stride: int, cout: int, cin: int):
    from ..compiler.gemm import DramWeights
    return DramWeights(base, n_stride, cout, cin)


def _operand(t: fx.Tracer, fx_node, arg) -> str:
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        raise UnsupportedOpError(
            f"{fx_node.target.__name__ if callable(fx_node.target) else fx_node.target} at "
            f"{t.place(fx_node)}: operand {arg.target!r} is a parameter of the model; a matmul "
            f"by weights is an nn.Linear")
    if not isinstance(arg, torch.fx.Node):
        raise UnsupportedOpError(f"matmul at {t.place(fx_node)}: a constant operand {arg!r} is "
                                 f"not supported")
    return t.src(arg)


@fx.function(torch.matmul, operator.matmul, torch.bmm, "matmul", "bmm")
def _from_matmul(t: fx.Tracer, fx_node) -> None:
    a, b = fx_node.args[0], fx_node.args[1]
    ins = [_operand(t, fx_node, a), _operand(t, fx_node, b)]
    va, vb = t.values.get(a.name), t.values.get(b.name)
    if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor):
        _check_shapes(t.place(fx_node), va, vb)
    t.add(Node(fx_node.name, "matmul", ins, Matmul(), where=t.where(fx_node)))


def scale_pattern(t: fx.Tracer, fx_node, divide: bool = False) -> bool:
    """Fold ``matmul * c``, ``c * matmul`` or ``matmul / c`` (``c`` a number) into the
    matmul's factor; True if ``fx_node`` is one (and handled)."""
    a, b = fx_node.args[0], fx_node.args[1]
    if not divide and not isinstance(a, torch.fx.Node):
        a, b = b, a
    b = t.const(b)
    if not isinstance(a, torch.fx.Node) or not isinstance(b, (int, float)) or \
            isinstance(b, bool) or len(a.users) != 1:
        return False
    node = next((n for n in t.nodes if n.name == t.resolve(a.name)), None)
    if node is None or node.op != "matmul" or node.act is not None:
        return False
    factor = 1.0 / b if divide else float(b)
    node.attrs = Matmul(node.attrs.factor * factor)
    t.alias(fx_node.name, node.name)
    return True


@fx.function(operator.truediv, torch.div, "div")
def _from_div(t: fx.Tracer, fx_node) -> None:
    if not scale_pattern(t, fx_node, divide=True):
        raise UnsupportedOpError(f"division at {t.place(fx_node)}: only a matmul divided by a "
                                 f"number (attention's scaling) is supported")
