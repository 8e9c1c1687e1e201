"""LLM proxy workloads, from their published configurations (no downloads).

:data:`MODELS` holds BERT-base, Llama-2-7B and OPT-13B as :class:`LLMConfig`
objects with the shapes of their papers' released configurations. From a
configuration this module derives

* parameter and weight bytes (per layer and in total: the totals equal the
  published parameter counts, a test checks them);
* KV-cache bytes per token and for a sequence (OPT-13B: 800 KiB per token and
  1.6 GB for 2,048 tokens, as in the PagedAttention paper);
* the footprint (weights + KV cache + live activations) against batch and
  sequence length, and how a device's memory divides between weights and KV
  cache (:func:`memory_split`);
* the FLOPs and compulsory DRAM bytes of one step in *prefill* (``seq`` tokens)
  and *decode* (one new token against a KV cache of ``seq`` tokens), their
  arithmetic intensity, and the roofline time on a device given by its peak
  compute and bandwidth (:func:`phase_cost`, :class:`PhaseCost`).

:class:`TransformerLayer` is one layer as a PyTorch module (prefill, or decode
against a preallocated KV cache), used for the GPU reference and, as the
transformer operators land, as a compiled workload.

Conventions: a MAC is 2 FLOPs; attention score and context products are
counted dense (``seq x seq`` in prefill, as a dense kernel computes them; a
causal kernel that skips the masked half does about half of that work);
normalisation, softmax and element-wise FLOPs are not counted (they are a few
per element, under 1 % of a layer's FLOPs at these sizes) but their activations
are in the byte counts. DRAM bytes are compulsory traffic: every weight read
once per step, the KV cache read once and the new token's K and V written once,
the layer's input and output activations read and written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LLMConfig", "MODELS", "get", "PhaseCost", "phase_cost", "memory_split",
           "footprint", "TransformerLayer", "DecoderStack"]


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    """The shape of a transformer language model.

    Parameters
    ----------
    name: the model's name.
    layers, hidden, heads, kv_heads, intermediate, vocab: the usual shape parameters.
    ffn: ``"gelu"`` (BERT), ``"relu"`` (OPT) or ``"swiglu"`` (Llama: gate, up, down).
    norm: ``"layernorm"`` or ``"rmsnorm"``; ``post_norm`` for BERT's order.
    bias: linear layers and norms have biases.
    causal: a decoder (has a KV cache in generation).
    positions: rows of a learned position embedding (0: rotary, as Llama).
    token_types, embed_norm, pooler: BERT's extras; ``lm_head``: an untied output
    projection.
    source: where the shapes come from.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    ffn: str
    norm: str
    bias: bool
    causal: bool
    positions: int = 0
    post_norm: bool = False
    token_types: int = 0
    embed_norm: bool = False
    pooler: bool = False
    lm_head: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LLMConfig.{name} must be a positive int, not {value!r}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"LLMConfig {self.name}: hidden={self.hidden} must divide into "
                             f"heads={self.heads}, and heads into kv_heads={self.kv_heads}")
        if self.ffn not in ("gelu", "relu", "swiglu"):
            raise ValueError(f"LLMConfig.ffn is {self.ffn!r}; allowed: gelu, relu, swiglu")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"LLMConfig.norm is {self.norm!r}; allowed: layernorm, rmsnorm")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    # Parameters ---------------------------------------------------------------------------

    def linear_weights_per_layer(self) -> int:
        """Weight elements of one layer's matrices (the MACs per token of its projections)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        attn = 2 * h * h + 2 * h * kv                       # q, o; k, v
        ffn = (3 if self.ffn == "swiglu" else 2) * h * self.intermediate
        return attn + ffn

    def params_per_layer(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        n = self.linear_weights_per_layer()
        per_norm = 2 * h if self.norm == "layernorm" else h
        n += 2 * per_norm
        if self.bias:
            n += 2 * h + 2 * kv                               # q, o; k, v
            n += (self.intermediate + h) if self.ffn != "swiglu" else 0
        return n

    def params(self) -> int:
        """All parameters, embeddings and heads included."""
        h = self.hidden
        n = self.layers * self.params_per_layer()
        n += self.vocab * h + self.positions * h + self.token_types * h
        per_norm = 2 * h if self.norm == "layernorm" else h
        if self.embed_norm:
            n += per_norm
        if not self.post_norm:
            n += per_norm                                     # the final norm of pre-norm stacks
        if self.pooler:
            n += h * h + h
        if self.lm_head:
            n += self.vocab * h
        return n

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.params() * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token adds (all layers); 0 for an encoder."""
        if not self.causal:
            return 0
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


MODELS: dict[str, LLMConfig] = {
    "bert-base": LLMConfig(
        name="bert-base", layers=12, hidden=768, heads=12, kv_heads=12, intermediate=3072,
        vocab=30522, ffn="gelu", norm="layernorm", bias=True, causal=False, positions=512,
        post_norm=True, token_types=2, embed_norm=True, pooler=True,
        source="Devlin et al., NAACL 2019; bert-base-uncased config.json"),
    "llama2-7b": LLMConfig(
        name="llama2-7b", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008,
        vocab=32000, ffn="swiglu", norm="rmsnorm", bias=False, causal=True, lm_head=True,
        source="Touvron et al., arXiv 2307.09288 (Llama 2), Table 1; Llama-2-7b config.json"),
    "opt-13b": LLMConfig(
        name="opt-13b", layers=40, hidden=5120, heads=40, kv_heads=40, intermediate=20480,
        vocab=50272, ffn="relu", norm="layernorm", bias=True, causal=True, positions=2050,
        source="Zhang et al., arXiv 2205.01068 (OPT), Table 1; opt-13b config.json "
               "(2,048 positions + the offset of 2)"),
}


def get(name: str) -> LLMConfig:
    """A proxy configuration by name; a clear error lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown LLM proxy {name!r}; known: {', '.join(MODELS)}") from None


# Costs of one step -----------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseCost:
    """FLOPs and compulsory DRAM bytes of one step of ``layers`` layers.

    ``phase`` is ``"prefill"`` (``tokens`` = the sequence) or ``"decode"`` (one new
    token per sequence against ``context`` cached ones).
    """

    model: str
    phase: str
    batch: int
    tokens: int              # new tokens per sequence in this step
    context: int             # tokens attended to (cache + new)
    layers: int
    linear_flops: int
    attention_flops: int
    weight_bytes: int
    kv_read_bytes: int
    kv_write_bytes: int
    activation_bytes: int

    @property
    def flops(self) -> int:
        return self.linear_flops + self.attention_flops

    @property
    def dram_bytes(self) -> int:
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per DRAM byte."""
        return self.flops / self.dram_bytes

    def time_s(self, peak_flops: float, peak_bytes_s: float) -> float:
        """Roofline time on a device with the given peaks (compute and memory overlap)."""
        if peak_flops <= 0 or peak_bytes_s <= 0:
            raise ValueError("peak compute and bandwidth must be positive")
        return max(self.flops / peak_flops, self.dram_bytes / peak_bytes_s)

    def bound(self, peak_flops: float, peak_bytes_s: float) -> str:
        """``"compute"`` or ``"memory"``: which roof limits this step."""
        ridge = peak_flops / peak_bytes_s
        return "compute" if self.intensity >= ridge else "memory"

    def tokens_per_s(self, seconds: float) -> float:
        """New tokens per second when one step takes ``seconds``."""
        return self.batch * self.tokens / seconds

    def mbu(self, seconds: float, peak_bytes_s: float) -> float:
        """Memory-bandwidth utilization: compulsory bytes per second over the peak."""
        return self.dram_bytes / seconds / peak_bytes_s


def phase_cost(cfg: LLMConfig, phase: str, *, batch: int, seq: int, dtype_bytes: int = 2,
               layers: int | None = None) -> PhaseCost:
    """The cost of one step of ``layers`` layers (default: all) at ``batch``.

    ``phase="prefill"`` processes ``seq`` tokens per sequence; ``phase="decode"``
    one token per sequence against a KV cache of ``seq`` tokens. Raises
    :class:`ValueError` for an unknown phase, non-positive sizes, or decode of an
    encoder.
    """
    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase is {phase!r}; allowed: prefill, decode")
    if batch < 1 or seq < 1 or dtype_bytes < 1:
        raise ValueError(f"batch={batch}, seq={seq}, dtype_bytes={dtype_bytes} must be >= 1")
    if phase == "decode" and not cfg.causal:
        raise ValueError(f"{cfg.name} is an encoder: it has no decode phase")
    n_layers = cfg.layers if layers is None else layers
    if not 1 <= n_layers <= cfg.layers:
        raise ValueError(f"layers={layers} must be 1 to {cfg.layers}")
    new = seq if phase == "prefill" else 1
    context = seq if phase == "prefill" else seq + 1
    tokens = batch * new
    h, hd = cfg.hidden, cfg.head_dim
    linear = 2 * tokens * cfg.linear_weights_per_layer()
    attention = 2 * 2 * batch * cfg.heads * new * context * hd       # QK^T and PV
    kv_token_layer = 2 * cfg.kv_heads * hd * dtype_bytes
    cached = 0 if phase == "prefill" else seq
    kv_read = batch * cached * kv_token_layer
    kv_write = batch * new * kv_token_layer if cfg.causal else 0
    activations = 2 * tokens * h * dtype_bytes
    return PhaseCost(
        model=cfg.name, phase=phase, batch=batch, tokens=new, context=context, layers=n_layers,
        linear_flops=n_layers * linear, attention_flops=n_layers * attention,
        weight_bytes=n_layers * cfg.params_per_layer() * dtype_bytes,
        kv_read_bytes=n_layers * kv_read, kv_write_bytes=n_layers * kv_write,
        activation_bytes=n_layers * activations)


# Memory ------------------------------------------------------------------------------------

def footprint(cfg: LLMConfig, *, batch: int, seq: int, dtype_bytes: int = 2) -> dict[str, int]:
    """Bytes held in device memory while serving ``batch`` sequences of ``seq`` tokens:
    weights, KV cache, and the live activations of one layer's prefill (its widest
    point: the FFN's intermediate, or the attention scores)."""
    if batch < 1 or seq < 1:
        raise ValueError(f"batch={batch} and seq={seq} must be >= 1")
    weights = cfg.weight_bytes(dtype_bytes)
    kv = batch * seq * cfg.kv_bytes_per_token(dtype_bytes)
    ffn_width = (2 if cfg.ffn == "swiglu" else 1) * cfg.intermediate
    widest = max(ffn_width * seq, cfg.heads * seq * seq)
    activations = batch * (2 * cfg.hidden * seq + widest) * dtype_bytes
    return {"weights": weights, "kv_cache": kv, "activations": activations,
            "total": weights + kv + activations}


def memory_split(cfg: LLMConfig, device_bytes: int, *, dtype_bytes: int = 2,
                 reserve_fraction: float = 0.05) -> dict[str, float]:
    """How a device memory of ``device_bytes`` divides between weights and KV cache.

    ``reserve_fraction`` of the memory is kept for activations and the runtime; the
    rest after the weights holds KV cache. Returns the fractions of the device, and
    the tokens the KV cache holds. Raises :class:`ValueError` when the weights do not fit.
    """
    weights = cfg.weight_bytes(dtype_bytes)
    reserve = reserve_fraction * device_bytes
    free = device_bytes - weights - reserve
    if free < 0:
        raise ValueError(f"{cfg.name}: {weights / 1e9:.1f} GB of weights do not fit "
                         f"{device_bytes / 1e9:.1f} GB with {reserve_fraction:.0%} reserved")
    per_token = cfg.kv_bytes_per_token(dtype_bytes)
    return {"weights": weights / device_bytes, "kv_cache": free / device_bytes,
            "reserve": reserve_fraction,
            "kv_tokens": math.floor(free / per_token) if per_token else 0}


# The layer as a module -----------------------------------------------------------------------

def _rope(x: torch.Tensor, pos: int) -> torch.Tensor:
    """Rotary position embedding (Llama's rotate-half form) for positions pos..pos+T-1."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(pos, pos + t, device=x.device, dtype=torch.float32), inv)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class TransformerLayer(nn.Module):
    """One layer of ``cfg``: attention and FFN with the model's norms, order and biases.

    ``forward(x)`` runs prefill on ``x`` [batch, tokens, hidden] (causal for a
    decoder). ``forward(x, cache, pos)`` runs against a preallocated KV cache
    ``(k, v)``, each [batch, kv_heads, capacity, head_dim]: the new tokens' K and V
    are written at ``pos`` and the queries attend to positions ``0..pos+tokens-1``.
    """

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, kv, b = cfg.hidden, cfg.kv_heads * cfg.head_dim, cfg.bias
        self.q = nn.Linear(h, h, bias=b)
        self.k = nn.Linear(h, kv, bias=b)
        self.v = nn.Linear(h, kv, bias=b)
        self.o = nn.Linear(h, h, bias=b)
        if cfg.ffn == "swiglu":
            self.gate = nn.Linear(h, cfg.intermediate, bias=False)
        self.up = nn.Linear(h, cfg.intermediate, bias=b)
        self.down = nn.Linear(cfg.intermediate, h, bias=b)
        norm = (lambda: nn.LayerNorm(h, bias=b)) if cfg.norm == "layernorm" else \
            (lambda: nn.RMSNorm(h, eps=1e-5))
        self.norm1, self.norm2 = norm(), norm()

    def attention(self, x: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        cfg = self.cfg
        bsz, t, _ = x.shape
        hd = cfg.head_dim
        q = self.q(x).view(bsz, t, cfg.heads, hd).transpose(1, 2)
        k = self.k(x).view(bsz, t, cfg.kv_heads, hd).transpose(1, 2)
        v = self.v(x).view(bsz, t, cfg.kv_heads, hd).transpose(1, 2)
        if cfg.positions == 0:
            q, k = _rope(q, pos), _rope(k, pos)
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, pos:pos + t] = k
            v_cache[:, :, pos:pos + t] = v
            k, v = k_cache[:, :, :pos + t], v_cache[:, :, :pos + t]
        # One new token attends to everything cached; a prefill is causal in a decoder.
        causal = cfg.causal and t > 1
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                             enable_gqa=cfg.kv_heads != cfg.heads)
        return self.o(out.transpose(1, 2).reshape(bsz, t, cfg.hidden))

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.ffn == "swiglu":
            return self.down(F.silu(self.gate(x)) * self.up(x))
        act = F.gelu if self.cfg.ffn == "gelu" else F.relu
        return self.down(act(self.up(x)))

    def forward(self, x: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        if self.cfg.post_norm:
            x = self.norm1(x + self.attention(x, cache, pos))
            return self.norm2(x + self.ffn(x))
        x = x + self.attention(self.norm1(x), cache, pos)
        return x + self.ffn(self.norm2(x))


class DecoderStack(nn.Module):
    """``n`` layers of ``cfg`` sharing one forward signature (for measuring a few layers)."""

    def __init__(self, cfg: LLMConfig, n: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(n))

    def forward(self, x: torch.Tensor, caches=None, pos: int = 0) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, None if caches is None else caches[i], pos)
        return x
