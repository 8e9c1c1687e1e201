"""The torch.export front end: ``trace(model, example)`` to a :class:`sw.ir.Graph`, for
models that torch.fx cannot trace (data-dependent control flow, Hugging Face models).

``torch.export.export`` (non-strict) runs the model on the example and records an aten
graph; :meth:`~torch.export.ExportedProgram.run_decompositions` with an empty table
makes it functional (dropout in eval mode becomes a clone) without decomposing the ops
the table below names. That graph is then rewritten into an fx graph of the torch
functions the fx patterns know (:data:`ATEN`: ``aten.linear`` is ``F.linear``,
``aten.add.Tensor`` is ``operator.add``, ``aten.softmax`` is ``F.softmax`` ...) and
walked by :func:`sw.frontend.fx.walk`, so that one pattern, registered once for fx, serves
both front ends; the lookup happens at trace time, so an operator file that registers a
pattern for ``torch.matmul`` makes ``aten.matmul`` and ``aten.bmm`` work here too.

On the way, what depends on no input is folded into constants (position ids sliced from
a buffer, the attention mask built from ``arange`` when no mask is given, a weight's
transpose), and what is the identity is dropped: clones (as ``contiguous``), a view or
expand to the shape it already has, the addition of zeros (the attention mask when none
is given), a concatenation with an empty cache, a dtype conversion to the dtype the
tensor has, the metadata assertions export inserts. The
``view(-1, K)`` / ``addmm`` / ``view(B, T, N)`` of Hugging Face's ``Conv1D`` is one
token-shaped Linear; a view to ``[B, C * H * W]`` (the example's batch written in the
shape) is a flatten. Parameters, buffers and constants come from the exported program's
state; module paths for messages from each node's ``nn_module_stack``. An aten op
without a mapping keeps its aten name, which the walk reports, with every other
unsupported operation, in one error.
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Any, Callable

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Graph
from . import TraceError, UnsupportedOpError, fx

__all__ = ["trace", "ATEN", "IDENTITY"]

aten = torch.ops.aten


def _same(target) -> Callable:
    """A mapping to ``target`` with the aten op's own arguments."""
    return lambda args, kwargs: (target, args, kwargs)


def _first(target, n: int) -> Callable:
    """A mapping to ``target`` with the aten op's first ``n`` arguments (the rest are
    arguments the torch function does not have, such as ``half_to_float``)."""
    return lambda args, kwargs: (target, args[:n], {})


def _add(args, kwargs):
    if kwargs.get("alpha", 1) != 1:
        return aten.add.Tensor, args, kwargs        # stays unsupported, under its aten name
    return operator.add, args[:2], {}


def _hardtanh(args, kwargs):
    bounds = tuple(args[1:3]) or (kwargs.get("min_val", -1.0), kwargs.get("max_val", 1.0))
    if tuple(bounds) == (0.0, 6.0):
        return F.relu6, args[:1], {}
    return aten.hardtanh.default, args, kwargs


#: aten op (its overload packet) -> ``(args, kwargs) -> (target, args, kwargs)`` of the torch
#: function or Tensor method (a str) whose fx pattern handles it.
ATEN: dict[Any, Callable] = {
    aten.linear: _same(F.linear),
    aten.add: _add,
    aten.mul: _first(operator.mul, 2),
    aten.relu: _same(F.relu),
    aten.gelu: _same(F.gelu),
    aten.silu: _same(F.silu),
    aten.sigmoid: _same(torch.sigmoid),
    aten.tanh: _same(torch.tanh),
    aten.hardswish: _same(F.hardswish),
    aten.hardsigmoid: _same(F.hardsigmoid),
    aten.leaky_relu: _same(F.leaky_relu),
    aten.hardtanh: _hardtanh,
    aten.view: _same("view"),
    aten.reshape: _same("reshape"),
    aten._unsafe_view: _same("view"),
    aten.transpose: _same(torch.transpose),
    aten.permute: _same("permute"),
    aten.matmul: _same(torch.matmul),
    aten.bmm: _same(torch.matmul),
    aten.mm: _same(torch.matmul),
    aten.softmax: _first(F.softmax, 2),
    aten._softmax: _first(F.softmax, 2),
    aten.layer_norm: _first(F.layer_norm, 5),
    aten.native_layer_norm: _first(F.layer_norm, 5),
    aten.scaled_dot_product_attention: _same(F.scaled_dot_product_attention),
    aten.embedding: lambda args, kwargs: (F.embedding, (args[1], args[0]), {}),
    aten.cat: _same(torch.cat),
    aten.flatten: _same(torch.flatten),
    aten.mean: _same(torch.mean),
    aten.adaptive_avg_pool2d: _same(F.adaptive_avg_pool2d),
    aten.conv2d: _same(F.conv2d),
    aten._native_batch_norm_legit_no_training: lambda args, kwargs: (
        F.batch_norm, (args[0], args[3], args[4], args[1], args[2], False, *args[5:7]), {}),
    aten.max_pool2d: _same(F.max_pool2d),
    aten.max_pool2d_with_indices: _same(F.max_pool2d),
    aten.avg_pool2d: _same(F.avg_pool2d),
    aten.split: _same(torch.split),
    aten.chunk: _same(torch.chunk),
    # A copy: the identity for the patterns ("contiguous" aliases its operand), a copy in
    # the fx graph (a view after a transpose needs its operand contiguous).
    aten.clone: _first("contiguous", 1),
    aten.contiguous: _first("contiguous", 1),
}

#: aten ops that are the identity on their first operand (in eval mode, after
#: functionalization)
IDENTITY = {aten.alias, aten.detach, aten.dropout, aten.lift_fresh_copy}

#: aten ops that return a tuple whose first element is what the mapped torch function
#: returns (``native_layer_norm`` also returns its mean and rstd)
_TUPLE_FIRST = {aten.native_layer_norm, aten._native_batch_norm_legit_no_training,
                aten.max_pool2d_with_indices}

#: aten ops export inserts that compute nothing (checks of the example's metadata)
_CHECKS = {aten._assert_tensor_metadata, aten._assert_scalar, aten.sym_constrain_range,
           aten.sym_constrain_range_for_size}

#: aten ops that are element-wise on one tensor (with scalar constants): a model's own
#: module made only of these on one input is one table (:class:`sw.ops.table.Elementwise`)
_ELEMENTWISE = {aten.mul, aten.add, aten.sub, aten.rsub, aten.div, aten.pow, aten.tanh,
                aten.sigmoid, aten.exp, aten.erf, aten.neg, aten.sqrt, aten.rsqrt, aten.abs,
                aten.clamp, aten.relu, aten.gelu, aten.silu, aten.reciprocal, aten.log1p}

#: aten ops that give their operand another shape; the same shape is the identity
_SHAPES = {aten.view, aten.reshape, aten._unsafe_view, aten.expand}


class _Outputs(nn.Module):
    """The model with its output flattened to its tensors: torch.export refuses outputs
    it cannot flatten (a Hugging Face ``DynamicCache``), and the graph has tensor
    outputs only; ``None`` and cache objects are left out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(_tensors(self.model(x)))


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):               # a Hugging Face ModelOutput is an ordered dict
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensors(v)]
    return []


def trace(model: nn.Module, example: torch.Tensor) -> Graph:
    """Export ``model`` (put in eval mode) on ``example`` (an input batch) and build its
    :class:`sw.ir.Graph` through the fx patterns.

    Raises ``TypeError`` for something that is not an ``nn.Module`` or an example that
    is not a tensor, :class:`sw.frontend.TraceError` when torch.export cannot capture
    the model (its reason), and :class:`sw.UnsupportedOpError` naming every operation
    no pattern supports, each with its module path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace expects a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"torch.export needs an example input tensor, not "
                        f"{type(example).__name__}")
    model = model.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(_Outputs(model), (example,), strict=False)
            ep = ep.run_decompositions({})
    except Exception as exc:  # noqa: BLE001 - export raises many types; the reason is kept
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"torch.export could not export the model: {first}") from None
    gm, values = _Rewriter(ep, _input_name(model), model).run(example)
    return fx.walk(gm, values)


def _input_name(model: nn.Module) -> str:
    """The name of the first parameter of ``model.forward`` (``input_ids``), which the
    graph's input takes (rather than the wrapper's)."""
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        params = []
    return params[0] if params and params[0].isidentifier() else "x"


class _Const:
    """A constant the rewriter made (a weight's transpose), as an operand."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Rewriter:
    """The exported aten graph as an fx graph module of torch calls (see the module doc)."""

    def __init__(self, ep: torch.export.ExportedProgram, input_name: str,
                 model: nn.Module) -> None:
        self.ep = ep
        self.input_name = input_name
        self.model = model
        self.fused: dict[str, Any] = {}         # aten node name -> its element-wise module
        self.graph = torch.fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, Any] = {}          # aten node name -> new fx node
        self.consts: dict[str, Any] = {}       # aten node name -> its constant value
        self.merged: dict[str, tuple] = {}     # view(x, [-1, K]) -> (x, leading shape)
        self.restored: set[str] = set()        # the views back to [B, T, N] after a Linear

    # ---------------------------------------------------------------- values
    def _val(self, arg):
        """``arg`` with aten nodes replaced by their new nodes or constants."""
        if isinstance(arg, _Const):
            return self._const_node(arg.name)
        if isinstance(arg, torch.fx.Node):
            if arg.name in self.consts:
                return self._const_node(arg.name)
            return self.env[arg.name]
        if isinstance(arg, (tuple, list)):
            return type(arg)(self._val(a) for a in arg)
        return arg

    def _is_const(self, arg) -> bool:
        if isinstance(arg, _Const):
            return True
        if isinstance(arg, torch.fx.Node):
            return arg.name in self.consts
        if isinstance(arg, (tuple, list)):
            return all(self._is_const(a) for a in arg)
        return True

    def _const_value(self, arg):
        if isinstance(arg, torch.fx.Node):
            return self.consts[arg.name]
        if isinstance(arg, (tuple, list)):
            return type(arg)(self._const_value(a) for a in arg)
        return arg

    def _const_node(self, name: str):
        """The ``get_attr`` node of constant ``name`` (made on its first use)."""
        key = f"const::{name}"
        if key not in self.env:
            value = self.consts[name]
            attr = f"_c{len(self.root._buffers)}"
            if isinstance(value, torch.Tensor):
                self.root.register_buffer(attr, value.detach())
                node = self.graph.create_node("get_attr", attr, name=name)
                node.meta["folded"] = True     # read by whatever pattern uses it (fx.walk)
                self.env[key] = node
            else:
                self.env[key] = value
        return self.env[key]

    @staticmethod
    def _shape(node) -> tuple[int, ...] | None:
        val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        return tuple(val.shape) if isinstance(val, torch.Tensor) else None

    # ---------------------------------------------------------------- the walk
    def run(self, example: torch.Tensor) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
        sig = self.ep.graph_signature
        state = {**self.ep.state_dict, **self.ep.constants}
        lifted = {s.arg.name: s.target for s in sig.input_specs
                  if s.kind != torch.export.graph_signature.InputKind.USER_INPUT}
        out_node = None
        for n in self.ep.graph.nodes:
            if n.op == "placeholder" and n.name in lifted:
                self.consts[n.name] = state[lifted[n.name]]
        self._find_elementwise()
        for n in self.ep.graph.nodes:
            if n.op == "placeholder":
                if n.name in lifted:
                    self.consts[n.name] = state[lifted[n.name]]
                else:
                    self.env[n.name] = self._copy_meta(self.graph.placeholder(self.input_name), n)
            elif n.op == "call_function":
                self._call(n)
            elif n.op == "output":
                out_node = n
        outs = [a for a in out_node.args[0]]
        if any(self._is_const(a) for a in outs):
            raise UnsupportedOpError("the model has an output that depends on no input")
        vals = [self._val(a) for a in outs]
        self.graph.output(vals[0] if len(vals) == 1 else tuple(vals))
        self._name_leaf_calls()
        gm = torch.fx.GraphModule(self.root, self.graph)
        recorder = fx._Recorder(gm)
        try:
            with torch.no_grad():
                recorder.run(example)
        except Exception as exc:  # noqa: BLE001 - a rewrite this front end got wrong
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TraceError(f"torch.export: the graph rewritten from its aten ops does not run "
                             f"on the example ({first}); please report the model") from None
        return gm, recorder.values

    def _find_elementwise(self) -> None:
        """The model's own leaf modules whose calls are several element-wise aten ops of
        one input with scalar constants (``NewGELUActivation``): each call becomes one
        :class:`sw.ops.table.Elementwise` of the module (``fused``: its nodes)."""
        from ..ops.table import Elementwise
        groups: dict[str, list] = {}
        for n in self.ep.graph.nodes:
            stack = n.meta.get("nn_module_stack") if n.op == "call_function" else None
            if stack:
                groups.setdefault(list(stack.values())[-1][0], []).append(n)
        for path, nodes in groups.items():
            if len(nodes) < 2 or not path.startswith("model."):
                continue
            try:
                module = self.model.get_submodule(path.removeprefix("model."))
            except AttributeError:
                continue
            if any(True for _ in module.children()) or \
                    type(module).__module__.startswith("torch.nn"):
                continue
            inside = set(nodes)
            outside_in = {a for n in nodes for a in n.all_input_nodes
                          if a not in inside and not self._is_const(a)}
            outputs = [n for n in nodes if any(u not in inside for u in n.users)]
            scalars = all(not isinstance(a, torch.fx.Node) or a in inside or a in outside_in
                          for n in nodes for a in n.args)
            if len(outside_in) != 1 or len(outputs) != 1 or not scalars or not all(
                    getattr(n.target, "overloadpacket", None) in _ELEMENTWISE for n in nodes):
                continue
            (x,) = outside_in
            for n in nodes:
                self.fused[n.name] = None
            self.fused[outputs[0].name] = (x, Elementwise(module))

    def _name_leaf_calls(self) -> None:
        """The calls of a module that holds no other are named by the module's path alone
        (``encoder.layer.0.intermediate.dense``), as the fx front end names a module call:
        a module's only call, or each call of a PyTorch module (a ReLU used twice)."""
        calls = [n for n in self.graph.nodes if n.op in ("call_function", "call_method")]
        count: dict[str, int] = {}
        for n in calls:
            for path in n.meta.get("nn_module_stack", {}):
                count[path] = count.get(path, 0) + 1
        inner = {list(n.meta["nn_module_stack"])[-1] for n in calls if n.meta["nn_module_stack"]}
        outer = {p for n in calls for p in list(n.meta["nn_module_stack"])[:-1]}
        for n in calls:
            stack = n.meta["nn_module_stack"]
            if not stack:
                continue
            path, (_, cls) = list(stack.items())[-1]
            builtin = isinstance(cls, str) and cls.startswith("torch.nn.modules.")
            if path in inner and path not in outer and (count[path] == 1 or builtin):
                n.meta["module_path"] = path

    def _copy_meta(self, new, old):
        stack = old.meta.get("nn_module_stack") or {}
        # The wrapper (_Outputs) holds the model as "model": its paths are the model's.
        paths = {}
        for path, cls in stack.values():
            path = path.removeprefix("model.") if path != "model" else ""
            if path:
                paths[path] = (path, cls)
        new.meta["nn_module_stack"] = paths
        return new

    def _emit(self, n, target, args, kwargs):
        args, kwargs = self._val(tuple(args)), self._val(dict(kwargs))
        kind = "call_method" if isinstance(target, str) else "call_function"
        new = self.graph.create_node(kind, target, args, kwargs, name=n.name)
        self.env[n.name] = self._copy_meta(new, n)
        return new

    def _alias(self, n, src) -> None:
        if isinstance(src, torch.fx.Node) and src.name in self.consts:
            self.consts[n.name] = self.consts[src.name]
        else:
            self.env[n.name] = self._val(src)

    def _call(self, n) -> None:
        if n.name in self.fused:
            if self.fused[n.name] is not None:     # the call's output: the whole module
                x, module = self.fused[n.name]
                attr = f"_fn{len(self.root._modules)}"
                self.root.add_module(attr, module)
                new = self.graph.create_node("call_module", attr, (self._val(x),), {},
                                             name=n.name)
                self.env[n.name] = self._copy_meta(new, n)
                new.meta["module_path"] = list(new.meta["nn_module_stack"])[-1]
            return
        target, args, kwargs = n.target, list(n.args), dict(n.kwargs)
        packet = getattr(target, "overloadpacket", None)
        if packet in _CHECKS:
            return
        if self._is_const(args) and self._is_const(list(kwargs.values())):
            # Depends on no input: compute it now (position ids, masks, a weight's transpose).
            with torch.no_grad():
                self.consts[n.name] = target(*self._const_value(args),
                                             **{k: self._const_value(v) for k, v in kwargs.items()})
            return
        if n.name in self.restored:
            self._alias(n, args[0])
            return
        if target is operator.getitem and args[0].name in self.env and \
                getattr(args[0].target, "overloadpacket", None) in _TUPLE_FIRST:
            if args[1] != 0:
                raise UnsupportedOpError(f"{args[0].target} at {n.name}: only its first output "
                                         f"is supported")
            self.env[n.name] = self.env[args[0].name]
            return
        if packet in IDENTITY or (packet is aten._to_copy and self._same_dtype(n)):
            self._alias(n, args[0])
            return
        if packet in _SHAPES and self._shape(n) == self._shape(args[0]):
            self._alias(n, args[0])
            return
        if packet is aten.add and self._adds_zero(n):
            return
        if packet is aten.cat:
            kept = [a for a in args[0] if not (self._is_const(a) and
                                               self._const_value(a).numel() == 0)]
            if len(kept) == 1:
                self._alias(n, kept[0])
                return
            args[0] = kept
        if packet in (aten.view, aten._unsafe_view, aten.reshape):
            if self._merges_rows(n):
                return
            shape, src = self._shape(n), self._shape(args[0])
            if shape is not None and src is not None and len(src) >= 3 and \
                    shape == (src[0], math.prod(src[1:])):
                # x.view(x.size(0), -1) with the example's batch in the shape: a flatten.
                self._emit(n, torch.flatten, [args[0], 1], {})
                return
        if packet in (aten.addmm, aten.mm) and self._gemm(n, packet):
            return
        mapping = ATEN.get(packet)
        if mapping is None:
            self._emit(n, target, args, kwargs)     # reported as unsupported by the walk
            return
        new_target, new_args, new_kwargs = mapping(tuple(args), kwargs)
        self._emit(n, new_target, new_args, new_kwargs)

    def _adds_zero(self, n) -> bool:
        """``x + 0`` by a constant of zeros (the attention mask when none is given) as ``x``."""
        for i, j in ((0, 1), (1, 0)):
            x, c = n.args[i], n.args[j]
            if self._is_const(c) and not self._is_const(x) and self._shape(n) == self._shape(x):
                value = self._const_value(c)
                if (isinstance(value, torch.Tensor) and not bool(value.any())) or \
                        (isinstance(value, (int, float)) and value == 0):
                    self._alias(n, x)
                    return True
        return False

    def _same_dtype(self, n) -> bool:
        val, src = n.meta.get("val"), n.args[0].meta.get("val")
        return isinstance(val, torch.Tensor) and isinstance(src, torch.Tensor) and \
            val.dtype == src.dtype

    # ------------------------------------------------------------ Conv1D: view, addmm, view
    def _merges_rows(self, n) -> bool:
        """``view(x, [-1, K])`` of a token-shaped ``x`` [B, T, K] read only by matrix
        products with constant weights: remembered, not emitted (the product becomes a
        Linear on ``x`` itself)."""
        shape, src = self._shape(n), self._shape(n.args[0])
        if shape is None or src is None or len(shape) != 2 or len(src) < 3 or \
                shape != (math.prod(src[:-1]), src[-1]):
            return False
        if not n.users or not all(getattr(u.target, "overloadpacket", None) in (aten.addmm, aten.mm)
                                  and u.args[-2] is n and self._is_const(u.args[-1])
                                  for u in n.users):
            return False
        self.merged[n.name] = (n.args[0], src[:-1], n)
        return True

    def _gemm(self, n, packet) -> bool:
        """``addmm(bias, a, W)`` or ``mm(a, W)`` with a constant ``W`` [K, N] as
        ``F.linear(a, W.T, bias)``; on rows merged by :meth:`_merges_rows`, on ``x``
        itself, its output the [B, T, N] that the view after it restores."""
        bias, a, w = (n.args if packet is aten.addmm else (None, *n.args))
        if not self._is_const(w) or (bias is not None and not self._is_const(bias)) or \
                n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
            if a.name in self.merged:            # the rows' view is needed after all
                x, _, view = self.merged.pop(a.name)
                self._emit(view, view.target, view.args, view.kwargs)
            return False
        weight = self._const_value(w).t().contiguous()
        self.consts[f"{n.name}_weight"] = weight
        operands = [_Const(f"{n.name}_weight")] + ([] if bias is None else [bias])
        if a.name in self.merged:
            x, lead, view = self.merged[a.name]
            restore = lead + (weight.shape[0],)
            if not all(getattr(u.target, "overloadpacket", None) in _SHAPES and
                       self._shape(u) == restore for u in n.users):
                # Rows of several samples leave the product: the view stays, and the walk
                # names it (a view to [B * T, K] is not supported).
                del self.merged[a.name]
                self._emit(view, view.target, view.args, view.kwargs)
                self._emit(n, F.linear, [a, *operands], {})
                return True
            self._emit(n, F.linear, [x, *operands], {})
            self.restored |= {u.name for u in n.users}
            return True
        self._emit(n, F.linear, [a, *operands], {})
        return True
