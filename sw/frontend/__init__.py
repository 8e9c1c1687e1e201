"""Front ends: a model in, a :class:`sw.ir.Graph` out.

* :mod:`sw.frontend.fx`: a ``torch.nn.Module`` traced with ``torch.fx``
  (``trace(model)``).
* :mod:`sw.frontend.onnx`: an ONNX model, float or QDQ-quantized
  (``sw.import_onnx(path)``).

Each front end keeps a table of patterns that the operator files of :mod:`sw.ops`
fill, so that a new operator brings its own patterns and a new front end brings its
own table (the ONNX one keeps its patterns in its own file). Anything no pattern matches raises
:class:`UnsupportedOpError` naming the operation and where it is in the model.
"""

from __future__ import annotations

from ..ir import Graph, Node

__all__ = ["Node", "Graph", "UnsupportedOpError", "GraphBuilder", "trace"]


class UnsupportedOpError(ValueError):
    """The model uses an operation the NPU flow does not support."""


class GraphBuilder:
    """The graph an importer builds, node by node, as its patterns match."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.aliases: dict[str, str] = {}

    def resolve(self, name: str) -> str:
        """The IR node that the importer's value ``name`` is (itself unless aliased)."""
        return self.aliases.get(name, name)

    def find(self, name: str) -> Node:
        """The IR node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    def add(self, node: Node) -> Node:
        """Append ``node`` to the graph."""
        self.nodes.append(node)
        return node

    def alias(self, name: str, to: str) -> None:
        """The importer's value ``name`` is the IR node ``to`` (an operation that disappears)."""
        self.aliases[name] = to


# After the error class: the operator files the tracer imports raise it.
from .fx import trace  # noqa: E402
