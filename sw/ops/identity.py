"""Modules that are the identity in eval mode (Dropout, Identity): no IR node, the
front end reads their operand in their place."""

from __future__ import annotations

import torch.nn as nn

from ..frontend import fx

__all__: list[str] = []


@fx.module(nn.Dropout, nn.Identity)
def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
    t.alias(fx_node.name, inp)
