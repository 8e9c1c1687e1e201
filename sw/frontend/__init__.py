"""Front ends: a model in, a :class:`sw.ir.Graph` out.

* :mod:`sw.frontend.fx`: a ``torch.nn.Module`` traced with ``torch.fx``
  (``trace(model)``).

Each front end keeps a table of patterns that the operator files of :mod:`sw.ops`
fill, so that a new operator brings its own patterns and a new front end (ONNX)
brings its own table. Anything no pattern matches raises
:class:`UnsupportedOpError` naming the operation and where it is in the model.
"""

from __future__ import annotations

from ..ir import Graph, Node

__all__ = ["Node", "Graph", "UnsupportedOpError", "trace"]


class UnsupportedOpError(ValueError):
    """The model uses an operation the NPU flow does not support."""


# After the error class: the operator files the tracer imports raise it.
from .fx import trace  # noqa: E402
