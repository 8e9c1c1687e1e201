"""The work a float model's modules do, counted from the model as it runs.

:func:`count_modules` runs a model once with forward hooks and gives every
module its own FLOPs (a MAC is 2 FLOPs) and bytes, children excluded:

* ``nn.Conv2d``: ``out.numel() * (in_channels / groups) * kh * kw`` MACs;
* ``nn.Linear``: ``out.numel() * in_features`` MACs (any leading dimensions);
* an LLM proxy's :class:`~sw.analysis.llm.TransformerLayer`: its attention core,
  ``2 * batch * heads * tokens * context * head_dim`` MACs, and the KV cache it
  reads and writes;
* other leaves (norms, activations, pooling): no FLOPs counted, their bytes.

Bytes are the module's own parameters and its input and output activations at
their element size. These are the conventions of ``ptflops`` and ``thop`` for
convolutions and linear layers (a test compares all three on every zoo model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["ModuleWork", "count_modules", "nbytes"]


@dataclass
class ModuleWork:
    """One module's own work in a forward pass (its children excluded)."""
    name: str
    kind: str
    flops: int = 0
    bytes: int = 0               # parameters + input and output activations (+ KV cache)

    @property
    def macs(self) -> int:
        return self.flops // 2


def nbytes(values) -> int:
    """Bytes of the tensors in ``values`` (nested tuples and lists too)."""
    total = 0
    for v in values:
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
        elif isinstance(v, (tuple, list)):
            total += nbytes(v)
    return total


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))


def _own_cost(module: nn.Module, args: tuple, kwargs: dict, output) -> tuple[int, int, int]:
    """(FLOPs, bytes, KV bytes) of what ``module`` computes outside its children."""
    from .llm import TransformerLayer
    if isinstance(module, nn.Conv2d):
        macs = output.numel() * (module.in_channels // module.groups) * \
            module.kernel_size[0] * module.kernel_size[1]
        return 2 * macs, _own_params(module) + nbytes(args) + nbytes([output]), 0
    if isinstance(module, nn.Linear):
        macs = output.numel() * module.in_features
        return 2 * macs, _own_params(module) + nbytes(args) + nbytes([output]), 0
    if isinstance(module, TransformerLayer):
        # The attention core (scores, softmax, context) and the residual adds.
        cfg = module.cfg
        x = args[0]
        cache = args[1] if len(args) > 1 else kwargs.get("cache")
        pos = args[2] if len(args) > 2 else kwargs.get("pos", 0)
        bsz, t = x.shape[0], x.shape[1]
        context = pos + t
        flops = 2 * 2 * bsz * cfg.heads * t * context * cfg.head_dim
        kv = 0
        if cache is not None:
            per = cache[0].element_size() * cfg.kv_heads * cfg.head_dim * bsz
            kv = 2 * per * context                # read the cached tokens, write the new ones
        return flops, kv + 2 * nbytes([x]), kv
    if next(module.children(), None) is None:      # other leaves: norms, activations, pools
        return 0, _own_params(module) + nbytes(args) + nbytes([output]), 0
    return 0, 0, 0


def count_modules(model: nn.Module, args: tuple, record: Callable[..., ModuleWork] = ModuleWork
                  ) -> tuple[dict[nn.Module, ModuleWork], int, object]:
    """Run ``model(*args)`` once (on any device) and count every module's own FLOPs and
    bytes. Returns the records by module (built by ``record(name, kind)``), the
    KV-cache bytes read and written, and the output."""
    names = {m: (n or "model") for n, m in model.named_modules()}
    costs = {m: record(names[m], type(m).__name__) for m in names}
    kv_bytes = [0]

    def post(module, a, kw, out):
        flops, nbytes, kv = _own_cost(module, a, kw, out)
        costs[module].flops, costs[module].bytes = flops, nbytes
        kv_bytes[0] += kv

    handles = [m.register_forward_hook(post, with_kwargs=True) for m in names]
    try:
        with torch.no_grad():
            out = model(*args)
    finally:
        for h in handles:
            h.remove()
    return costs, kv_bytes[0], out


