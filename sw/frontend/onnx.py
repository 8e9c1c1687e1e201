"""The ONNX front end: ``import_onnx(path)`` to a :class:`sw.ir.Graph`.

The graph is the one the torch.fx front end (:mod:`sw.frontend.fx`) produces for the
same model: the same operators of the op table (:mod:`sw.ops`), the same attribute
dataclasses, BatchNormalization folded into the convolution it follows and ReLU/ReLU6
fused into their producer, so ``sw.quantize`` and ``sw.compile`` take it as they take an
``nn.Module``. Each ONNX node is matched against :data:`PATTERNS` (by ``op_type``);
every node no pattern supports is named, with its node name, in one
:class:`sw.UnsupportedOpError`.

Two kinds of models:

* **float** models: the graph carries float weights and is calibrated by
  ``sw.quantize(graph, calibration)`` as a PyTorch model is.
* **QDQ** models (``QuantizeLinear``/``DequantizeLinear`` pairs, as onnxruntime's
  ``quantize_static(..., quant_format=QuantFormat.QDQ)`` writes them): the pairs
  disappear from the graph and their scales and zero points are kept
  (:class:`OnnxGraph` ``given``, ``weights``). ``sw.quantize`` then uses them as given
  (calibration is optional): activations per tensor (uint8 ``q`` is the int8 ``q - 128``
  with zero point ``zp - 128``: the same real values), weights int8 symmetric per output
  channel or per tensor (a per-tensor scale is every channel's), bias int32 at
  ``s_in * s_w``. What the NPU's scheme cannot represent (asymmetric weights, 16- or
  4-bit types, per-axis activation scales) is a ``ValueError`` naming the tensor.
  Where the QDQ model gives an operator that keeps its input's quantization on the NPU
  (global average pooling, max pooling) an output quantization of its own, a
  requantization follows it (a one-operand ``cat``, TFLite's integer rounding). A matmul
  of two activations takes symmetric operands: an operand the model gives a zero point
  is quantized symmetric over the same range instead (:meth:`OnnxGraph.context`).
  docs/user-guide.md ("ONNX models") gives the measured agreement with onnxruntime.

Transformers (as ``torch.onnx.export`` writes attention) become the nodes the fx front
end makes for them (:mod:`sw.ops.attention`): MatMul of two activations a ``matmul`` with
attention's scaling folded into its factor, head Reshape/Transpose/Split ``view`` nodes
(a ``copy`` where no view exists), Softmax (causal where the exporter's lower-triangular
mask is added), LayerNormalization or its decomposition, GELU's erf and tanh formulas.
Patterns of several nodes whose middle would match other patterns (tanh-GELU, the
LayerNorm decomposition) are found before the walk (:func:`_match_tanh_gelu`,
:func:`_match_layernorm`).

``onnx`` is imported only when a model is imported, so ``import sw`` stays fast.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from ..ir import Graph, Node, QNode, QParams
from ..ops.base import QuantContext
from . import GraphBuilder, UnsupportedOpError

__all__ = ["import_onnx", "OnnxGraph", "GivenWeights", "PATTERNS", "pattern"]


@dataclass(frozen=True)
class GivenWeights:
    """A QDQ model's weights of one convolution or linear layer, as given: ``w_q`` int8
    (zero point 0), ``scale`` per output channel (float64), ``bias_q`` int32 at
    ``bias_scale`` (None: quantized from the float bias; so is a bias whose scale is
    not ``s_in * scale``)."""
    w_q: torch.Tensor
    scale: torch.Tensor
    bias_q: torch.Tensor | None = None
    bias_scale: torch.Tensor | None = None


@dataclass
class OnnxGraph(Graph):
    """A :class:`sw.ir.Graph` imported from ONNX, with what the model itself says.

    ``source``: the file (or ``"<ModelProto>"``); ``input_shape``: one sample's shape
    when the model fixes it; ``given``: the output quantization of the nodes a QDQ model
    quantizes; ``weights``: the QDQ model's integer weights per conv/linear node.
    """
    source: str = ""
    input_shape: tuple[int, ...] | None = None
    given: dict[str, QParams] = field(default_factory=dict)
    weights: dict[str, GivenWeights] = field(default_factory=dict)

    @property
    def prequantized(self) -> bool:
        """Whether the model is a QDQ model whose quantization ``sw.quantize`` uses."""
        return bool(self.given)

    def quantizes_all(self) -> bool:
        """Whether every node's quantization is given or follows from its operands' (so
        ``sw.quantize`` needs no calibration)."""
        return all(n.name in self.given or n.op in _KEEPS_INPUT for n in self.nodes)

    def context(self, ranges: dict, shapes: dict):
        """The :class:`sw.ops.QuantContext` of ``sw.quantize``: given quantization first,
        calibrated ranges for the rest (symmetric where a matmul reads them).

        The NPU's matmul of two activations takes symmetric operands: where the QDQ model
        gives one a zero point other than 0 (onnxruntime's default, asymmetric
        activations), its producer is requantized to the symmetric quantization of the
        range the given one spans (``max|x| / 127``, zero point 0; at most one bit
        coarser), so the model runs with no calibration."""
        from ..ops.base import symmetric_operands, symmetric_qparams
        symmetric = symmetric_operands(self.nodes)
        given = dict(self.given)
        for name in symmetric & given.keys():
            q = given[name]
            if q.zero_point != 0:
                given[name] = symmetric_qparams(q.scale * (-128 - q.zero_point),
                                                q.scale * (127 - q.zero_point))
        return _GivenContext(ranges, {}, shapes, given, symmetric)

    def quantize_node(self, node: Node, ctx) -> QNode:
        """The quantized node: the op table's quantization, with a QDQ model's weights
        and output quantization as given."""
        from .. import ops
        given = self.weights.get(node.name)
        if given is not None:
            return _quantize_given_gemm(node, ctx, given)
        return ops.get(node.op).quantize(node, ctx)


# Operators that keep their input's quantization (sw.ops: pooling, flatten, clamps, views).
_KEEPS_INPUT = {"input", "maxpool", "avgpool", "gap", "flatten", "relu", "relu6",
                "adaptive_maxpool", "adaptive_avgpool", "view", "copy"}


class _GivenContext(QuantContext):
    """Calibrated quantization, except where the QDQ model gives it."""

    def __init__(self, ranges, qparams, shapes, given: dict[str, QParams],
                 symmetric: set[str] | None = None) -> None:
        super().__init__(ranges, qparams, shapes, symmetric or set())
        self.given = given

    def out(self, node: Node) -> QParams:
        if node.name in self.given:
            return self.given[node.name]
        if node.name not in self.ranges:
            raise ValueError(f"node {node.name!r} ({node.where}) has no quantization in the "
                             f"QDQ model: give sw.quantize calibration data for it")
        return super().out(node)


def _quantize_given_gemm(node: Node, ctx, given: GivenWeights) -> QNode:
    """:func:`sw.ops.gemm.quantize_gemm` with the QDQ model's integer weights and bias."""
    from .. import golden
    from ..ops.base import act_clamp
    from ..ops.conv import QConv
    from ..ops.gemm import QLinear
    q_in = ctx.q(node.inputs[0])
    out = ctx.out(node)
    w_q, s_w = given.w_q, given.scale
    if given.bias_q is not None and torch.allclose(
            given.bias_scale.to(torch.float64), q_in.scale * s_w, rtol=1e-5, atol=0):
        bias_q = given.bias_q.to(torch.int64)
    else:
        bias_q = torch.round(node.attrs.bias.to(torch.float64) / (q_in.scale * s_w)).to(torch.int64)
    folded = bias_q - q_in.zero_point * w_q.to(torch.int64).reshape(w_q.shape[0], -1).sum(dim=1)
    folded = torch.clamp(folded, golden.INT32_MIN, golden.INT32_MAX)
    qm = [golden.quantize_multiplier(float(q_in.scale * sw / out.scale)) for sw in s_w.tolist()]
    fields = dict(w_q=w_q, bias_q=folded.to(torch.int32), mult=torch.tensor([m for m, _ in qm]),
                  shift=torch.tensor([s for _, s in qm]), zp_in=q_in.zero_point)
    a = node.attrs
    attrs = (QConv(**fields, stride=a.stride, padding=a.padding, groups=a.groups)
             if node.op == "conv" else QLinear(**fields))
    return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), attrs, node.act,
                 node.where, act_clamp(node.act, out))


# --- the importer ------------------------------------------------------------------------

#: ONNX op_type -> pattern(importer, onnx node)
PATTERNS: dict[str, Callable[["Importer", Any], None]] = {}


def pattern(*op_types: str):
    """Decorator: the pattern for ONNX nodes of ``op_types``."""
    def deco(fn):
        for t in op_types:
            if t in PATTERNS:
                raise ValueError(f"onnx: a pattern for {t} is already registered")
            PATTERNS[t] = fn
        return fn
    return deco


@dataclass(frozen=True)
class _QConst:
    """A constant a DequantizeLinear reads: its integer values, scale, zero point, axis."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    name: str = ""                #: the integer initializer's name, for messages


class Importer(GraphBuilder):
    """The state of one import, handed to the patterns.

    ``consts``: constant tensors (initializers, Constant nodes, dequantized weights) by
    ONNX name; ``qconsts``: the integer form of the dequantized ones; ``shapes``: value
    shapes from ONNX shape inference; ``names``: ONNX value name -> IR node name;
    ``readers``: ONNX value name -> the nodes reading it; ``skip`` (node ids): nodes inside
    a pattern found before the walk, ``fused`` (node id -> pattern): its last node;
    ``unquantized``: constants a QDQ model quantizes with no finite scale (kept as floats).
    """

    def __init__(self, consts: dict[str, np.ndarray], shapes: dict[str, tuple]) -> None:
        super().__init__()
        self.consts = consts
        self.qconsts: dict[str, _QConst] = {}
        self.shapes = shapes
        self.names: dict[str, str] = {}
        self.given: dict[str, QParams] = {}
        self.weights: dict[str, GivenWeights] = {}
        self.pending: dict[str, tuple] = {}
        self.used: set[str] = set()
        self.consumers: dict[str, int] = {}
        self.readers: dict[str, list] = {}
        self.skip: set[int] = set()
        self.unquantized: set[str] = set()
        self.fused: dict[int, Callable[["Importer", Any], None]] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.values: dict[str, torch.Tensor] = {}

    # names ------------------------------------------------------------------------------
    def node_name(self, onnx_node) -> str:
        """A unique IR name for ``onnx_node`` (its node name as an identifier)."""
        base = re.sub(r"\W+", "_", onnx_node.name or onnx_node.output[0]).strip("_")
        base = base or onnx_node.op_type.lower()
        if base[0].isdigit():
            base = f"n{base}"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def where(self, onnx_node) -> str:
        """How messages name ``onnx_node``: its op type and node name."""
        return f"{onnx_node.op_type} node {onnx_node.name or onnx_node.output[0]!r}"

    def src(self, value: str, onnx_node) -> str:
        """The IR node that computes ONNX value ``value``; constants are not supported."""
        if value in self.names:
            return self.names[value]
        if value in self.consts:
            raise UnsupportedOpError(f"{self.where(onnx_node)}: a constant operand ({value!r}) "
                                     f"is not supported here")
        raise UnsupportedOpError(f"{self.where(onnx_node)}: operand {value!r} is not computed "
                                 f"by a supported node")

    def const(self, value: str, onnx_node, what: str) -> np.ndarray:
        """The constant ONNX value ``value``; UnsupportedOpError when it is computed."""
        if value in self.consts:
            return self.consts[value]
        raise UnsupportedOpError(f"{self.where(onnx_node)}: {what} ({value!r}) must be a constant")

    def users(self, name: str) -> list[Node]:
        """The IR nodes built so far that read node ``name``."""
        return [n for n in self.nodes if name in n.inputs]

    def shape(self, value: str) -> tuple | None:
        """The shape of ONNX value ``value``: ONNX shape inference's, or where it left
        dimensions unknown (after shape arithmetic), that of the float reference of the
        graph built so far on one zero input; None when neither knows."""
        shape = self.shapes.get(value)
        if shape is not None and all(d is not None for d in shape):
            return shape
        if value in self.names and self.input_shape is not None:
            try:
                return tuple(self._value(self.names[value]).shape)
            except Exception:  # noqa: BLE001 - an operand the reference cannot run
                return shape
        return shape

    def _value(self, name: str) -> torch.Tensor:
        """The float reference's output of IR node ``name`` on one zero input."""
        from .. import ops
        if self.input_shape is None:
            raise UnsupportedOpError(f"the shape of {name!r} is needed but the model's input "
                                     f"shape is not fixed (export it with a fixed shape)")
        if name not in self.values:
            node = self.find(name)
            if node.op == "input":
                args = [torch.zeros((1,) + tuple(self.input_shape))]
            else:
                args = [self._value(i) for i in node.inputs]
            with torch.no_grad():
                y = ops.get(node.op).forward(node, args)
                if node.act is not None:
                    y = ops.get(node.act).forward(node, [y])
            self.values[name] = y
        return self.values[name]

    def emit(self, onnx_node, op: str, inputs: list[str], attrs: Any = None) -> Node:
        """Add an IR node for ``onnx_node`` (its first output)."""
        node = self.add(Node(self.node_name(onnx_node), op, inputs, attrs,
                             where=onnx_node.name or onnx_node.output[0]))
        self.names[onnx_node.output[0]] = node.name
        return node

    def same(self, onnx_node, value: str) -> None:
        """``onnx_node``'s output is its operand ``value`` (an identity)."""
        self.names[onnx_node.output[0]] = self.src(value, onnx_node)


def _attrs(onnx_node) -> dict[str, Any]:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in onnx_node.attribute}


def _load(model) -> tuple[Any, str]:
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>"
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"import_onnx expects a path or an onnx.ModelProto, not "
                        f"{type(model).__name__}")
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ONNX model {path!r}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"ONNX model {path!r} is a directory, not a file")
    try:
        proto = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"{path!r} is not a readable ONNX model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    return proto, path


def import_onnx(model, *, check: bool = True) -> OnnxGraph:
    """Import an ONNX model (a file path or an ``onnx.ModelProto``) as a graph.

    Returns an :class:`OnnxGraph` (a :class:`sw.ir.Graph`) that ``sw.quantize`` takes as
    it takes an ``nn.Module``; for a QDQ model it carries the model's quantization, used
    as given. ``check``: run ``onnx.checker`` first.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a file that is not
    a valid ONNX model or a quantization the NPU cannot represent, ``TypeError`` for
    something that is neither a path nor a model, and :class:`sw.UnsupportedOpError`
    naming every unsupported ONNX node (op type and node name) at once.
    """
    import onnx
    proto, source = _load(model)
    if check:
        try:
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001 - ValidationError and protobuf errors
            raise ValueError(f"ONNX model {source}: invalid ({str(exc).splitlines()[0]})") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - shapes are a help, not a need
        inferred = proto
    g = inferred.graph
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        consts[init.name] = onnx.numpy_helper.to_array(init)
    shapes: dict[str, tuple] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                    for d in t.shape.dim)
    imp = Importer(consts, shapes)
    for n in g.node:
        for i in n.input:
            imp.consumers[i] = imp.consumers.get(i, 0) + 1
            imp.readers.setdefault(i, []).append(n)
    _match_tanh_gelu(imp, g)
    _match_layernorm(imp, g)
    inputs = [vi for vi in g.input if vi.name not in consts]
    problems: list[str] = []
    if len(inputs) != 1:
        raise UnsupportedOpError(f"ONNX model {source} has {len(inputs)} inputs "
                                 f"({', '.join(vi.name for vi in inputs)}); one is supported")
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise UnsupportedOpError(f"ONNX model {source}: input {inp.name!r} is "
                                 f"{onnx.TensorProto.DataType.Name(elem)}; a float input is "
                                 f"supported")
    in_node = imp.add(Node(_ident(inp.name), "input", [], where=inp.name))
    imp.used.add(in_node.name)
    imp.names[inp.name] = in_node.name
    dims = shapes.get(inp.name)
    input_shape = tuple(dims[1:]) if dims and all(d for d in dims[1:]) else None
    imp.input_shape = input_shape

    for n in g.node:
        fn = PATTERNS.get(n.op_type) if n.domain in ("", "ai.onnx") else None
        fn = imp.fused.get(id(n), fn)     # the last node of a pattern found beforehand
        if id(n) in imp.skip:
            continue                  # inside a pattern found beforehand (tanh-GELU, LayerNorm)
        if _fold(imp, n):
            continue                  # shape arithmetic on constants, evaluated here
        try:
            if fn is None:
                domain = f" (domain {n.domain})" if n.domain not in ("", "ai.onnx") else ""
                raise UnsupportedOpError(f"unsupported ONNX op {n.op_type}{domain} at node "
                                         f"{n.name or n.output[0]!r}")
            fn(imp, n)
        except UnsupportedOpError as exc:
            problems.append(str(exc))
            # The node stands in as a placeholder so that the nodes after it are looked at.
            for o in n.output:
                if o not in imp.names and o not in imp.consts:
                    imp.names[o] = imp.add(Node(imp.node_name(n), "unsupported", [],
                                                where=n.name)).name
    if len(problems) == 1:
        raise UnsupportedOpError(problems[0])
    if problems:
        raise UnsupportedOpError(f"the ONNX model uses {len(problems)} unsupported operations:\n"
                                 + "\n".join(f"  - {p}" for p in problems))
    outputs = []
    for vo in g.output:
        if vo.name not in imp.names:
            raise UnsupportedOpError(f"ONNX model {source}: output {vo.name!r} is a constant")
        outputs.append(imp.names[vo.name])
    if len(outputs) != 1:
        raise UnsupportedOpError(f"ONNX model {source} has {len(outputs)} outputs; one is "
                                 f"supported")
    if imp.pending:
        raise UnsupportedOpError(f"ONNX model {source}: " + "; ".join(
            _PENDING_LEFT.get(p[0], "a layout change that is not a channel shuffle") + f" ({v!r})"
            for v, p in imp.pending.items()))
    nodes = _drop_unused(imp.nodes, outputs)
    _exact_attention_scale(imp, nodes)
    given = {k: v for k, v in imp.given.items() if any(n.name == k for n in nodes)}
    graph = OnnxGraph(nodes, outputs, source=source, input_shape=input_shape, given=given,
                      weights=imp.weights)
    from ..ops.activation import fuse_activations
    _requantize_kept(graph)
    fuse_activations(graph)
    if graph.given and graph.inputs[0] not in graph.given:
        raise ValueError(f"ONNX model {source}: a QDQ model must quantize its input "
                         f"(a QuantizeLinear on {inp.name!r})")
    return graph


def _ident(name: str) -> str:
    s = re.sub(r"\W+", "_", name).strip("_") or "input"
    return f"n{s}" if s[0].isdigit() else s


def _drop_unused(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """The nodes the outputs depend on (the input always), in order."""
    needed = set(outputs)
    keep = []
    for n in reversed(nodes):
        if n.name in needed or n.op == "input":
            keep.append(n)
            needed.update(n.inputs)
    return keep[::-1]


def _requantize_kept(graph: OnnxGraph) -> None:
    """After each node that keeps its input's quantization on the NPU but has a QDQ
    output quantization of its own, a requantization to it (a one-operand ``cat``)."""
    if not graph.given:
        return
    from ..ops.cat import Cat
    effective: dict[str, QParams | None] = {}
    for node in list(graph.nodes):
        own = graph.given.get(node.name)
        if node.op in _KEEPS_INPUT and node.op != "input":
            inherited = effective.get(node.inputs[0])
            if own is None or own == inherited:
                effective[node.name] = inherited
                graph.given.pop(node.name, None)
                continue
            if node.op in ("view", "copy"):
                raise ValueError(f"ONNX node {node.where!r}: the QDQ model quantizes this "
                                 f"reshape's output ({own}) unlike its operand ({inherited}); a "
                                 f"view on the NPU keeps its operand's quantization")
            # Requantize: a new node carries the given quantization.
            effective[node.name] = inherited
            del graph.given[node.name]
            name = f"{node.name}_requant"
            users = graph.users(node.name)
            req = Node(name, "cat", [node.name], Cat(1), where=f"{node.where} (requantized)")
            graph.nodes.insert(graph.nodes.index(node) + 1, req)
            for u in users:
                u.inputs = [name if i == node.name else i for i in u.inputs]
            graph.replace_output(node.name, name)
            graph.given[name] = own
            effective[name] = own
        else:
            effective[node.name] = own


# --- constants ----------------------------------------------------------------------------

def _int_div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        return (np.trunc(a / b)).astype(np.result_type(a, b))   # ONNX: toward zero
    return a / b


#: op_type -> numpy evaluation on constant operands (the shape arithmetic exporters write)
FOLDABLE: dict[str, Callable[..., np.ndarray]] = {
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: _int_div(x, y),
    "Gather": lambda a, x, i: np.take(x, i, axis=a.get("axis", 0)),
    "Unsqueeze": lambda a, x, axes=None: np.expand_dims(
        x, tuple(int(v) for v in (axes if axes is not None else a["axes"]))),
    "Squeeze": lambda a, x, axes=None: np.squeeze(
        x, tuple(int(v) for v in (axes if axes is not None else a["axes"]))),
    "Concat": lambda a, *xs: np.concatenate(xs, axis=a.get("axis", 0)),
    "Cast": lambda a, x: x.astype(_np_type(a["to"])),
    "Identity": lambda a, x: x,
    # Attention's shape arithmetic and its causal mask (Trilu, Equal, Where of constants).
    "Mod": lambda a, x, y: np.fmod(x, y) if a.get("fmod", 0) else np.mod(x, y),
    "Sqrt": lambda a, x: np.sqrt(x),
    "Reshape": lambda a, x, shape: x.reshape(_target_shape(x.shape, shape, a)),
    "Slice": lambda a, x, starts, ends, axes=None, steps=None: _slice_np(x, starts, ends, axes,
                                                                         steps),
    "Expand": lambda a, x, shape: x * np.ones(tuple(int(v) for v in shape), x.dtype),
    "Trilu": lambda a, x, k=None: (np.triu if a.get("upper", 1) else np.tril)(
        x, int(k.reshape(-1)[0]) if k is not None else 0),
    "Equal": lambda a, x, y: np.equal(x, y),
    "Where": lambda a, c, x, y: np.where(c, x, y),
    "ConstantOfShape": lambda a, shape: np.full(
        tuple(int(v) for v in shape), _const_value(a), _const_value(a).dtype),
}


def _const_value(a: dict) -> np.ndarray:
    import onnx
    v = a.get("value")
    return onnx.numpy_helper.to_array(v).reshape(-1)[0] if v is not None else np.float32(0)


def _target_shape(shape, target, a: dict) -> tuple[int, ...]:
    """A Reshape's target with ONNX's 0 (copy the dimension; unless ``allowzero``) and -1
    resolved against ``shape``."""
    out = [int(v) for v in np.asarray(target).reshape(-1)]
    if not a.get("allowzero", 0):
        out = [shape[i] if v == 0 else v for i, v in enumerate(out)]
    if -1 in out:
        known = math.prod(v for v in out if v != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    return tuple(out)


def _slice_np(x, starts, ends, axes, steps) -> np.ndarray:
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _np_type(elem: int):
    import onnx
    return onnx.helper.tensor_dtype_to_np_dtype(elem)


def _fold(imp: Importer, n) -> bool:
    """Evaluate ``n`` when all its operands are constants (or it is the Shape of a value
    whose shape is known); True if it was."""
    if n.op_type == "Shape":
        shape = imp.shape(n.input[0])
        a = _attrs(n)
        if shape is None or any(d is None for d in shape) or n.input[0] not in imp.names:
            return False
        imp.consts[n.output[0]] = np.array(shape[a.get("start", 0):a.get("end", None)], np.int64)
        return True
    fn = FOLDABLE.get(n.op_type)
    inputs = [i for i in n.input]
    if fn is None or not inputs or not all(i == "" or i in imp.consts for i in inputs):
        return False
    args = [imp.consts[i] if i else None for i in inputs]
    while args and args[-1] is None:
        args.pop()
    try:
        imp.consts[n.output[0]] = np.asarray(fn(_attrs(n), *args))
    except Exception:  # noqa: BLE001 - leave it to the op's pattern, which says what is wrong
        return False
    return True


@pattern("Slice")
def _from_slice(imp: Importer, n) -> None:
    """A slice of channels (as PyTorch exports ``x.chunk(k, 1)``, ``torch.split``): a
    ``channels`` node of 0/1 weights, as the fx front end makes it."""
    from ..ops.conv import Conv
    from ..ops.layout import slice_weights
    starts, ends = (imp.const(v, n, what).reshape(-1) for v, what in
                    ((n.input[1], "starts"), (n.input[2], "ends")))
    axes = (imp.const(n.input[3], n, "axes").reshape(-1) if len(n.input) > 3 and n.input[3]
            else np.arange(len(starts)))
    steps = (imp.const(n.input[4], n, "steps").reshape(-1) if len(n.input) > 4 and n.input[4]
             else np.ones(len(starts), np.int64))
    shape = imp.shape(n.input[0])
    if shape is None or len(shape) < 2 or shape[1] is None or len(starts) != 1 or \
            int(axes[0]) % len(shape) != 1 \
            or int(steps[0]) != 1:
        raise UnsupportedOpError(f"{imp.where(n)}: only a slice of channels (axis 1, step 1) "
                                 f"of a tensor of known shape is supported")
    c = shape[1]
    start, stop = (int(max(0, min(c, v + c if v < 0 else v))) for v in (starts[0], ends[0]))
    if stop <= start:
        raise UnsupportedOpError(f"{imp.where(n)}: an empty slice [{start}:{stop}]")
    w = slice_weights(c, start, stop)
    node = imp.emit(n, "channels", [imp.src(n.input[0], n)],
                    Conv(w, torch.zeros(w.shape[0]), (1, 1), (0, 0), 1))
    node.where = f"{node.where} (channels {start}:{stop})"


# --- QDQ ------------------------------------------------------------------------------------

def _qparams(imp: Importer, onnx_node, scale: np.ndarray, zp: np.ndarray | None,
             dtype) -> QParams:
    """int8 quantization of a per-tensor (u)int8 QuantizeLinear."""
    where = imp.where(onnx_node)
    if scale.size != 1:
        raise ValueError(f"{where}: per-axis activation quantization ({scale.size} scales) "
                         f"cannot be represented (the NPU quantizes activations per tensor)")
    z = int(zp.reshape(-1)[0]) if zp is not None else 0
    if dtype == np.uint8:
        z -= 128
    elif dtype != np.int8:
        raise ValueError(f"{where}: activations of type {np.dtype(dtype).name} cannot be "
                         f"represented (the NPU's are 8-bit)")
    return QParams(float(scale.reshape(-1)[0]), z)


@pattern("QuantizeLinear")
def _from_quantize(imp: Importer, n) -> None:
    x = n.input[0]
    scale = imp.const(n.input[1], n, "the scale")
    zp = imp.const(n.input[2], n, "the zero point") if len(n.input) > 2 and n.input[2] else None
    dtype = zp.dtype if zp is not None else np.uint8
    if x in imp.consts:
        if not np.all(np.isfinite(scale)) or np.any(scale == 0):
            # A constant no scale represents (onnxruntime gives the -inf of a causal mask
            # scale inf): its float values, for the pattern that reads it to judge.
            imp.consts[n.output[0]] = imp.consts[x]
            imp.unquantized.add(n.output[0])
            return
        # A constant quantized in the graph (weights not folded): evaluate it.
        q = _quantize_np(imp.consts[x], scale, zp, _attrs(n).get("axis", 1), dtype)
        imp.consts[n.output[0]] = q
        return
    if x in imp.pending:
        # Inside a pattern of several nodes (a channel shuffle's grouped view, GELU's erf
        # form): the pattern's result has a quantization of its own; this one is dropped.
        imp.pending[n.output[0]] = imp.pending.pop(x)
        return
    q = _qparams(imp, n, scale, zp, dtype)
    if not math.isfinite(q.scale) or q.scale <= 0:
        raise ValueError(f"{imp.where(n)}: {x!r} is quantized with scale {q.scale} (onnxruntime's "
                         f"calibration saw an infinite or empty range)")
    target = imp.src(x, n)
    old = imp.given.get(target)
    if old is not None and old != q:
        raise ValueError(f"{imp.where(n)}: {x!r} is quantized twice with different "
                         f"parameters ({old} and {q}); one quantization per tensor is supported")
    imp.given[target] = q
    imp.names[n.output[0]] = target


def _quantize_np(x, scale, zp, axis, dtype):
    shape = [1] * x.ndim
    if scale.size > 1:
        shape[axis] = -1
    s = scale.reshape(shape)
    z = (zp.reshape(shape) if zp is not None else 0).astype(np.int64)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / s) + z, info.min, info.max).astype(dtype)


@pattern("DequantizeLinear")
def _from_dequantize(imp: Importer, n) -> None:
    x = n.input[0]
    scale = imp.const(n.input[1], n, "the scale").astype(np.float64)
    zp = imp.const(n.input[2], n, "the zero point") if len(n.input) > 2 and n.input[2] else None
    if x in imp.unquantized:
        imp.consts[n.output[0]] = imp.consts[x]
        return
    if x in imp.consts:
        q = imp.consts[x]
        axis = _attrs(n).get("axis", 1)
        if axis < 0:
            axis += q.ndim
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis] = -1
        z = zp.astype(np.int64).reshape(shape) if zp is not None else np.zeros(shape, np.int64)
        imp.consts[n.output[0]] = ((q.astype(np.int64) - z) * scale.reshape(shape)).astype(np.float32)
        imp.qconsts[n.output[0]] = _QConst(q, scale, zp if zp is not None else np.zeros(1, np.int64),
                                           axis, x)
        return
    # An activation's dequantization: the value its QuantizeLinear quantized.
    if x in imp.pending:
        imp.pending[n.output[0]] = imp.pending.pop(x)
        return
    imp.names[n.output[0]] = imp.src(x, n)


def _given_weights(imp: Importer, n, w_name: str, b_name: str | None, *,
                   transpose: bool = False) -> GivenWeights | None:
    """The QDQ integer weights of a Conv/Gemm/MatMul, or None for float weights."""
    qc = imp.qconsts.get(w_name)
    if qc is None:
        return None
    where = imp.where(n)
    w_name = qc.name or w_name
    if qc.q.dtype not in (np.int8, np.uint8):
        raise ValueError(f"{where}: weights {w_name!r} of type {qc.q.dtype.name} cannot be "
                         f"represented (the NPU's weights are int8)")
    q = qc.q.astype(np.int64)
    zp = qc.zero_point.astype(np.int64).reshape(-1)
    if qc.q.dtype == np.uint8:
        q, zp = q - 128, zp - 128
    if np.any(zp != 0):
        raise ValueError(f"{where}: weights {w_name!r} are asymmetric (zero point "
                         f"{sorted(set(zp.tolist()))[:4]}); the NPU's weights are symmetric "
                         f"(quantize_static(..., extra_options={{'WeightSymmetric': True}}), "
                         f"the default for int8)")
    axis = qc.axis
    if transpose:
        q = q.T
        axis = 1 - axis if q.ndim == 2 else axis
    n_out = q.shape[0]
    if qc.scale.size == 1:
        scale = np.full(n_out, float(qc.scale.reshape(-1)[0]))
    elif axis == 0 and qc.scale.size == n_out:
        scale = qc.scale.reshape(-1)
    else:
        raise ValueError(f"{where}: weights {w_name!r} are quantized per axis {qc.axis} "
                         f"(not per output channel); the NPU's scales are per output channel")
    if q.min() < -128 or q.max() > 127:
        raise ValueError(f"{where}: weights {w_name!r} do not fit int8")
    bias_q = None
    if b_name and b_name in imp.qconsts:
        bq = imp.qconsts[b_name]
        if bq.q.dtype != np.int32 or np.any(bq.zero_point != 0):
            raise ValueError(f"{where}: bias {b_name!r} must be int32 with zero point 0, not "
                             f"{bq.q.dtype.name}")
        bias_q = torch.from_numpy(bq.q.astype(np.int64).reshape(-1))
        bias_scale = torch.from_numpy(np.broadcast_to(bq.scale.reshape(-1), bias_q.shape).copy())
        return GivenWeights(torch.from_numpy(q.astype(np.int8)), torch.from_numpy(scale.copy()),
                            bias_q, bias_scale)
    return GivenWeights(torch.from_numpy(q.astype(np.int8)), torch.from_numpy(scale.copy()))


# --- operators --------------------------------------------------------------------------------

def _pads(imp: Importer, n, a: dict, rank: int = 2) -> tuple[int, int]:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise UnsupportedOpError(f"{imp.where(n)}: auto_pad={auto} is not supported (explicit "
                                 f"pads only)")
    pads = list(a.get("pads", [0] * (2 * rank))) if auto == "NOTSET" else [0] * (2 * rank)
    if pads[:rank] != pads[rank:]:
        raise UnsupportedOpError(f"{imp.where(n)}: asymmetric pads {pads} are not supported")
    return tuple(pads[:rank])


def _check_2d(imp: Importer, n, kernel) -> None:
    if len(kernel) != 2:
        raise UnsupportedOpError(f"{imp.where(n)}: a {len(kernel)}-D kernel is not supported "
                                 f"(2-D only)")


@pattern("Conv")
def _from_conv(imp: Importer, n) -> None:
    from ..ops.conv import Conv
    a = _attrs(n)
    w = imp.const(n.input[1], n, "the weight")
    kernel = a.get("kernel_shape", list(w.shape[2:]))
    _check_2d(imp, n, kernel)
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        raise UnsupportedOpError(f"{imp.where(n)}: dilations {a['dilations']} are not supported")
    inp = imp.src(n.input[0], n)
    b_name = n.input[2] if len(n.input) > 2 and n.input[2] else None
    bias = imp.const(b_name, n, "the bias") if b_name else np.zeros(w.shape[0], np.float32)
    stride = tuple(a.get("strides", [1, 1]))
    node = imp.emit(n, "conv", [inp], Conv(torch.from_numpy(w.copy()),
                                           torch.from_numpy(bias.astype(np.float32).copy()),
                                           stride, _pads(imp, n, a), int(a.get("group", 1))))
    given = _given_weights(imp, n, n.input[1], b_name)
    if given is not None:
        imp.weights[node.name] = given


def _linear(imp: Importer, n, inp: str, w: np.ndarray, bias: np.ndarray | None,
            given: GivenWeights | None) -> Node:
    from ..ops.linear import Linear
    if bias is None:
        bias = np.zeros(w.shape[0], np.float32)
    node = imp.emit(n, "linear", [inp], Linear(torch.from_numpy(np.ascontiguousarray(w, np.float32)),
                                               torch.from_numpy(np.ascontiguousarray(
                                                   bias.reshape(-1), np.float32))))
    if given is not None:
        imp.weights[node.name] = given
    return node


@pattern("Gemm")
def _from_gemm(imp: Importer, n) -> None:
    a = _attrs(n)
    if a.get("transA", 0):
        raise UnsupportedOpError(f"{imp.where(n)}: transA=1 is not supported")
    w = imp.const(n.input[1], n, "the weight B")
    trans_b = bool(a.get("transB", 0))
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    b_name = n.input[2] if len(n.input) > 2 and n.input[2] else None
    bias = imp.const(b_name, n, "the bias C") if b_name else None
    given = _given_weights(imp, n, n.input[1], b_name, transpose=not trans_b)
    if given is not None and (alpha != 1.0 or beta != 1.0):
        raise UnsupportedOpError(f"{imp.where(n)}: alpha/beta with quantized weights")
    w = w if trans_b else w.T
    if bias is not None and bias.size != w.shape[0]:
        if bias.size != 1:
            raise UnsupportedOpError(f"{imp.where(n)}: bias C of shape {list(bias.shape)} "
                                     f"(one per output feature is supported)")
        bias = np.full(w.shape[0], float(bias.reshape(-1)[0]), np.float32)
    _linear(imp, n, imp.src(n.input[0], n), w * alpha,
            None if bias is None else bias * beta, given)


@pattern("MatMul")
def _from_matmul(imp: Importer, n) -> None:
    """A MatMul by a constant weight is a linear layer; of two activations (attention's
    ``q kᵀ`` and ``p v``), a ``matmul`` with the scalars folded into its factor."""
    if n.input[0] in imp.consts and n.input[1] not in imp.consts:
        raise UnsupportedOpError(f"{imp.where(n)}: a constant first operand "
                                 f"({n.input[0]!r}) is not supported (a weight is the second)")
    if n.input[1] not in imp.consts:
        _matmul(imp, n)
        return
    w = imp.const(n.input[1], n, "the weight")
    if w.ndim != 2:
        raise UnsupportedOpError(f"{imp.where(n)}: a weight of shape {list(w.shape)} (2-D only)")
    shape = imp.shape(n.input[0])
    if shape is not None and len(shape) not in (2, 3):
        raise UnsupportedOpError(f"{imp.where(n)}: an operand of shape {list(shape)} "
                                 f"([batch, features] or [batch, tokens, features] only)")
    given = _given_weights(imp, n, n.input[1], None, transpose=True)
    _linear(imp, n, imp.src(n.input[0], n), w.T, None, given)


@pattern("Add")
def _from_add(imp: Importer, n) -> None:
    a, b = n.input[0], n.input[1]
    if (a in imp.consts) != (b in imp.consts):
        # MatMul + Add of a constant: the linear layer's bias.
        x, c = (b, a) if a in imp.consts else (a, b)
        prev = imp.find(imp.src(x, n))
        bias = imp.consts[c].reshape(-1)
        if prev.op == "linear" and imp.consumers.get(x, 0) == 1 and prev.act is None and \
                not bool(prev.attrs.bias.any()) and bias.size in (1, prev.attrs.weight.shape[0]):
            bias = np.broadcast_to(bias, (prev.attrs.weight.shape[0],)).astype(np.float32)
            prev.attrs = replace(prev.attrs, bias=torch.from_numpy(bias.copy()))
            if prev.name in imp.weights and c in imp.qconsts:
                bq = imp.qconsts[c]
                g = imp.weights[prev.name]
                imp.weights[prev.name] = replace(
                    g, bias_q=torch.from_numpy(np.broadcast_to(
                        bq.q.astype(np.int64).reshape(-1), bias.shape).copy()),
                    bias_scale=torch.from_numpy(np.broadcast_to(
                        bq.scale.reshape(-1), bias.shape).copy()))
            # A QDQ model's quantization of the product before the bias is of a tensor the
            # fused linear does not store: the Add's output quantization is the linear's.
            imp.given.pop(prev.name, None)
            imp.names[n.output[0]] = prev.name
            return
        if prev.op == "matmul" and imp.consumers.get(x, 0) == 1:
            _causal_mask(imp, n, prev, imp.consts[c])
            return
        raise UnsupportedOpError(f"{imp.where(n)}: adding a constant is not supported (only as "
                                 f"the bias of a MatMul or a causal mask on attention scores)")
    imp.emit(n, "add", [imp.src(a, n), imp.src(b, n)])


@pattern("Mul")
def _from_mul(imp: Importer, n) -> None:
    a, b = n.input[0], n.input[1]
    if (a in imp.consts) != (b in imp.consts):
        x, c = (b, a) if a in imp.consts else (a, b)
        _scale(imp, n, x, imp.consts[c], divide=False)
        return
    if a in imp.consts:
        raise UnsupportedOpError(f"{imp.where(n)}: multiplying two constants is not supported")
    sa, sb = imp.src(a, n), imp.src(b, n)
    # x * sigmoid(x) is SiLU (as PyTorch exports nn.SiLU).
    for x, s in ((sa, sb), (sb, sa)):
        sig = imp.find(s)
        if sig.op == "sigmoid" and sig.inputs == [x] and len(imp.users(sig.name)) == 0 \
                and _single_use(imp, sig.name) and sig.name not in imp.given:
            imp.nodes.remove(sig)
            imp.emit(n, "silu", [x])
            return
    imp.emit(n, "mul", [sa, sb])


def _single_use(imp: Importer, ir_name: str) -> bool:
    values = [v for v, nm in imp.names.items() if nm == ir_name]
    return sum(imp.consumers.get(v, 0) for v in values) == 1


@pattern("Relu")
def _from_relu(imp: Importer, n) -> None:
    imp.emit(n, "relu", [imp.src(n.input[0], n)])


@pattern("Clip")
def _from_clip(imp: Importer, n) -> None:
    a = _attrs(n)
    lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
    if len(n.input) > 1 and n.input[1]:
        lo = float(imp.const(n.input[1], n, "min").reshape(-1)[0])
    if len(n.input) > 2 and n.input[2]:
        hi = float(imp.const(n.input[2], n, "max").reshape(-1)[0])
    if lo == 0.0 and hi == 6.0:
        imp.emit(n, "relu6", [imp.src(n.input[0], n)])
    elif lo == 0.0 and hi == math.inf:
        imp.emit(n, "relu", [imp.src(n.input[0], n)])
    else:
        raise UnsupportedOpError(f"{imp.where(n)}: Clip to [{lo}, {hi}] is not supported "
                                 f"([0, 6] is ReLU6, [0, inf] ReLU)")


def _table(op: str, attrs=None):
    def fn(imp: Importer, n) -> None:
        imp.emit(n, op, [imp.src(n.input[0], n)], attrs)
    return fn


PATTERNS["Sigmoid"] = _table("sigmoid")
PATTERNS["Tanh"] = _table("tanh")
PATTERNS["HardSwish"] = _table("hardswish")


@pattern("HardSigmoid")
def _from_hardsigmoid(imp: Importer, n) -> None:
    a = _attrs(n)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    if not (abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6):
        raise UnsupportedOpError(f"{imp.where(n)}: HardSigmoid alpha={alpha:.4g} beta={beta:.4g} "
                                 f"(PyTorch's alpha=1/6, beta=0.5 is supported)")
    imp.emit(n, "hardsigmoid", [imp.src(n.input[0], n)])


@pattern("LeakyRelu")
def _from_leaky(imp: Importer, n) -> None:
    imp.emit(n, "leaky_relu", [imp.src(n.input[0], n)], float(_attrs(n).get("alpha", 0.01)))


@pattern("Gelu")
def _from_gelu(imp: Importer, n) -> None:
    approx = _attrs(n).get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    imp.emit(n, "gelu", [imp.src(n.input[0], n)], approx)


@pattern("Div")
def _from_div(imp: Importer, n) -> None:
    """The start of the erf form of GELU: ``x / sqrt(2)``, then Erf, +1, * x, * 0.5 (as
    PyTorch exports ``nn.GELU()`` before opset 20); or attention's ``scores / sqrt(d)``."""
    erf = any(r.op_type == "Erf" for r in _readers(imp, n.output[0]))
    if erf and n.input[1] in imp.consts and abs(float(imp.consts[n.input[1]].reshape(-1)[0])
                                                - math.sqrt(2)) < 1e-3 and n.input[0] not in imp.consts:
        imp.pending[n.output[0]] = ("gelu", "div", imp.src(n.input[0], n), n)
        return
    if n.input[1] in imp.consts and n.input[0] not in imp.consts:
        _scale(imp, n, n.input[0], imp.consts[n.input[1]], divide=True)
        return
    raise UnsupportedOpError(f"{imp.where(n)}: Div is supported only in GELU's erf form and as "
                             f"a matmul's scaling (a division by a scalar constant)")


@pattern("Erf")
def _from_erf(imp: Importer, n) -> None:
    p = imp.pending.pop(n.input[0], None)
    if p is None or p[1] != "div":
        raise UnsupportedOpError(f"{imp.where(n)}: Erf is supported only in GELU's erf form")
    imp.pending[n.output[0]] = ("gelu", "erf", p[2], p[3])


def _gelu_step(imp: Importer, n) -> bool:
    """The Add and the Muls of the erf form of GELU; True if ``n`` is one of them."""
    for k, other in ((0, 1), (1, 0)):
        p = imp.pending.get(n.input[k])
        if p is None or p[0] != "gelu":
            continue
        c = imp.consts.get(n.input[other])
        stage = p[1]
        if n.op_type == "Add" and stage == "erf" and c is not None and _near(c, 1.0):
            imp.pending.pop(n.input[k])
            imp.pending[n.output[0]] = ("gelu", "plus1", p[2], p[3])
            return True
        if n.op_type == "Mul" and stage == "plus1" and c is None and \
                imp.names.get(n.input[other]) == p[2]:
            imp.pending.pop(n.input[k])
            imp.pending[n.output[0]] = ("gelu", "times_x", p[2], p[3])
            return True
        if n.op_type == "Mul" and stage == "times_x" and c is not None and _near(c, 0.5):
            imp.pending.pop(n.input[k])
            imp.emit(n, "gelu", [p[2]], "none")
            return True
    return False


def _near(c: np.ndarray, want: float) -> bool:
    """Whether constant ``c`` is the scalar ``want`` (to 1e-4: a QDQ model dequantizes the
    formula's constants from int8)."""
    return c.size == 1 and abs(float(c.reshape(-1)[0]) - want) < 1e-4


def _with_gelu(fn):
    def wrapped(imp: Importer, n) -> None:
        if not _gelu_step(imp, n):
            fn(imp, n)
    return wrapped


PATTERNS["Add"] = _with_gelu(_from_add)
PATTERNS["Mul"] = _with_gelu(_from_mul)


def _pool(imp: Importer, n, op: str) -> None:
    from ..ops.pool import Pool
    a = _attrs(n)
    kernel = tuple(a["kernel_shape"])
    _check_2d(imp, n, kernel)
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        raise UnsupportedOpError(f"{imp.where(n)}: dilations {a['dilations']} are not supported")
    if len(n.output) > 1 and n.output[1]:
        raise UnsupportedOpError(f"{imp.where(n)}: the indices output is not supported")
    pads = _pads(imp, n, a)
    ceil = bool(a.get("ceil_mode", 0))
    # ONNX's count_include_pad defaults to 0 (PyTorch's to True); both divide a window
    # by its elements inside the input then, and with it set by the window clipped at
    # the padded input's end, as sw.ops.pool.divisors does.
    include_pad = bool(a.get("count_include_pad", 0)) if op == "avgpool" else True
    imp.emit(n, op, [imp.src(n.input[0], n)],
             Pool(kernel, tuple(a.get("strides", [1, 1])), pads, ceil,
                  count_include_pad=include_pad))


PATTERNS["MaxPool"] = lambda imp, n: _pool(imp, n, "maxpool")
PATTERNS["AveragePool"] = lambda imp, n: _pool(imp, n, "avgpool")


@pattern("GlobalAveragePool")
def _from_gap(imp: Importer, n) -> None:
    imp.emit(n, "gap", [imp.src(n.input[0], n)])


@pattern("ReduceMean")
def _from_mean(imp: Importer, n) -> None:
    a = _attrs(n)
    axes = a.get("axes")
    if axes is None and len(n.input) > 1 and n.input[1]:
        axes = imp.const(n.input[1], n, "axes").tolist()
    if sorted(int(x) % 4 for x in (axes or [])) != [2, 3]:
        raise UnsupportedOpError(f"{imp.where(n)}: a mean over axes {axes} (over [2, 3], the "
                                 f"pixels, is supported)")
    inp = imp.src(n.input[0], n)
    if a.get("keepdims", 1):
        imp.emit(n, "gap", [inp])
    else:
        gap = imp.add(Node(imp.node_name(n) + "_gap", "gap", [inp], where=n.name))
        imp.emit(n, "flatten", [gap.name])


@pattern("Flatten")
def _from_flatten(imp: Importer, n) -> None:
    if _attrs(n).get("axis", 1) != 1:
        raise UnsupportedOpError(f"{imp.where(n)}: Flatten with axis={_attrs(n)['axis']} "
                                 f"(axis=1 is supported)")
    _flatten(imp, n, n.input[0])


def _flatten(imp: Importer, n, x: str) -> None:
    shape = imp.shape(x)
    if shape is not None and len(shape) == 2:
        imp.same(n, x)                        # already [batch, features]
        return
    imp.emit(n, "flatten", [imp.src(x, n)])


@pattern("Reshape")
def _from_reshape(imp: Importer, n) -> None:
    target = [int(v) for v in imp.const(n.input[1], n, "the shape").reshape(-1)]
    x = n.input[0]
    in_shape = imp.shape(x)
    pending = imp.pending.pop(x, None)
    if pending is not None and pending[0] == "swapped" and len(target) == 4:
        _, inp, groups, shp = pending
        if target[1] in (-1, shp[1]) and tuple(target[2:]) == tuple(shp[2:]):
            _shuffle(imp, n, inp, shp[1], groups)
            return
    if pending is not None:
        raise UnsupportedOpError(f"{imp.where(n)}: only a channel shuffle (Reshape to groups, "
                                 f"Transpose [0, 2, 1, 3, 4], Reshape back) is supported")
    if in_shape is not None and len(in_shape) >= 3 and _is_flat(imp, imp.src(x, n)):
        _view_reshape(imp, n, x, _target_shape(in_shape, target, _attrs(n)))
        return
    if len(target) == 5 and in_shape is not None and len(in_shape) == 4 and \
            target[1] * target[2] == in_shape[1] and tuple(target[3:]) == tuple(in_shape[2:]):
        imp.pending[n.output[0]] = ("groups", imp.src(x, n), target[1], in_shape)
        return
    features = math.prod(in_shape[1:]) if in_shape and all(in_shape[1:]) else None
    if len(target) == 2 and (target[1] == -1 or target[1] == features):
        _flatten(imp, n, x)
        return
    raise UnsupportedOpError(f"{imp.where(n)}: Reshape to {target} (only to [batch, -1], a "
                             f"flatten, a channel shuffle's groups, or a view of a token-shaped "
                             f"tensor keeping the batch first)")


@pattern("Transpose")
def _from_transpose(imp: Importer, n) -> None:
    perm = list(_attrs(n).get("perm", []))
    pending = imp.pending.pop(n.input[0], None)
    if pending is not None and pending[0] == "groups" and perm == [0, 2, 1, 3, 4]:
        imp.pending[n.output[0]] = ("swapped",) + pending[1:]
        return
    if pending is None and perm and perm[0] == 0 and n.input[0] in imp.names and \
            _is_flat(imp, imp.src(n.input[0], n)):
        if perm == sorted(perm):
            imp.same(n, n.input[0])
        else:
            from ..ops.reshape import Reshape
            imp.emit(n, "view", [imp.src(n.input[0], n)],
                     Reshape("permute", tuple(d - 1 for d in perm[1:])))
        return
    raise UnsupportedOpError(f"{imp.where(n)}: Transpose {perm} (only a channel shuffle's "
                             f"[0, 2, 1, 3, 4] after a Reshape to groups, or a permutation of "
                             f"a token-shaped tensor keeping the batch first)")


def _shuffle(imp: Importer, n, inp: str, channels: int, groups: int) -> None:
    from ..ops.conv import Conv
    from ..ops.layout import shuffle_weights
    w = shuffle_weights(channels, groups)
    node = imp.emit(n, "channels", [inp], Conv(w, torch.zeros(w.shape[0]), (1, 1), (0, 0), 1))
    node.where = f"{node.where} (channel shuffle of {groups} groups)"


@pattern("Concat")
def _from_concat(imp: Importer, n) -> None:
    from ..ops.cat import Cat
    axis = int(_attrs(n).get("axis", 1))
    shape = imp.shape(n.input[0])
    rank = len(shape) if shape else 4
    if axis % rank != 1:
        raise UnsupportedOpError(f"{imp.where(n)}: Concat along axis {axis} (the channel axis "
                                 f"1 is supported)")
    inputs = [imp.src(x, n) for x in n.input]
    if len(inputs) == 1:
        imp.same(n, n.input[0])
        return
    imp.emit(n, "cat", inputs, Cat(1))


@pattern("BatchNormalization")
def _from_batchnorm(imp: Importer, n) -> None:
    """Folded into the convolution it follows (as the fx front end folds it); otherwise a
    depthwise 1x1 convolution."""
    from ..ops.conv import Conv
    if _attrs(n).get("training_mode", 0) or len([o for o in n.output if o]) > 1:
        raise UnsupportedOpError(f"{imp.where(n)}: training mode is not supported")
    gamma, beta, mean, var = (torch.from_numpy(imp.const(v, n, what).astype(np.float32).copy())
                              for v, what in zip(n.input[1:5], ("scale", "B", "mean", "var")))
    eps = float(_attrs(n).get("epsilon", 1e-5))
    scale = gamma / torch.sqrt(var + eps)
    shift = beta - mean * scale
    inp = imp.src(n.input[0], n)
    prev = imp.find(inp)
    if prev.op == "conv" and imp.consumers.get(n.input[0], 0) == 1 and not prev.act:
        if prev.name in imp.weights:
            raise UnsupportedOpError(f"{imp.where(n)}: a BatchNormalization after a quantized "
                                     f"Conv (fold it before quantizing)")
        w, b = prev.attrs.weight, prev.attrs.bias
        prev.attrs = replace(prev.attrs, weight=w * scale[:, None, None, None],
                             bias=b * scale + shift)
        imp.names[n.output[0]] = prev.name
        return
    k = scale.numel()
    imp.emit(n, "conv", [inp], Conv(scale.view(k, 1, 1, 1).clone(), shift.clone(), (1, 1),
                                    (0, 0), k))


@pattern("Identity", "Dropout")
def _from_identity(imp: Importer, n) -> None:
    imp.same(n, n.input[0])


@pattern("Constant")
def _from_constant(imp: Importer, n) -> None:
    import onnx
    a = {x.name: x for x in n.attribute}
    if "value" not in a:
        raise UnsupportedOpError(f"{imp.where(n)}: only a tensor value is supported")
    imp.consts[n.output[0]] = onnx.numpy_helper.to_array(a["value"].t)


# --- transformers -------------------------------------------------------------------------
# The nodes the fx front end makes for attention (sw.ops.attention): linears, head views
# (Reshape, Transpose, Split as strided views; a copy where no view exists), matmuls of two
# activations with attention's scaling folded into their factor, softmax (causal where
# the scores get the exporter's lower-triangular mask), LayerNorm, GELU (erf or tanh).

#: What a pattern left half-matched at the end of the graph was (the import's error).
_PENDING_LEFT = {
    "scale": "a Mul/Div by a constant whose result is not a matmul's operand",
    "causal": "a causal mask added to scores that no Softmax reads",
    "gelu": "an incomplete GELU (erf form)",
}


def _is_flat(imp: Importer, name: str) -> bool:
    """Whether IR node ``name`` is a flat tensor (PyTorch's order in DRAM): made by a view,
    copy or matmul, token-shaped (at most 3-D), or made by a token operator from flat
    operands; a channel-last image is not (as :func:`sw.ops.reshape.is_flat`)."""
    from .. import ops
    node = imp.find(name)
    if node.op in ("view", "copy", "matmul", "unsupported"):
        return True                   # (a placeholder: its own error is the one to report)
    try:
        if imp._value(name).dim() <= 3:
            return True
    except Exception:  # noqa: BLE001 - an operand the reference cannot run: its operands say
        pass
    return bool(node.inputs) and ops.get(node.op).tokens and \
        all(_is_flat(imp, i) for i in node.inputs)


def _compiled(imp: Importer, name: str) -> torch.Tensor:
    """IR node ``name``'s value with the strides the compiled program gives it: every
    operator stores row-major, a view takes its operand's strides."""
    from .. import ops
    node = imp.find(name)
    if node.op != "view":
        return imp._value(name).contiguous()
    return ops.get("view").forward(node, [_compiled(imp, node.inputs[0])])


def _view_reshape(imp: Importer, n, x: str, target: tuple[int, ...]) -> None:
    """A Reshape of a flat tensor to ``target`` (batch first, unchanged): a view, after a
    copy where no view has it (a head merge of transposed heads)."""
    from ..ops.reshape import Reshape
    in_shape = imp.shape(x)
    if target[0] != in_shape[0]:
        raise UnsupportedOpError(f"{imp.where(n)}: Reshape of {list(in_shape)} to "
                                 f"{list(target)} (only reshapes that keep the batch dimension "
                                 f"first and whole are supported)")
    if tuple(target) == tuple(in_shape):
        imp.same(n, x)
        return
    inp = imp.src(x, n)
    name, where = imp.node_name(n), n.name or n.output[0]
    try:
        _compiled(imp, inp)[0].view(target[1:])
    except RuntimeError:
        inp = imp.add(Node(f"{name}_copy", "copy", [inp], where=f"{where} (copy)")).name
    imp.names[n.output[0]] = imp.add(Node(name, "view", [inp], Reshape("shape", tuple(target[1:])),
                                          where=where)).name


def _matmul(imp: Importer, n) -> None:
    """A MatMul of two activations: a ``matmul`` node; the scalar factors pending on its
    operands (:func:`_scale`) folded into its factor."""
    from ..ops.matmul import Matmul
    factor = 1.0
    ins = []
    for v in n.input[:2]:
        p = imp.pending.get(v)
        if p is not None and p[0] == "scale":
            imp.pending.pop(v)
            factor *= p[2]
            ins.append(p[1])
        else:
            ins.append(imp.src(v, n))
    sa, sb = imp.shape(n.input[0]), imp.shape(n.input[1])
    if sa is not None and sb is not None and (
            len(sa) < 3 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]):
        raise UnsupportedOpError(f"{imp.where(n)}: operands {list(sa)} and {list(sb)}; "
                                 f"supported: [batch, ..., M, K] @ [batch, ..., K, N] with the "
                                 f"same leading dimensions (no broadcasting)")
    for v, name in zip(n.input[:2], ins):
        if not _is_flat(imp, name):
            raise UnsupportedOpError(f"{imp.where(n)}: operand {v!r} is not a token-shaped "
                                     f"tensor")
    imp.emit(n, "matmul", ins, Matmul(factor))


def _exact_attention_scale(imp: Importer, nodes: list[Node]) -> None:
    """A matmul factor that is ``1 / sqrt(K)`` (``K`` its reduction length) to float32
    precision becomes ``1 / sqrt(K)`` exactly: the exporter wrote the model's scale as a
    float32 (``scaled_dot_product_attention`` as the float32 square root of it on ``q``
    and on ``kᵀ``), and a factor a few 1e-8 apart moves the scores' calibrated range, and
    with it a rounding, away from the torch path's."""
    from ..ops.matmul import Matmul
    if imp.input_shape is None:
        return
    for node in nodes:
        if node.op == "matmul":
            exact = 1.0 / math.sqrt(imp._value(node.inputs[0]).shape[-1])
            if abs(node.attrs.factor / exact - 1) < 1e-6:
                node.attrs = Matmul(exact)


def _readers(imp: Importer, value: str) -> list:
    """The ONNX nodes that read ``value``, through a QDQ model's QuantizeLinear and
    DequantizeLinear pairs."""
    out = []
    for r in imp.readers.get(value, []):
        if r.op_type in ("QuantizeLinear", "DequantizeLinear") and r.input[0] == value:
            out.extend(_readers(imp, r.output[0]))
        else:
            out.append(r)
    return out


def _qdq_after(imp: Importer, value: str) -> list:
    """The QuantizeLinear and DequantizeLinear nodes that pass ``value`` on (a QDQ model's)."""
    out = []
    for r in imp.readers.get(value, []):
        if r.op_type in ("QuantizeLinear", "DequantizeLinear") and r.input[0] == value:
            out += [r] + _qdq_after(imp, r.output[0])
    return out


def _scalar(imp: Importer, n, c: np.ndarray) -> float:
    if c.size != 1:
        raise UnsupportedOpError(f"{imp.where(n)}: a {n.op_type} by a constant of shape "
                                 f"{list(c.shape)} is not supported (by a scalar: a matmul's "
                                 f"scaling)")
    return float(c.reshape(-1)[0])


def _scale(imp: Importer, n, x: str, c: np.ndarray, divide: bool) -> None:
    """``x * c`` or ``x / c`` with ``c`` a scalar: folded into the matmul that computes
    ``x`` (``scores * scale``) or, where every reader of the result is a MatMul, into that
    matmul's factor (the exporter's ``q * sqrt(scale)``, ``kᵀ * sqrt(scale)`` of
    ``scaled_dot_product_attention``)."""
    from ..ops.matmul import Matmul
    value = _scalar(imp, n, c)
    if divide:
        if value == 0:
            raise UnsupportedOpError(f"{imp.where(n)}: a division by zero")
        value = 1.0 / value
    if x in imp.pending:
        raise UnsupportedOpError(f"{imp.where(n)}: a {n.op_type} by a constant inside another "
                                 f"pattern ({imp.pending[x][0]})")
    prev = imp.find(imp.src(x, n))
    if prev.op == "matmul" and prev.act is None and imp.consumers.get(x, 0) == 1:
        prev.attrs = Matmul(prev.attrs.factor * value)
        # A QDQ model's quantization of the unscaled product is of a tensor the matmul does
        # not store: the scaled one's is the matmul's.
        imp.given.pop(prev.name, None)
        imp.names[n.output[0]] = prev.name
        return
    readers = _readers(imp, n.output[0])
    if len(readers) == 1 and readers[0].op_type == "MatMul" and \
            all(i not in imp.consts for i in readers[0].input):
        imp.pending[n.output[0]] = ("scale", imp.src(x, n), value)
        return
    raise UnsupportedOpError(f"{imp.where(n)}: a {n.op_type} by a constant is supported only as "
                             f"a matmul's scaling (of its result, or of an operand only it reads)")


def _causal_mask(imp: Importer, n, scores: Node, mask: np.ndarray) -> None:
    """``scores + mask`` with ``mask`` the exporter's causal mask ([T, T]: 0 on and below the
    diagonal, -inf above): the Softmax that reads it is causal."""
    m = mask.reshape(mask.shape[-2:]) if mask.ndim >= 2 and math.prod(mask.shape[:-2]) == 1 \
        else None
    try:
        shape = tuple(imp._value(scores.name).shape)
    except Exception:  # noqa: BLE001 - scores the reference cannot run: their own error
        shape = None
    ok = m is not None and m.shape[0] == m.shape[1] and (
        shape is None or tuple(shape[-2:]) == m.shape)
    if ok:
        above = np.triu(np.ones(m.shape, bool), 1)
        ok = bool(np.all(m[~above] == 0) and np.all(m[above] <= -1e4))
    if not ok:
        what = "an added mask" if n.op_type == "Add" else "a mask"
        raise UnsupportedOpError(f"{imp.where(n)}: {what} of shape {list(mask.shape)} that is "
                                 f"not a causal one (0 on and below the diagonal, -inf above, "
                                 f"as is_causal=True exports); other masks are not supported")
    imp.pending[n.output[0]] = ("causal", scores.name)


@pattern("Where")
def _from_where(imp: Importer, n) -> None:
    """``Where(mask, -inf, scores)`` (``scores.masked_fill(mask, -inf)``) or ``Where(keep,
    scores, -inf)`` with a constant condition: a causal mask where the masked positions are
    the keys after each query (:func:`_causal_mask`)."""
    cond, a, b = n.input
    if cond not in imp.consts or (a in imp.consts) == (b in imp.consts):
        raise UnsupportedOpError(f"{imp.where(n)}: Where is supported only as a constant mask "
                                 f"of attention scores (a constant condition, the scores and "
                                 f"a constant fill)")
    x, fill, masked = (b, a, imp.consts[cond].astype(bool)) if a in imp.consts else \
        (a, b, ~imp.consts[cond].astype(bool))
    prev = imp.find(imp.src(x, n))
    value = imp.consts[fill]
    if prev.op != "matmul" or imp.consumers.get(x, 0) != 1 or np.any(value > -1e4):
        raise UnsupportedOpError(f"{imp.where(n)}: Where is supported only as a mask of a "
                                 f"matmul's scores with -inf (or below -1e4)")
    _causal_mask(imp, n, prev, np.where(masked, -np.inf, 0.0))


@pattern("Softmax")
def _from_softmax(imp: Importer, n) -> None:
    from ..ops.softmax import SoftmaxAttrs
    x = n.input[0]
    p = imp.pending.pop(x, None)
    if p is not None and p[0] != "causal":
        raise UnsupportedOpError(f"{imp.where(n)}: its operand is inside another pattern "
                                 f"({p[0]})")
    src = p[1] if p is not None else imp.src(x, n)
    shape = imp.shape(x) if p is None else tuple(imp._value(src).shape)
    rank = len(shape) if shape else None
    axis = int(_attrs(n).get("axis", -1))
    if rank is None or axis % rank != rank - 1:
        raise UnsupportedOpError(f"{imp.where(n)}: Softmax over axis {axis} of a tensor of "
                                 f"shape {list(shape) if shape else 'unknown'} (the last axis "
                                 f"is supported)")
    if not _is_flat(imp, src):
        raise UnsupportedOpError(f"{imp.where(n)}: a Softmax of an image (of token-shaped "
                                 f"tensors only)")
    imp.emit(n, "softmax", [src], SoftmaxAttrs(-1, causal=p is not None))


@pattern("LayerNormalization")
def _from_layernorm(imp: Importer, n) -> None:
    from ..ops.layernorm import LayerNormAttrs
    a = _attrs(n)
    shape = imp.shape(n.input[0])
    axis = int(a.get("axis", -1))
    if shape is None or axis % len(shape) != len(shape) - 1:
        raise UnsupportedOpError(f"{imp.where(n)}: LayerNormalization over axis {axis} (only "
                                 f"over the last axis)")
    if any(o for o in n.output[1:]):
        raise UnsupportedOpError(f"{imp.where(n)}: the Mean and InvStdDev outputs are not "
                                 f"supported")
    f = shape[-1]

    def values(i: int, what: str):
        if len(n.input) <= i or not n.input[i]:
            return None
        v = imp.const(n.input[i], n, what).astype(np.float64).reshape(-1)
        if v.size == 1:
            v = np.full(f, float(v[0]))
        if v.size != f:
            raise UnsupportedOpError(f"{imp.where(n)}: {what} of {v.size} values for {f} "
                                     f"features")
        return tuple(float(t) for t in v)

    imp.emit(n, "layernorm", [imp.src(n.input[0], n)],
             LayerNormAttrs(int(f), _decimal(a.get("epsilon", 1e-5)), values(1, "the scale"),
                            values(2, "the bias")))


def _decimal(value: float) -> float:
    """A float32 attribute as the shortest decimal that float32 rounds to it (ONNX keeps
    ``epsilon=1e-5`` as 9.99999975e-06; the fx front end, and the integer LayerNorm's
    rounded epsilon, see 1e-5)."""
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


@pattern("Split")
def _from_split(imp: Importer, n) -> None:
    """A split of a flat tensor along a dimension other than the batch (GPT-2's fused
    ``q, k, v``): each part a strided view (a ``slice`` view, as the fx front end's)."""
    from ..ops.reshape import Reshape
    a = _attrs(n)
    x = n.input[0]
    shape = imp.shape(x)
    inp = imp.src(x, n)
    if shape is None or not _is_flat(imp, inp):
        raise UnsupportedOpError(f"{imp.where(n)}: only a split of a token-shaped tensor of "
                                 f"known shape is supported")
    axis = int(a.get("axis", 0)) % len(shape)
    if axis == 0:
        raise UnsupportedOpError(f"{imp.where(n)}: a split of the batch dimension is not "
                                 f"supported")
    if len(n.input) > 1 and n.input[1]:
        sizes = [int(v) for v in imp.const(n.input[1], n, "the split").reshape(-1)]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        k = len(n.output)
        step = -(-shape[axis] // k)
        sizes = [min(step, shape[axis] - i * step) for i in range(k)]
    if sum(sizes) != shape[axis] or len(sizes) != len(n.output):
        raise UnsupportedOpError(f"{imp.where(n)}: split {sizes} of a dimension of "
                                 f"{shape[axis]}")
    start = 0
    for out, size in zip(n.output, sizes):
        node = imp.add(Node(imp.node_name(n), "view", [inp],
                            Reshape("slice", (axis - 1, start, start + size)),
                            where=f"{n.name or n.output[0]} ({start}:{start + size})"))
        if out:
            imp.names[out] = node.name
        start += size


def _match_tanh_gelu(imp: Importer, g) -> None:
    """Find the tanh form of GELU as PyTorch exports ``nn.GELU(approximate="tanh")``:
    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x * x * x)))`` (in a QDQ model
    with a QuantizeLinear/DequantizeLinear pair after each node and constant); the last
    Mul becomes one ``gelu`` node (``"tanh"``), the other nodes, and the pairs between
    them, are skipped. Every value inside must be read only inside the pattern."""
    producer = {o: nd for nd in g.node for o in nd.output}

    def prod(v):
        """The node computing ``v``, through Q/DQ pairs."""
        nd = producer.get(v)
        while nd is not None and nd.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nd = producer.get(nd.input[0])
        return nd

    def const(v):
        nd = producer.get(v)
        while nd is not None and nd.op_type in ("QuantizeLinear", "DequantizeLinear"):
            v, nd = nd.input[0], producer.get(nd.input[0])
        if v in imp.consts:
            return imp.consts[v]
        if nd is not None and nd.op_type == "Constant" and nd.attribute and \
                nd.attribute[0].name == "value":
            import onnx
            return onnx.numpy_helper.to_array(nd.attribute[0].t)
        return None

    def same(a, b):
        return a == b or prod(a) is not None and prod(a) is prod(b)

    def split(nd, op, want=None):
        """``nd`` as ``op(other, c)`` (either order) with ``c`` near ``want`` (or, None,
        any non-constant); returns the other operand or None."""
        if nd is None or nd.op_type != op or len(nd.input) != 2:
            return None
        for i in (0, 1):
            a, b = nd.input[i], nd.input[1 - i]
            if want is None and const(a) is None and const(b) is None:
                return list(nd.input)
            if want is not None and const(b) is not None and _near(const(b), want) and \
                    const(a) is None:
                return a
        return None

    for t in g.node:
        if t.op_type != "Tanh":
            continue
        m3 = prod(t.input[0])
        add = prod(split(m3, "Mul", math.sqrt(2 / math.pi)) or "")
        ops_ = split(add, "Add")
        if ops_ is None:
            continue
        found = None
        for x, cube in (ops_, ops_[::-1]):
            m2 = prod(cube)
            m1 = prod(split(m2, "Mul", 0.044715) or "")
            pair = split(m1, "Mul")
            if pair is None or not any(same(x, v) for v in pair):
                continue
            m0 = prod(pair[1] if same(pair[0], x) else pair[0])
            if m0 is not None and m0.op_type == "Mul" and all(same(v, x) for v in m0.input):
                found = (x, [m0, m1, m2, add, m3, t])
                break
        if found is None:
            continue
        x, chain = found
        plus = [r for r in _readers(imp, t.output[0]) if split(r, "Add", 1.0) is not None]
        if len(plus) != 1:
            continue
        times = [r for r in _readers(imp, plus[0].output[0])
                 if split(r, "Mul") is not None and any(same(x, v) for v in r.input)]
        if len(times) != 1:
            continue
        half = [r for r in _readers(imp, times[0].output[0]) if split(r, "Mul", 0.5) is not None]
        if len(half) != 1:
            continue
        inside = chain + [plus[0], times[0]]
        ids = {id(nd) for nd in inside + half}
        if not all(id(r) in ids for nd in inside for r in _readers(imp, nd.output[0])):
            continue
        pairs = [q for nd in inside for q in _qdq_after(imp, nd.output[0])]
        imp.skip.update(id(nd) for nd in inside + pairs)
        imp.fused[id(half[0])] = lambda imp, n, x=x: imp.emit(n, "gelu", [imp.src(x, n)], "tanh")


def _match_layernorm(imp: Importer, g) -> None:
    """Find LayerNorm as PyTorch exports ``nn.LayerNorm`` before opset 17: ``d = x -
    ReduceMean(x)``, ``d / Sqrt(ReduceMean(Pow(d, 2)) + eps)``, then ``Mul`` by the weight
    and ``Add`` of the bias (each optional), all over the last axis; the last node becomes
    one ``layernorm`` node, the others are skipped. Every value inside must be read only
    inside the pattern."""
    from ..ops.layernorm import LayerNormAttrs
    producer = {o: nd for nd in g.node for o in nd.output}

    def const(v):
        while v in producer and producer[v].op_type == "Identity":
            v = producer[v].input[0]      # (the exporter shares equal parameters so)
        if v in imp.consts:
            return imp.consts[v]
        nd = producer.get(v)
        if nd is not None and nd.op_type == "Constant" and nd.attribute and \
                nd.attribute[0].name == "value":
            import onnx
            return onnx.numpy_helper.to_array(nd.attribute[0].t)
        return None

    def last_axis_mean(nd) -> bool:
        if nd is None or nd.op_type != "ReduceMean" or not _attrs(nd).get("keepdims", 1):
            return False
        axes = _attrs(nd).get("axes")
        if axes is None and len(nd.input) > 1 and nd.input[1]:
            c = const(nd.input[1])
            axes = None if c is None else c.reshape(-1).tolist()
        shape = imp.shapes.get(nd.input[0])
        return axes is not None and len(axes) == 1 and (
            int(axes[0]) == -1 or shape is not None and int(axes[0]) == len(shape) - 1)

    def only(v, op):
        rs = imp.readers.get(v, [])
        return rs[0] if len(rs) == 1 and rs[0].op_type == op else None

    for r1 in g.node:
        if not last_axis_mean(r1):
            continue
        x = r1.input[0]
        sub = next((r for r in imp.readers.get(r1.output[0], []) if r.op_type == "Sub" and
                    list(r.input) == [x, r1.output[0]]), None)
        if sub is None or len(imp.readers.get(r1.output[0], [])) != 1:
            continue
        d = sub.output[0]
        users = imp.readers.get(d, [])
        pow_ = next((r for r in users if r.op_type == "Pow" and r.input[0] == d and
                     const(r.input[1]) is not None and _near(const(r.input[1]), 2.0)), None)
        div = next((r for r in users if r.op_type == "Div" and r.input[0] == d), None)
        if pow_ is None or div is None or len(users) != 2:
            continue
        r2 = only(pow_.output[0], "ReduceMean")
        add = only(r2.output[0], "Add") if r2 is not None and last_axis_mean(r2) else None
        if add is None:
            continue
        eps = next((const(v) for v in add.input if v != r2.output[0]), None)
        sqrt = only(add.output[0], "Sqrt")
        if eps is None or eps.size != 1 or sqrt is None or only(sqrt.output[0], "Div") is not div \
                or div.input[1] != sqrt.output[0]:
            continue
        inside, last = [r1, sub, pow_, r2, add, sqrt], div
        weight = bias = None
        for op in ("Mul", "Add"):
            nxt = only(last.output[0], op)
            c = None if nxt is None else next(
                (const(v) for v in nxt.input if v != last.output[0]), None)
            if c is None or c.ndim > 1:
                break
            inside.append(last)
            last = nxt
            if op == "Mul":
                weight = c
            else:
                bias = c
        def emit(imp, n, x=x, eps=_decimal(float(eps.reshape(-1)[0])), weight=weight,
                 bias=bias):
            f = imp._value(imp.src(x, n)).shape[-1]
            for v, what in ((weight, "weight"), (bias, "bias")):
                if v is not None and v.size not in (1, f):
                    raise UnsupportedOpError(f"{imp.where(n)}: a LayerNorm (its decomposition) "
                                             f"with a {what} of {v.size} values for {f} "
                                             f"features")

            def values(v):
                return None if v is None else tuple(
                    float(t) for t in np.broadcast_to(v.astype(np.float64).reshape(-1), (f,)))
            imp.emit(n, "layernorm", [imp.src(x, n)], LayerNormAttrs(int(f), eps, values(weight),
                                                                   values(bias)))
        imp.skip.update(id(nd) for nd in inside)
        imp.fused[id(last)] = emit
