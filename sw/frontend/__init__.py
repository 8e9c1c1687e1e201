"""Front ends: a model in, a :class:`sw.ir.Graph` out.

* :mod:`sw.frontend.fx`: a ``torch.nn.Module`` traced with ``torch.fx``
  (``trace(model)``).
* :mod:`sw.frontend.export`: a ``torch.nn.Module`` that fx cannot trace (data-dependent
  control flow, Hugging Face models) exported with ``torch.export``; its aten graph is
  rewritten to the torch functions and walked through the fx patterns
  (``trace(model, example, frontend="export")``).
* :mod:`sw.frontend.onnx`: an ONNX model, float or QDQ-quantized
  (``sw.import_onnx(path)``).

Each front end keeps a table of patterns that the operator files of :mod:`sw.ops`
fill, so that a new operator brings its own patterns and a new front end brings its
own table (the ONNX one keeps its patterns in its own file). Anything no pattern matches raises
:class:`UnsupportedOpError` naming the operation and where it is in the model.
"""

from __future__ import annotations

from ..ir import Graph, Node

__all__ = ["Node", "Graph", "UnsupportedOpError", "TraceError", "GraphBuilder", "trace",
           "FRONTENDS"]

#: The front ends :func:`trace` takes for an ``nn.Module``.
FRONTENDS = ("auto", "fx", "export")


class UnsupportedOpError(ValueError):
    """The model uses an operation the NPU flow does not support."""


class TraceError(UnsupportedOpError):
    """The tracer itself could not capture the model (fx on data-dependent control flow,
    torch.export on an output it cannot flatten), before any operation was looked at."""


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


def trace(model, example=None, *, frontend: str = "auto") -> Graph:
    """Trace ``model`` (an ``nn.Module``, put in eval mode) into a :class:`sw.ir.Graph`.

    ``example``: an input batch (float, or int64 token ids for a model that starts with an
    embedding); torch.export needs one, torch.fx uses it for shape arithmetic.
    ``frontend``: ``"fx"`` (:func:`sw.frontend.fx.trace`), ``"export"``
    (:func:`sw.frontend.export.trace`), or ``"auto"``: fx, and torch.export where fx
    tracing itself fails (not where an operation is unsupported: that error stands).
    Raises ``ValueError`` for an unknown front end, :class:`TraceError` when no tracer
    captures the model (saying why each failed) and :class:`UnsupportedOpError` naming
    every unsupported operation with its module path.
    """
    from . import export
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {', '.join(map(repr, FRONTENDS))}, not "
                         f"{frontend!r}")
    if frontend == "fx":
        return fx.trace(model, example)
    if frontend == "export":
        return export.trace(model, example)
    try:
        return fx.trace(model, example)
    except TraceError as fx_error:
        if example is None:
            raise TraceError(f"{fx_error}; torch.export, the fallback, needs an example "
                             f"input") from None
        try:
            return export.trace(model, example)
        except TraceError as export_error:
            raise TraceError(f"{fx_error}\nand {export_error}") from None


# After the error classes: the operator files the tracers import raise them.
from . import fx  # noqa: E402, F401
