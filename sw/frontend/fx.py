"""The torch.fx front end: ``trace(model)`` to a :class:`sw.ir.Graph`.

``torch.fx.symbolic_trace`` gives a graph of placeholders, module calls, function
and method calls and one output. Each call is matched against the pattern tables
:data:`MODULES` (by module class) and :data:`FUNCTIONS` (by function or method name),
which the operator files of :mod:`sw.ops` fill with the :func:`module` and
:func:`function` decorators; a pattern adds IR nodes, aliases its output to an
operand, or rewrites an earlier node (BatchNorm folds into its convolution). After the
walk, ReLU/ReLU6 fuse into the node that produces their operand
(:func:`sw.ops.activation.fuse_activations`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx
import torch.nn as nn

from ..ir import Graph, Node
from . import GraphBuilder, TraceError, UnsupportedOpError

__all__ = ["trace", "walk", "Tracer", "module", "function", "MODULES", "FUNCTIONS", "pair"]

#: module class -> pattern(tracer, fx_node, module, operand name, where)
MODULES: dict[type, Callable[..., None]] = {}
#: function, or method name -> pattern(tracer, fx_node)
FUNCTIONS: dict[Any, Callable[..., None]] = {}
#: functions whose patterns read their parameter operands as constants (``function(constants=True)``)
CONSTANT_OPERANDS: set = set()
#: how the patterns of MODULES are named in messages, in order of registration
_MODULE_LABELS: list[str] = []


def module(*classes: type, label: str | None = None):
    """Decorator: the pattern for calls of modules of ``classes`` (and their subclasses).

    ``label`` names the classes in the list of supported modules (default: their names).
    """
    def deco(fn):
        for cls in classes:
            if cls in MODULES:
                raise ValueError(f"fx: a pattern for {cls.__name__} is already registered")
            MODULES[cls] = fn
        _MODULE_LABELS.append(label or ", ".join(cls.__name__ for cls in classes))
        return fn
    return deco


def function(*targets, constants: bool = False):
    """Decorator: the pattern for calls of ``targets`` (functions, or method names as str).

    ``constants``: the pattern reads parameter operands (``self.weight``) as constants
    (:meth:`Tracer.constant`), so their ``get_attr`` nodes add nothing.
    """
    def deco(fn):
        for t in targets:
            if t in FUNCTIONS:
                raise ValueError(f"fx: a pattern for {t!r} is already registered")
            FUNCTIONS[t] = fn
            if constants:
                CONSTANT_OPERANDS.add(t)
        return fn
    return deco


def pair(v) -> tuple[int, int]:
    """An int or a pair of ints as a pair."""
    return (v, v) if isinstance(v, int) else tuple(v)


class Tracer(GraphBuilder):
    """The state of one trace, handed to the patterns.

    ``values``: what each fx node computed on the example input (empty without one);
    ``pending``: layout views in progress (a channel shuffle's grouped view, a chunk's
    parts), which the patterns of :mod:`sw.ops.layout` turn into nodes.
    """

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.values = values or {}
        self.pending: dict[str, tuple] = {}
        #: fx node name -> the tensor of a ``get_attr`` node (a parameter, a buffer, or a
        #: constant the export front end folded), read by the patterns through :meth:`constant`
        #: (those of ``function(constants=True)``; the export front end's constants by any)
        self.constants: dict[str, torch.Tensor] = {}
        #: the fx node whose pattern runs (for messages)
        self.node = None

    def constant(self, arg) -> torch.Tensor | None:
        """The tensor of an fx operand that is a constant (a ``get_attr`` node), else None."""
        if isinstance(arg, torch.fx.Node):
            return self.constants.get(arg.name)
        return None

    def const(self, arg):
        """``arg`` itself, or for an fx node that computed a shape or a number on the
        example input (``x.size(1) // groups``), that value."""
        if isinstance(arg, torch.fx.Node) and arg.name in self.values and \
                _is_constant(self.values[arg.name]):
            return self.values[arg.name]
        if isinstance(arg, (tuple, list)):
            return type(arg)(self.const(a) for a in arg)
        return arg

    def where(self, fx_node) -> str:
        """Where ``fx_node`` is in the model, as nodes record it: a module call's path
        (``layer1.0.conv1``); for a function or method call, the path of the module whose
        ``forward`` makes it (fx's ``nn_module_stack``) and the call's name
        (``features.denseblock1.cat_1``; ``cat_1`` at the top level)."""
        if "module_path" in fx_node.meta:      # the export front end: a leaf module's call
            return fx_node.meta["module_path"]
        if fx_node.op == "call_module":
            return str(fx_node.target)
        stack = fx_node.meta.get("nn_module_stack") or {}
        return f"{list(stack)[-1]}.{fx_node.name}" if stack else fx_node.name

    def place(self, fx_node) -> str:
        """:meth:`where`, for messages: a function or method call also names the class
        whose ``forward`` makes it (``features.denseblock1.cat_1 (in _DenseBlock)``)."""
        if fx_node.op == "call_module":
            return repr(self.where(fx_node))
        stack = fx_node.meta.get("nn_module_stack") or {}
        cls = list(stack.values())[-1][1] if stack else None
        if isinstance(cls, str):        # torch.export records the class by its qualified name
            owner = cls.rsplit(".", 1)[-1]
        else:
            owner = getattr(cls, "__name__", "the model") if cls else "the model's forward"
        return f"{self.where(fx_node)} (in {owner})"

    def src(self, arg) -> str:
        """The IR name of an fx operand; constants are not supported."""
        if not isinstance(arg, torch.fx.Node):
            raise UnsupportedOpError(f"constant operand {arg!r} is not supported")
        if arg.name in self.constants:
            shape = list(self.constants[arg.name].shape)
            where = f" of {self.place(self.node)}" if self.node is not None else ""
            raise UnsupportedOpError(f"constant tensor operand {arg.name} {shape}{where} is not "
                                     f"supported")
        return self.resolve(arg.name)


def _is_constant(value) -> bool:
    """Whether an fx node's value on the example input is a shape or a number (folded
    into the patterns that read it) rather than a tensor."""
    if isinstance(value, torch.Tensor):
        return False
    if isinstance(value, (tuple, list)):
        return all(_is_constant(v) for v in value)
    return isinstance(value, (int, float, bool, torch.Size)) or value is None


class _Recorder(torch.fx.Interpreter):
    """Runs the traced module on the example input, keeping every node's value."""

    def __init__(self, gm) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n):
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def trace(model: nn.Module, example: torch.Tensor | None = None) -> Graph:
    """Trace ``model`` (put in eval mode) into a :class:`sw.ir.Graph`.

    ``example``: an input batch; with it, shape arithmetic (``x.size()``, ``c // groups``)
    is evaluated and the layout patterns that need shapes (channel shuffle, chunk) work.
    Raises ``TypeError`` for something that is not an ``nn.Module`` and
    :class:`sw.UnsupportedOpError` naming every operation no pattern supports, each with
    where it is in the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace expects a torch.nn.Module, not {type(model).__name__}")
    model = model.eval()
    if type(model) in MODULES:
        # A lone layer given as the model: trace it as the one call of a container, as fx
        # would otherwise trace into its forward (its parameters as get_attr nodes).
        model = _Whole(model)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for data-dependent control flow
        raise TraceError(f"torch.fx could not trace the model: {exc}") from None
    values: dict[str, Any] = {}
    if example is not None:
        recorder = _Recorder(gm)
        try:
            with torch.no_grad():
                recorder.run(example)
            values = recorder.values
        except Exception:  # noqa: BLE001 - the model's own error on this input
            # The shapes stay unknown: the patterns that need them say so; the error
            # itself shows when the quantizer runs the model. The input's dtype is known.
            values = {n.name: example for n in gm.graph.nodes if n.op == "placeholder"}
    return walk(gm, values)


def walk(gm: torch.fx.GraphModule, values: dict[str, Any]) -> Graph:
    """The graph of fx graph module ``gm`` through the pattern tables; ``values``: what
    each fx node computed on the example input (empty without one). The torch.export
    front end (:mod:`sw.frontend.export`) walks its aten graph, rewritten to the torch
    functions, through here too. Raises :class:`sw.UnsupportedOpError` naming every
    operation no pattern supports."""
    modules = dict(gm.named_modules())
    # The operator files fill the pattern tables when the op table is imported; they import
    # this module for its decorators, so the import is here rather than at the top.
    from ..ops.activation import fuse_activations
    t = Tracer(values)
    for fx_node in gm.graph.nodes:
        if fx_node.op == "get_attr":
            t.constants[fx_node.name] = _fetch(gm, fx_node.target)
    out_name = None
    problems: list[str] = []
    for fx_node in gm.graph.nodes:
        t.node = fx_node
        try:
            if fx_node.op == "output":
                out = fx_node.args[0]
                if isinstance(out, (tuple, list)) and len(out) != 1:
                    raise UnsupportedOpError(f"the model returns {len(out)} tensors; one output "
                                             f"is supported")
                out_name = t.src(out[0] if isinstance(out, (tuple, list)) else out)
            else:
                _add_node(t, fx_node, modules)
        except UnsupportedOpError as exc:
            # Name every problem at once: the node stands in as a placeholder so that the
            # nodes after it are still looked at.
            problems.append(str(exc))
            known = fx_node.name in t.aliases or any(n.name == fx_node.name for n in t.nodes)
            if fx_node.op != "output" and not known:
                t.add(Node(fx_node.name, "unsupported", [], where=str(fx_node.target)))
    if len(problems) == 1:
        raise UnsupportedOpError(problems[0])
    if problems:
        raise UnsupportedOpError(f"the model uses {len(problems)} unsupported operations:\n"
                                 + "\n".join(f"  - {p}" for p in problems))
    if out_name is None:
        raise UnsupportedOpError("the model has no output")
    graph = Graph(t.nodes, [out_name])
    fuse_activations(graph)
    return graph


def _fetch(gm: torch.nn.Module, target: str):
    """The attribute ``target`` (a dotted path) of ``gm``, as a ``get_attr`` node reads it."""
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value.detach() if isinstance(value, torch.Tensor) else value


def _add_node(t: Tracer, fx_node, modules: dict) -> None:
    """Add one fx node to the graph through its pattern; UnsupportedOpError if none fits."""
    name = fx_node.name
    if fx_node.op == "get_attr" and (fx_node.meta.get("folded") or fx_node.users and all(
            u.target in CONSTANT_OPERANDS for u in fx_node.users)):
        # A parameter read as a constant by the patterns using it, or a constant the export
        # front end made (Tracer.constant reads it; a pattern that cannot says so).
        return
    if fx_node.op == "placeholder":
        if any(n.op == "input" for n in t.nodes):
            raise UnsupportedOpError(f"model has more than one input ({name}); one is supported")
        # Token ids (an int64 example) stay integers: the embedding reads them.
        ids = getattr(t.values.get(name), "dtype", None) == torch.int64
        t.add(Node(name, "input", [], "int64" if ids else None, where=name))
    elif fx_node.op == "call_module":
        mod = modules[fx_node.target]
        inp = t.src(fx_node.args[0])
        pattern = next((MODULES[c] for c in type(mod).__mro__ if c in MODULES), None)
        if pattern is None:
            raise UnsupportedOpError(
                f"unsupported module {type(mod).__name__} at {t.where(fx_node)!r}; supported: "
                f"{', '.join(_MODULE_LABELS)}")
        pattern(t, fx_node, mod, inp, t.where(fx_node))
    elif fx_node.op in ("call_function", "call_method"):
        target = fx_node.target
        tname = str(target) if isinstance(target, torch._ops.OpOverload) else \
            getattr(target, "__name__", str(target))
        if name in t.values and _is_constant(t.values[name]):
            return                  # shape arithmetic, folded into the patterns that read it
        if target in ("size", getattr):
            raise UnsupportedOpError(
                f"{tname} at {t.place(fx_node)}: shape arithmetic needs an example input "
                f"(sw.quantize traces with one)")
        pattern = FUNCTIONS.get(target)
        if pattern is None:
            raise UnsupportedOpError(f"unsupported operation {tname!r} at {t.place(fx_node)}")
        pattern(t, fx_node)
    else:
        raise UnsupportedOpError(
            f"unsupported node {fx_node.op} {fx_node.target} at {t.place(fx_node)}")


class _Whole(nn.Module):
    """A lone layer (``nn.Conv2d(...)`` as the whole model) as a container's one call."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.add_module(type(layer).__name__.lower(), layer)
        self.name = type(layer).__name__.lower()

    def forward(self, x):
        return getattr(self, self.name)(x)
