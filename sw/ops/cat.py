"""Concatenation along channels (``torch.cat(xs, 1)``: DenseNet, GoogLeNet, ShuffleNet,
SqueezeNet's fire modules).

The output has its calibrated quantization. Where the layout allows, there is no copy:
an operand that only the concatenation reads, made by a layer of the NPU (not the model
input, a view, a host operator or another concatenation), is quantized as the
concatenation's output (its range is the union of the operands') and its producer stores
it straight into its channel slice of the output, with the output's pixel stride
(:func:`folded_operands`; the quantizer and the compiler both ask it). The other operands
are requantized on the store path (``clamp(MBQM(x - zp_i, s_i / s_out) + zp_out)``) and
copied into their slices: a LOAD of their pixels into the accumulator and a STORE at the
slice's channel offset. A concatenation all of whose operands are stored in place emits
no instructions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from hw import isa

from .. import golden
from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, get, register

__all__ = ["Cat", "QCat", "Concat", "folded_operands", "stored_in_place"]


def folded_operands(nodes, output: str) -> dict[str, str]:
    """The operands that their producers store straight into a concatenation: operand
    name -> the concatenation's name. ``nodes``: a graph's nodes in order (float or
    quantized), ``output``: the model output's name."""
    users = Counter(i for n in nodes for i in n.inputs)
    by_name = {n.name: n for n in nodes}
    folded: dict[str, str] = {}
    for n in nodes:
        if n.op != "cat":
            continue
        for i in n.inputs:
            p = by_name[i]
            op = get(p.op)
            if p.op in ("input", "cat") or op.view or op.host or users[i] != 1 or i == output:
                continue
            folded[i] = n.name
    return folded


def stored_in_place(qmodel) -> dict[str, str]:
    """The operands of a quantized model that their producers store into their slice of
    a concatenation (what the compiler and the layer model lay out): those of
    :func:`folded_operands` whose quantization is the concatenation's (an operator that
    keeps its input's quantization, as max pooling does, is copied instead)."""
    return {x: cat for x, cat in folded_operands(qmodel.nodes, qmodel.output).items()
            if qmodel.node(x).out == qmodel.node(cat).out}


@dataclass(frozen=True)
class Cat:
    """Float attributes: the dimension of the batched tensors the operands are joined in,
    as the model gives it (1, or -3 for [batch, C, H, W], -1 for [batch, features])."""
    dim: int = 1


@dataclass(frozen=True)
class QCat:
    """Integer attributes: per operand its zero point and the multiplier and shift of
    ``s_i / s_out``."""
    zps: tuple[int, ...]
    mults: tuple[int, ...]
    shifts: tuple[int, ...]


@register
class Concat(Op):
    name = "cat"
    op_class = "data"

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        dim = node.attrs.dim
        channel = {4: (1, -3), 2: (1, -1)}.get(args[0].dim(), ())
        if dim not in channel:
            raise UnsupportedOpError(
                f"cat at {node.where}: only the channel dimension of [batch, C, H, W] or "
                f"[batch, features] tensors is supported, not dim={dim} of "
                f"{list(args[0].shape)}")
        return torch.cat(args, 1)

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        out = ctx.out(node)
        qs = [ctx.q(i) for i in node.inputs]
        mults, shifts = zip(*(golden.quantize_multiplier(q.scale / out.scale) for q in qs))
        attrs = QCat(tuple(q.zero_point for q in qs), mults, shifts)
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), attrs, None,
                     node.where)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        a = node.attrs
        parts = [golden.requantize(x.to(torch.int32), -zp, m, s, node.out.zero_point)
                 for x, zp, m, s in zip(args, a.zps, a.mults, a.shifts)]
        return torch.cat(parts, 1)

    def lower(self, c, node, layer_id, args, out):
        a = node.attrs
        ctot, h, w = out.geometry
        n_pix = h * w
        per = min(c.cfg.acc_depth, c.MAX_VECTORS)
        offset = 0
        first_layer_chunk = True
        for x, zp, m, s in zip(args, a.zps, a.mults, a.shifts):
            ch, xh, xw = x.geometry
            c.check(xh * xw == n_pix and x.pad_w == 0, node,
                    f"operand {x.name} {x.shape} does not match the output's {h} x {w} pixels")
            if x.in_place:                   # its producer stored it in its slice
                offset += ch
                continue
            params = c.param_load(0, -zp, m, s)
            for first, c0, length, p0, n in c.blocks(ch, n_pix, per):
                loads = [c.acc_load(0, x.addr + p0 * ch + c0, n, ch, 1, 0, length)]
                if first:
                    # This operand's requantization (the previous operand's last store has
                    # finished: each step waits for the one before).
                    loads.append(params)
                store = isa.store(acc=0, dram=out.addr + p0 * ctot + offset + c0, rows=n,
                                  stride=ctot, length=length, param=0, out_zp=out.q.zero_point,
                                  clamp_lo=-128, clamp_hi=127)
                c.chunk(layer_id, first_layer_chunk, loads, [], [], [store])
                first_layer_chunk = False
            offset += ch
        return 0


def _dim(v, where: str) -> int:
    if not isinstance(v, int):
        raise UnsupportedOpError(f"cat at {where}: dim {v!r} is not an int")
    return v


@fx.function(torch.cat, torch.concat, torch.concatenate)
def _from_cat(t: fx.Tracer, fx_node) -> None:
    where = t.place(fx_node)
    tensors = fx_node.args[0] if fx_node.args else fx_node.kwargs.get("tensors")
    dim = _dim(fx_node.args[1] if len(fx_node.args) > 1 else
               fx_node.kwargs.get("dim", fx_node.kwargs.get("axis", 0)), where)
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise UnsupportedOpError(f"cat at {where}: the tensors must be a list written in the "
                                 f"model's code")
    if dim not in (1, -3, -1):
        raise UnsupportedOpError(f"cat at {where}: only the channel dimension (dim=1) is "
                                 f"supported, not dim={dim}")
    inputs = [t.src(x) for x in tensors]
    if len(inputs) == 1:
        t.alias(fx_node.name, inputs[0])
        return
    t.add(Node(fx_node.name, "cat", inputs, Cat(dim), where=t.where(fx_node)))
