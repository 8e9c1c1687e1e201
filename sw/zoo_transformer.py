"""Transformer proxy workloads defined in the project: a BERT-style encoder and a GPT-2
style decoder block (prefill, causal), small enough for the RTL simulation.

Both take hidden states ``[batch, tokens, features]`` (the embeddings are the host's
lookup, :mod:`sw.ops.embedding`, in the Hugging Face models) and are written the way
model code is: ``nn.Linear`` projections, heads split with ``unflatten``/``transpose`` and
merged with ``transpose``/``flatten``, ``q @ k.transpose(-2, -1) * scale``, ``softmax``,
``nn.LayerNorm``, ``nn.GELU``, residual adds; the decoder's attention is
``F.scaled_dot_product_attention(..., is_causal=True)`` on a fused ``q, k, v`` projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BertEncoder", "BertLayer", "GPT2Block", "GPT2Decoder"]


class SelfAttention(nn.Module):
    """Multi-head self-attention as BERT writes it: separate q, k, v projections."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not a multiple of heads {heads}")
        self.heads, self.head_dim = heads, hidden // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)   # [B, H, T, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-2, -1) * self.scale
        probs = scores.softmax(dim=-1)
        context = (probs @ v).transpose(1, 2).flatten(2)                       # [B, T, H*D]
        return self.out(context)


class BertLayer(nn.Module):
    """Post-norm encoder layer: LN(x + attention(x)), then LN(x + FFN(x)) with GELU."""

    def __init__(self, hidden: int = 64, heads: int = 2, ffn: int = 256) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.norm1 = nn.LayerNorm(hidden)
        self.up = nn.Linear(hidden, ffn)
        self.act = nn.GELU()
        self.down = nn.Linear(ffn, hidden)
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.down(self.act(self.up(x))))


class BertEncoder(nn.Module):
    """A stack of :class:`BertLayer` (BERT's encoder without its embeddings and pooler)."""

    def __init__(self, layers: int = 2, hidden: int = 64, heads: int = 2, ffn: int = 256) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[BertLayer(hidden, heads, ffn) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GPT2Block(nn.Module):
    """Pre-norm decoder block in prefill: x + attention(LN(x)) with a causal mask over a
    fused q, k, v projection, then x + MLP(LN(x)) with GELU (tanh form, as GPT-2)."""

    def __init__(self, hidden: int = 64, heads: int = 2) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not a multiple of heads {heads}")
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.ln_1 = nn.LayerNorm(hidden)
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden)
        self.c_fc = nn.Linear(hidden, 4 * hidden)
        self.act = nn.GELU(approximate="tanh")
        self.mlp_proj = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(self.ln_1(x)).split(self.hidden, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))
        context = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(context.transpose(1, 2).flatten(2))
        return x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))


class GPT2Decoder(nn.Module):
    """A stack of :class:`GPT2Block` and the final LayerNorm (GPT-2 without embeddings)."""

    def __init__(self, layers: int = 2, hidden: int = 64, heads: int = 2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[GPT2Block(hidden, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(self.blocks(x))
