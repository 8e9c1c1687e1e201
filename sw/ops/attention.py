"""Attention as its parts: ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention``
become the nodes a model written out by hand gives (:mod:`sw.ops.linear`,
:mod:`sw.ops.reshape`, :mod:`sw.ops.matmul`, :mod:`sw.ops.softmax`), so that they quantize,
compile and run as those do; no operator of their own.

``scaled_dot_product_attention(q, k, v, is_causal=..., scale=...)``: ``q @ kᵀ`` (``kᵀ``
a view) times ``scale`` (default ``1 / sqrt(D)``), a softmax over the keys (causal: the
keys after the query masked), ``@ v``. ``nn.MultiheadAttention`` (``batch_first``, self-
attention, no masks, eval): its packed input projection as three linears, heads split
and merged as views, the attention above, its output projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..frontend import UnsupportedOpError, fx
from ..ir import Node
from .linear import Linear
from .matmul import Matmul
from .reshape import Reshape
from .softmax import SoftmaxAttrs

__all__ = ["attention_nodes", "mha_output", "causal_mask_add", "causal_input"]


def attention_nodes(t: fx.Tracer, name: str, where: str, q: str, k: str, v: str, *,
                    rank: int, head_dim: int, causal: bool, scale: float | None) -> str:
    """Add the nodes of ``softmax(q @ kᵀ * scale) @ v`` (operands of ``rank`` dimensions per
    sample, the last two tokens and features); the name of the last."""
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    factor = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    t.add(Node(f"{name}_kt", "view", [k], Reshape("permute", perm), where=f"{where} (kᵀ)"))
    t.add(Node(f"{name}_scores", "matmul", [q, f"{name}_kt"], Matmul(factor),
               where=f"{where} (q kᵀ)"))
    t.add(Node(f"{name}_probs", "softmax", [f"{name}_scores"], SoftmaxAttrs(-1, causal=causal),
               where=f"{where} (softmax)"))
    t.add(Node(name, "matmul", [f"{name}_probs", v], Matmul(), where=where))
    return name


def _arg(fx_node, index: int, key: str, default=None):
    if len(fx_node.args) > index:
        return fx_node.args[index]
    return fx_node.kwargs.get(key, default)


def _mask_kind(t: fx.Tracer, fx_node, mask) -> str | None:
    """What a constant ``attn_mask`` is: None (every key attended: no mask) or "causal"
    (the keys after the query masked, the same for every batch and head: what Hugging Face
    models pass once the front end has folded their mask). Anything else is refused."""
    if mask is None:
        return None
    value = t.constant(mask)
    if value is None:
        value = t.values.get(getattr(mask, "name", None)) if isinstance(mask, torch.fx.Node) \
            else None
        if value is not None and isinstance(mask, torch.fx.Node) and mask.op != "get_attr":
            value = None                    # computed from the input: not a constant
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        raise UnsupportedOpError(f"scaled_dot_product_attention at {t.place(fx_node)}: an "
                                 f"attn_mask that is not a constant is not supported "
                                 f"(is_causal=True is)")
    return _classify(value, f"scaled_dot_product_attention at {t.place(fx_node)}")


def _classify(value: torch.Tensor, what: str) -> str | None:
    """None (no key masked) or "causal" for a constant mask ``value`` (boolean, True to
    attend, or additive, 0 or -inf / the dtype's lowest); UnsupportedOpError otherwise."""
    if value.dtype != torch.bool and not value.is_floating_point():
        raise UnsupportedOpError(f"{what}: an attn_mask of {value.dtype} is not supported")
    keep = value if value.dtype == torch.bool else value > torch.finfo(value.dtype).min / 2
    if value.dtype != torch.bool and not torch.all((value == 0) | ~keep):
        raise UnsupportedOpError(f"{what}: an additive "
                                 f"attn_mask with values other than 0 and -inf is not supported")
    keep = keep.reshape(-1, *keep.shape[-2:])
    if not torch.all(keep == keep[:1]):
        raise UnsupportedOpError(f"{what}: an attn_mask that "
                                 f"differs between samples or heads is not supported")
    keep = keep[0]
    if bool(keep.all()):
        return None
    tq, tk = keep.shape
    if tq == tk and torch.equal(keep, torch.ones(tq, tk, dtype=torch.bool).tril()):
        return "causal"
    raise UnsupportedOpError(f"{what}: an attn_mask other "
                             f"than none or causal (lower-triangular) is not supported")


def causal_mask_add(t: fx.Tracer, fx_node, x, mask) -> bool:
    """``scores + mask`` where ``mask`` is a constant causal mask (0 and -inf, or the dtype's
    lowest, as Hugging Face's eager attention adds it) and the sum's one reader is a
    softmax: the sum is the scores, and that softmax causal (:func:`causal_input`). True if
    ``fx_node`` is one (and handled)."""
    value = t.constant(mask)
    users = list(fx_node.users)
    if value is None or not value.is_floating_point() or value.dim() < 2 or \
            not isinstance(x, torch.fx.Node) or len(users) != 1 \
            or "softmax" not in str(getattr(users[0].target, "__name__", users[0].target)):
        return False
    try:
        if _classify(value, f"add at {t.place(fx_node)}") != "causal":
            return False
    except UnsupportedOpError:
        return False
    t.alias(fx_node.name, t.src(x))
    t.pending[fx_node.name] = ("causal_mask",)
    return True


def causal_input(t: fx.Tracer, arg) -> bool:
    """Whether fx operand ``arg`` is scores with a causal mask added (:func:`causal_mask_add`)."""
    return t.pending.get(getattr(arg, "name", None), (None,))[0] == "causal_mask"


@fx.function(F.scaled_dot_product_attention, constants=True)
def _from_sdpa(t: fx.Tracer, fx_node) -> None:
    place = t.place(fx_node)
    mask = _mask_kind(t, fx_node, _arg(fx_node, 3, "attn_mask"))
    if t.const(_arg(fx_node, 4, "dropout_p", 0.0)) != 0.0:
        raise UnsupportedOpError(f"scaled_dot_product_attention at {place}: dropout_p must be 0")
    if fx_node.kwargs.get("enable_gqa"):
        raise UnsupportedOpError(f"scaled_dot_product_attention at {place}: enable_gqa is not "
                                 f"supported")
    q, k, v = (fx_node.args[i] if len(fx_node.args) > i else fx_node.kwargs[key]
               for i, key in enumerate(("query", "key", "value")))
    values = [t.values.get(getattr(a, "name", None)) for a in (q, k, v)]
    if not all(isinstance(x, torch.Tensor) for x in values):
        raise UnsupportedOpError(f"scaled_dot_product_attention at {place}: its operands' shapes "
                                 f"are unknown (trace with an example input: sw.quantize does)")
    vq, vk, vv = values
    if vk.shape != vv.shape or vq.shape[:-2] != vk.shape[:-2] or vq.shape[-1] != vk.shape[-1]:
        raise UnsupportedOpError(f"scaled_dot_product_attention at {place}: q {list(vq.shape)}, "
                                 f"k {list(vk.shape)}, v {list(vv.shape)}; supported: the same "
                                 f"batch and heads, k and v of one shape")
    causal = bool(t.const(_arg(fx_node, 5, "is_causal", False))) or mask == "causal"
    if causal and vq.shape[-2] != vk.shape[-2]:
        raise UnsupportedOpError(f"scaled_dot_product_attention at {place}: is_causal with "
                                 f"{vq.shape[-2]} queries and {vk.shape[-2]} keys (prefill "
                                 f"only: as many of each)")
    attention_nodes(t, fx_node.name, t.where(fx_node), t.src(q), t.src(k), t.src(v),
                    rank=vq.dim() - 1, head_dim=vq.shape[-1], causal=causal,
                    scale=t.const(_arg(fx_node, 6, "scale")))


@fx.module(nn.MultiheadAttention)
def _from_mha(t: fx.Tracer, fx_node, mod: nn.MultiheadAttention, inp: str, where: str) -> None:
    place = repr(where)

    def refuse(what: str):
        raise UnsupportedOpError(f"MultiheadAttention at {place}: {what} is not supported")

    if not mod.batch_first:
        refuse("batch_first=False (give batch_first=True)")
    if not mod._qkv_same_embed_dim or mod.bias_k is not None or mod.add_zero_attn:
        refuse("kdim/vdim, add_bias_kv or add_zero_attn")
    args = list(fx_node.args) + [None] * 3
    key = args[1] if args[1] is not None else fx_node.kwargs.get("key")
    value = args[2] if args[2] is not None else fx_node.kwargs.get("value")
    if key is not fx_node.args[0] or value is not fx_node.args[0]:
        refuse("attention of different query, key and value (only self-attention)")
    for opt in ("key_padding_mask", "attn_mask"):
        if fx_node.kwargs.get(opt) is not None:
            refuse(opt)
    if fx_node.kwargs.get("is_causal"):
        refuse("is_causal (use F.scaled_dot_product_attention(..., is_causal=True))")
    x = t.values.get(fx_node.args[0].name)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        refuse("an input other than [batch, tokens, features]")
    e, h = mod.embed_dim, mod.num_heads
    d = e // h
    w = mod.in_proj_weight.detach()
    b = mod.in_proj_bias.detach() if mod.in_proj_bias is not None else torch.zeros(3 * e)
    name = fx_node.name
    heads = []
    for i, part in enumerate("qkv"):
        t.add(Node(f"{name}_{part}", "linear", [inp],
                   Linear(w[i * e:(i + 1) * e].clone(), b[i * e:(i + 1) * e].clone()),
                   where=f"{where}.in_proj ({part})"))
        t.add(Node(f"{name}_{part}_heads", "view", [f"{name}_{part}"],
                   Reshape("shape", (x.shape[1], h, d)), where=f"{where} ({part} heads)"))
        t.add(Node(f"{name}_{part}_t", "view", [f"{name}_{part}_heads"],
                   Reshape("permute", (1, 0, 2)), where=f"{where} ({part} heads)"))
        heads.append(f"{name}_{part}_t")
    ctx = attention_nodes(t, f"{name}_attention", where, *heads, rank=3, head_dim=d,
                          causal=False, scale=None)
    # Heads merged: [H, T, D] to [T, H, D] (a copy: no view has it), then [T, E].
    t.add(Node(f"{name}_merge", "view", [ctx], Reshape("permute", (1, 0, 2)),
               where=f"{where} (merge heads)"))
    t.add(Node(f"{name}_merge_copy", "copy", [f"{name}_merge"], where=f"{where} (merge heads)"))
    t.add(Node(f"{name}_merged", "view", [f"{name}_merge_copy"], Reshape("shape", (x.shape[1], e)),
               where=f"{where} (merge heads)"))
    ob = mod.out_proj.bias.detach().clone() if mod.out_proj.bias is not None else torch.zeros(e)
    t.add(Node(f"{name}_out", "linear", [f"{name}_merged"],
               Linear(mod.out_proj.weight.detach().clone(), ob), where=f"{where}.out_proj"))
    # The module returns (output, weights): getitem 0 takes the output; the weights are
    # not computed (need_weights=False is what eval inference asks for).
    t.pending[name] = ("mha", f"{name}_out")


def mha_output(t: fx.Tracer, fx_node, pending, index) -> bool:
    """``mha(x, x, x)[0]``: the output node; True if ``fx_node`` is one (and handled).
    Called by the ``getitem`` pattern (:mod:`sw.ops.layout`)."""
    if pending[0] != "mha":
        return False
    if index != 0:
        raise UnsupportedOpError(f"MultiheadAttention's attention weights (at "
                                 f"{t.place(fx_node)}) are not computed; call it with "
                                 f"need_weights=False and take [0]")
    t.alias(fx_node.name, pending[1])
    return True



class _Call:
    """A module call inside a decomposed module, as the module patterns see an fx node."""

    op = "call_module"

    def __init__(self, name: str, target: str) -> None:
        self.name, self.target = name, target
        self.args, self.kwargs, self.meta, self.users = (), {}, {}, {}


def _child(t: fx.Tracer, name: str, mod: nn.Module, inp: str, where: str) -> str:
    """Add ``mod`` called on ``inp`` through its module pattern; the name of its output."""
    pattern = next((fx.MODULES[c] for c in type(mod).__mro__ if c in fx.MODULES), None)
    if pattern is None:
        raise UnsupportedOpError(f"unsupported module {type(mod).__name__} at {where!r}")
    pattern(t, _Call(name, where), mod, inp, where)
    return t.resolve(name)


_ACTIVATIONS = {F.relu: nn.ReLU, F.gelu: nn.GELU}


def _has_masks(fx_node) -> bool:
    """An encoder call given a mask (or ``is_causal=True``) besides its input."""
    return any(a is not None for a in fx_node.args[1:]) or \
        any(v is not None and v is not False for v in fx_node.kwargs.values())


@fx.module(nn.TransformerEncoderLayer)
def _from_encoder_layer(t: fx.Tracer, fx_node, mod: nn.TransformerEncoderLayer, inp: str,
                        where: str) -> None:
    """``TransformerEncoderLayer`` (``batch_first``, eval, no masks): self-attention and the
    feed-forward block with their residual adds and LayerNorms, after (or, ``norm_first``,
    before) each."""
    if _has_masks(fx_node):
        raise UnsupportedOpError(f"TransformerEncoderLayer at {where!r}: masks are not supported")
    act = mod.activation
    if not isinstance(act, nn.Module):
        if act not in _ACTIVATIONS:
            raise UnsupportedOpError(f"TransformerEncoderLayer at {where!r}: activation "
                                     f"{getattr(act, '__name__', act)!r} is not supported")
        act = _ACTIVATIONS[act]()
    name = fx_node.name
    mha = _Call(f"{name}_sa", f"{where}.self_attn")
    mha.args = (fx_node.args[0], fx_node.args[0], fx_node.args[0])

    def attention(x: str) -> str:
        _from_mha(t, mha, mod.self_attn, x, f"{where}.self_attn")
        return t.pending.pop(mha.name)[1]

    def feed_forward(x: str) -> str:
        h = _child(t, f"{name}_linear1", mod.linear1, x, f"{where}.linear1")
        h = _child(t, f"{name}_act", act, h, f"{where}.activation")
        return _child(t, f"{name}_linear2", mod.linear2, h, f"{where}.linear2")

    def add(a: str, b: str, n: int) -> str:
        t.add(Node(f"{name}_add{n}", "add", [a, b], where=f"{where} (residual {n})"))
        return f"{name}_add{n}"

    x = inp
    if mod.norm_first:
        x = add(x, attention(_child(t, f"{name}_norm1", mod.norm1, x, f"{where}.norm1")), 1)
        x = add(x, feed_forward(_child(t, f"{name}_norm2", mod.norm2, x, f"{where}.norm2")), 2)
    else:
        x = _child(t, f"{name}_norm1", mod.norm1, add(x, attention(x), 1), f"{where}.norm1")
        x = _child(t, f"{name}_norm2", mod.norm2, add(x, feed_forward(x), 2), f"{where}.norm2")
    t.alias(name, x)


@fx.module(nn.TransformerEncoder)
def _from_encoder(t: fx.Tracer, fx_node, mod: nn.TransformerEncoder, inp: str, where: str) -> None:
    """``TransformerEncoder``: its layers one after another, then its ``norm`` if any."""
    if _has_masks(fx_node):
        raise UnsupportedOpError(f"TransformerEncoder at {where!r}: masks are not supported")
    x = inp
    for i, layer in enumerate(mod.layers):
        call = _Call(f"{fx_node.name}_layers_{i}", f"{where}.layers.{i}")
        call.args = fx_node.args[:1]
        _from_encoder_layer(t, call, layer, x, f"{where}.layers.{i}")
        x = t.resolve(call.name)
    if mod.norm is not None:
        x = _child(t, f"{fx_node.name}_norm", mod.norm, x, f"{where}.norm")
    t.alias(fx_node.name, x)
