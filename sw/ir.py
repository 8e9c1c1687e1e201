"""The graph IR that every front end produces and the quantizer and the compiler read.

A :class:`Graph` is a list of :class:`Node` in topological order, with the names of
its outputs; its inputs are the nodes of op ``input``. A node names its operator
(a key of the op table, :mod:`sw.ops`), its operands by the names of the nodes that
produce them, and carries the operator's attributes as that operator's own frozen
dataclass (``sw.ops.conv.Conv`` for a convolution, ``None`` for an operator without
attributes). After quantization every node becomes a :class:`QNode`: the same
structure plus the output's :class:`QParams`, its shape, its output clamp and the
operator's integer attributes (again a dataclass of the operator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import golden

__all__ = ["QParams", "Node", "QNode", "Graph"]


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization of an int8 tensor: ``real = (q - zero_point) * scale``."""
    scale: float
    zero_point: int

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Float to int8 (:func:`sw.golden.quantize`)."""
        return golden.quantize(x, self.scale, self.zero_point)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """int8 to float (:func:`sw.golden.dequantize`)."""
        return golden.dequantize(q, self.scale, self.zero_point)


@dataclass
class Node:
    """One operation of a float graph."""
    name: str
    op: str                       #: a key of the op table (sw.ops.REGISTRY)
    inputs: list[str]             #: names of the nodes whose outputs are the operands
    attrs: Any = None             #: the operator's attribute dataclass, or None
    act: str | None = None        #: fused activation on the output: None, "relu" or "relu6"
    where: str = ""               #: module path or code location, for messages


@dataclass
class QNode:
    """A quantized node: the integer parameters the golden and the compiler share."""
    name: str
    op: str
    inputs: list[str]
    out: QParams                  #: quantization of the output
    shape: tuple[int, ...]        #: output shape of one sample (C, H, W) or (F,)
    attrs: Any                    #: the operator's integer attribute dataclass, or None
    act: str | None
    where: str
    clamp: tuple[int, int] = (-128, 127)   #: output range (a fused activation narrows it)


@dataclass
class Graph:
    """Nodes in topological order and the names of the graph's outputs."""
    nodes: list[Node]
    outputs: list[str]

    def __post_init__(self) -> None:
        if isinstance(self.outputs, str):
            raise TypeError("Graph outputs must be a list of node names, not a string")
        self.validate()

    @property
    def inputs(self) -> list[str]:
        """Names of the input nodes, in order."""
        return [n.name for n in self.nodes if n.op == "input"]

    @property
    def output(self) -> str:
        """The name of the one output; ``ValueError`` when the graph has several."""
        if len(self.outputs) != 1:
            raise ValueError(f"the graph has {len(self.outputs)} outputs ({', '.join(self.outputs)}); "
                             f"one is expected here")
        return self.outputs[0]

    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def users(self, name: str) -> list[Node]:
        """The nodes that read the output of ``name``."""
        return [n for n in self.nodes if name in n.inputs]

    def replace_output(self, old: str, new: str) -> None:
        """Make every output that is ``old`` be ``new``."""
        self.outputs = [new if o == old else o for o in self.outputs]

    def validate(self) -> None:
        """Check the structure: unique names, operands defined before use, outputs defined.

        Raises ``ValueError`` naming the first problem.
        """
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"graph: node name {n.name!r} is used twice")
            for i in n.inputs:
                if i not in seen:
                    raise ValueError(f"graph: node {n.name!r} reads {i!r}, which is not defined before it")
            if n.op == "input" and n.inputs:
                raise ValueError(f"graph: input node {n.name!r} has operands")
            seen.add(n.name)
        for o in self.outputs:
            if o not in seen:
                raise ValueError(f"graph: output {o!r} is not a node")
