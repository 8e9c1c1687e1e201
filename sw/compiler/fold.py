"""Channel permutations folded into their neighbours at compile time.

A channel shuffle (ShuffleNet's ``channel_shuffle``, a ``channels`` node of
:mod:`sw.ops.layout`) moves every int8 value of its input to another channel unchanged.
Where every reader of its output can take its input channels in another order, the
shuffle needs no instructions: a dense convolution (or another ``channels`` node) reads
the unshuffled tensor with its weight columns permuted; a depthwise convolution
computes its channels in the unshuffled order (its weights and per-channel parameters
permuted) and hands the permutation on to its own readers. Otherwise the shuffle stays
a 0/1 1x1 convolution on the array. The folded model computes the same integers as the
model it comes from, which stays the golden.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import ops
from ..ir import QNode
from ..quant import QuantizedModel

__all__ = ["fold_channel_maps", "permutation"]


def permutation(node: QNode, source: QNode) -> torch.Tensor | None:
    """For a ``channels`` node that copies each channel of its operand ``source`` to one
    output channel exactly (same quantization, every int8 value through unchanged):
    ``perm`` with output channel ``o`` = input channel ``perm[o]``; None for any other."""
    if node.op != "channels" or node.out != source.out or len(node.shape) != 3 or \
            node.clamp != (-128, 127):
        return None
    w = node.attrs.w_q[:, :, 0, 0] != 0
    if w.shape[0] != w.shape[1] or not (w.sum(0) == 1).all() or not (w.sum(1) == 1).all():
        return None
    perm = w.to(torch.int8).argmax(1)
    # Exactness, checked on the golden: every int8 value of every channel.
    x = torch.arange(-128, 128, dtype=torch.int8).repeat(w.shape[1], 1)[None, :, None, :]
    if not torch.equal(ops.get("channels").golden(node, [x]), x[:, perm]):
        return None
    return perm


def _is_depthwise(node: QNode) -> bool:
    a = node.attrs
    return node.op == "conv" and a.groups == a.w_q.shape[0] and a.w_q.shape[1] == 1


def _plan(name: str, perm: torch.Tensor, users: dict[str, list[QNode]], output: str,
          edits: dict[str, QNode]) -> bool:
    """Add to ``edits`` the rewritten readers of tensor ``name`` whose channels are to
    be read through ``perm`` (reader channel ``c`` is stored channel ``perm[c]``);
    False if one of them cannot take it."""
    if name == output:
        return False
    for u in users.get(name, []):
        if u.op in ("conv", "channels") and u.attrs.groups == 1:
            w = torch.empty_like(u.attrs.w_q)
            w[:, perm] = u.attrs.w_q
            edits[u.name] = dataclasses.replace(u, attrs=dataclasses.replace(u.attrs, w_q=w))
        elif _is_depthwise(u):
            a = u.attrs
            fields = {}
            for key in ("w_q", "bias_q", "mult", "shift"):
                v = torch.empty_like(getattr(a, key))
                v[perm] = getattr(a, key)
                fields[key] = v
            edits[u.name] = dataclasses.replace(u, attrs=dataclasses.replace(a, **fields))
            if not _plan(u.name, perm, users, output, edits):
                return False
        else:
            return False
    return True


def fold_channel_maps(model: QuantizedModel) -> QuantizedModel:
    """``model`` with every channel permutation that its readers can absorb removed
    (the same model if there is none)."""
    nodes = list(model.nodes)
    changed = False
    i = 1
    while i < len(nodes):
        node = nodes[i]
        by_name = {n.name: n for n in nodes}
        src = by_name[node.inputs[0]] if node.inputs else None
        perm = permutation(node, src) if src is not None and src.op != "input" else None
        if perm is None:
            i += 1
            continue
        users: dict[str, list[QNode]] = {}
        for n in nodes:
            for x in dict.fromkeys(n.inputs):
                users.setdefault(x, []).append(n)
        edits: dict[str, QNode] = {}
        if not _plan(node.name, perm, users, model.output, edits):
            i += 1
            continue
        # The shuffle's readers read its operand instead; the shuffle goes.
        for name, new in edits.items():
            if node.name in new.inputs:
                edits[name] = dataclasses.replace(
                    new, inputs=[src.name if x == node.name else x for x in new.inputs])
        nodes = [edits.get(n.name, n) for n in nodes if n is not node]
        changed = True
    return QuantizedModel(nodes, model.output, model.input_shape) if changed else model
