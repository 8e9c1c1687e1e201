"""Embedding lookup (``nn.Embedding``, ``F.embedding``) as a host operator.

Its operand is the model input of int64 token ids ([batch, tokens]; the input node
carries the dtype, :mod:`sw.ops.input`), its output token-shaped int8 [batch, tokens,
features], which the NPU layers after it read. A lookup is no arithmetic the array
could do, and the table is too large for the parameter memory, so the host does it
between NPU segments (:attr:`sw.ops.Op.host`), in integers: the table is quantized once
to the output's calibrated scale, ``round(w / s_out)`` (int32), and so are the constants
added to it (Hugging Face's position and token-type embeddings, which depend on no
input and which the front end folds into the lookup: ``embedding(ids) + pos``); the
output is ``clamp(table[ids] + added + zp_out, -128, 127)``.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["Embedding", "QEmbedding", "EmbeddingOp", "add_constant"]


@dataclass(frozen=True)
class Embedding:
    """Float attributes: the table ``weight`` [V, F] and the constant added to each
    sample's lookup, ``added`` [T, F] (or None)."""
    weight: torch.Tensor
    added: torch.Tensor | None = None


@dataclass(frozen=True)
class QEmbedding:
    """Integer attributes: the table and the added constant at the output scale (int32)."""
    table: torch.Tensor
    added: torch.Tensor | None


def _pack(t: torch.Tensor | None):
    if t is None:
        return None
    data = t.to(torch.int32).numpy().astype("<i4").tobytes()
    return {"shape": list(t.shape), "int32": base64.b64encode(data).decode("ascii")}


def _unpack(d) -> torch.Tensor | None:
    if d is None:
        return None
    data = np.frombuffer(base64.b64decode(d["int32"]), dtype="<i4").astype(np.int64)
    return torch.from_numpy(data.reshape(d["shape"]))


@register
class EmbeddingOp(Op):
    name = "embedding"
    host = True
    tokens = True
    ids = True          # its operand is integer token ids, not an int8 activation

    def param_bytes(self, node):
        return math.prod(node.attrs.table.shape)       # one int8 entry per table element

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        y = F.embedding(args[0], node.attrs.weight)
        return y if node.attrs.added is None else y + node.attrs.added

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        out = ctx.out(node)
        # Entries beyond the calibrated range saturate in the clamp; int32 keeps them exact
        # until then.
        limit = 1 << 24

        def at_scale(t):
            return None if t is None else \
                torch.clamp(torch.round(t.double() / out.scale), -limit, limit).to(torch.int32)
        attrs = QEmbedding(at_scale(node.attrs.weight), at_scale(node.attrs.added))
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), attrs, None,
                     node.where)

    def host_params(self, node: QNode) -> dict:
        return {"where": node.where, "table": _pack(node.attrs.table),
                "added": _pack(node.attrs.added), "zero_point": node.out.zero_point}

    def run_host(self, params, args):
        ids = args[0]
        table, added = _unpack(params["table"]), _unpack(params["added"])
        if ids.dtype.is_floating_point:
            raise TypeError(f"embedding at {params['where']}: token ids must be an integer "
                            f"tensor, not {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
            raise ValueError(f"embedding at {params['where']}: token ids must be in [0, "
                             f"{table.shape[0]}), the input holds {int(ids.min())} to "
                             f"{int(ids.max())}")
        y = table[ids.to(torch.int64)]
        if added is not None:
            y = y + added
        return torch.clamp(y + params["zero_point"], -128, 127).to(torch.int8)


def _check(where: str, max_norm) -> None:
    if max_norm is not None:
        raise UnsupportedOpError(f"embedding at {where}: max_norm={max_norm!r} is not supported "
                                 f"(it renormalizes the table as it reads it)")


@fx.module(nn.Embedding)
def _from_module(t: fx.Tracer, fx_node, mod: nn.Embedding, inp: str, where: str) -> None:
    _check(where, mod.max_norm)
    t.add(Node(fx_node.name, "embedding", [inp], Embedding(mod.weight.detach().clone()),
               where=where))


@fx.function(F.embedding, constants=True)
def _from_function(t: fx.Tracer, fx_node) -> None:
    args = list(fx_node.args) + [None] * (2 - len(fx_node.args))
    weight = t.constant(fx_node.kwargs.get("weight", args[1]))
    if weight is None:
        raise UnsupportedOpError(f"embedding at {t.place(fx_node)}: only a constant table is "
                                 f"supported")
    _check(t.place(fx_node), fx_node.kwargs.get("max_norm"))
    t.add(Node(fx_node.name, "embedding", [t.src(args[0])],
               Embedding(weight.detach().clone().float()), where=t.where(fx_node)))


def add_constant(t: fx.Tracer, fx_node, x, c) -> bool:
    """Fold ``x + c`` (an add pattern's operands) into the embedding that ``x`` is, for a
    constant ``c`` the same in every sample (a position or token-type embedding): True if
    folded, False if ``x`` is no embedding only this add reads or ``c`` no such constant."""
    const = t.constant(c)
    if const is None or not isinstance(x, torch.fx.Node) or x.name in t.constants:
        return False
    name = t.resolve(x.name)
    node = next((n for n in t.nodes if n.name == name), None)
    if node is None or node.op != "embedding" or any(name in n.inputs for n in t.nodes):
        return False
    # Every fx value that is this lookup (the embedding, the adds already folded into it)
    # leads to this add alone: the lookup with the constant added is the only one read.
    for v in fx_node.graph.nodes:
        if v.op != "get_attr" and t.resolve(v.name) == name and len(v.users) != 1:
            return False
    value = t.values.get(x.name)
    if not isinstance(value, torch.Tensor) or value.dim() != 3:
        return False
    sample = value.shape[1:]                            # [T, F]
    const = const.float()
    if const.dim() == 3:
        if not bool((const == const[:1]).all()):
            raise UnsupportedOpError(f"add at {t.place(fx_node)}: the constant added to the "
                                     f"embedding differs between samples")
        const = const[0]
    try:
        const = torch.broadcast_to(const, sample).clone()
    except RuntimeError:
        return False
    attrs = node.attrs
    added = const if attrs.added is None else attrs.added + const
    node.attrs = Embedding(attrs.weight, added)
    t.alias(fx_node.name, name)
    return True
