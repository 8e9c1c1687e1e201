"""Calibrated post-training quantization and the integer golden of a whole model.

``quantize(model, calibration)`` traces the model, runs the calibration inputs
through the float graph to record each tensor's range, and returns a
:class:`QuantizedModel`: an ``nn.Module`` whose ``forward`` runs the PyTorch
integer golden (``sw.golden``) layer by layer, exactly as the NPU must, and
returns the dequantized float output.

Rules (docs/numerics.md): activations int8 per tensor, asymmetric, from the
calibrated min/max (widened to include 0), symmetric where a matmul of two activations
reads them (``sw.ops.symmetric_operands``); weights int8 per output channel,
symmetric; bias int32 at scale ``s_in * s_w``, with the input zero point folded
in; requantization multiplier and shift per channel. Max pooling, flatten and a
standalone ReLU keep their input's quantization; average pooling keeps it too
and divides by the window size through the requantizer; residual add rescales
both inputs to a common integer scale on the ALU before requantizing.
"""

from __future__ import annotations

import copy
import itertools
import warnings

from typing import Iterable

import torch
import torch.nn as nn

from . import ops
from .frontend import UnsupportedOpError, trace
from .ir import Graph, QNode, QParams
from .ops.add import ADD_SHIFT

__all__ = ["QParams", "QNode", "QuantizedModel", "quantize", "ADD_SHIFT", "float_forward"]


def float_forward(graph: Graph, feeds: dict[str, torch.Tensor], record: dict | None = None,
                  shapes: dict | None = None) -> dict[str, torch.Tensor]:
    """Run the float reference of every node of ``graph``; returns its outputs by name.

    ``feeds`` maps each input node's name to a batched float tensor. ``record``, when
    given, is widened to each node's output (min, max); ``shapes`` receives each node's
    output shape of one sample.
    """
    env: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        op = ops.get(node.op)
        args = [feeds[node.name]] if node.op == "input" else [env[i] for i in node.inputs]
        if node.op != "input" and op.ids != any(not a.dtype.is_floating_point for a in args):
            bad = next(i for i, a in zip(node.inputs, args) if op.ids == a.dtype.is_floating_point)
            hint = "; the model takes float tensors" \
                if not op.ids and graph.node(bad).op == "input" else ""
            raise UnsupportedOpError(
                f"{node.op} at {node.where}: its operand {bad} is "
                + (f"int64 token ids, which only an embedding takes{hint}" if not op.ids else
                   "float, not the integer token ids it takes"))
        if not op.tokens and any(a.dim() == 3 for a in args):
            bad = next(i for i, a in zip(node.inputs, args) if a.dim() == 3)
            raise UnsupportedOpError(
                f"{node.op} at {node.where}: its operand {bad} is token-shaped "
                f"{list(env[bad].shape[1:])} ([batch, tokens, features]), which {node.op} does "
                f"not take; {ops.token_ops()} take token tensors")
        y = op.forward(node, args)
        if node.act is not None:
            y = ops.get(node.act).forward(node, [y])
        env[node.name] = y
        if shapes is not None:
            shapes[node.name] = tuple(y.shape[1:])
        if record is not None:
            lo, hi = float(y.min()), float(y.max())
            old = record.get(node.name)
            record[node.name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return {name: env[name] for name in graph.outputs}


class QuantizedModel(nn.Module):
    """The quantized model; ``forward`` is the integer golden, returning dequantized floats."""

    def __init__(self, nodes: list[QNode], output: str, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.nodes = nodes
        self.output = output
        self.input_shape = input_shape

    def node(self, name: str) -> QNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def input_qparams(self) -> QParams:
        return self.nodes[0].out

    @property
    def output_qparams(self) -> QParams:
        return self.node(self.output).out

    @property
    def input_dtype(self) -> torch.dtype:
        """What the model takes: float, or int64 token ids (a model that starts with an
        embedding)."""
        return torch.int64 if self.nodes[0].attrs == "int64" else torch.float32

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, not {type(x).__name__}")
        if self.input_dtype == torch.int64:
            if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
                raise TypeError(f"input must be integer token ids, not {x.dtype}")
        elif not x.dtype.is_floating_point:
            raise TypeError(f"input must be a float tensor, not {x.dtype}")
        shape = tuple(x.shape)
        if shape == self.input_shape:
            x = x.unsqueeze(0)
        elif shape[1:] != self.input_shape:
            raise ValueError(f"input shape {shape} does not match the model's "
                             f"{self.input_shape} (or [batch, *{self.input_shape}])")
        return x

    def node_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The golden's integer output of every node for input ``x`` (batched), by name
        (per-layer agreement: bench/transformer_models.py)."""
        env: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            args = [x] if node.op == "input" else [env[i] for i in node.inputs]
            env[node.name] = ops.get(node.op).golden(node, args)
        return env

    def forward_int(self, x: torch.Tensor) -> torch.Tensor:
        """Integer output (int8) of the golden for float input ``x`` (batched)."""
        return self.node_outputs(x)[self.output]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The golden's float output; one sample in gives one sample out (as
        ``sw.Device.run`` and PyTorch's modules do), a batch gives a batch."""
        unbatched = isinstance(x, torch.Tensor) and tuple(x.shape) == self.input_shape
        y = self.output_qparams.dequantize(self.forward_int(self.check_input(x)))
        return y[0] if unbatched else y


def quantize(model: nn.Module | Graph,
             calibration: Iterable[torch.Tensor] | None, *,
             frontend: str = "auto") -> QuantizedModel:
    """Post-training quantization of ``model`` calibrated on ``calibration`` inputs.

    ``model`` is an ``nn.Module`` or a graph a front end made (:func:`sw.import_onnx`).
    A module is traced by ``frontend`` (:func:`sw.frontend.trace`): ``"fx"``,
    ``"export"`` (torch.export, on the first calibration batch), or ``"auto"``, fx
    and torch.export where fx cannot trace the model. ``calibration`` is an iterable of float input tensors, each
    ``[batch, *shape]``; a single tensor is taken as one batch. A QDQ ONNX model's
    quantization is used as given; such a model needs no calibration (``None``) when it
    quantizes every tensor. ``model`` itself is left as it is (its
    training/eval mode included): the quantizer traces and runs a copy in eval mode.
    Raises :class:`sw.UnsupportedOpError` for operations the flow does not
    support, and ``ValueError`` for an empty, ill-shaped or non-finite calibration set
    and for a batch the model cannot run. Warns (``RuntimeWarning``, naming the tensor)
    when a tensor's calibrated range is degenerate (all zeros or below 1e-8): its
    quantized values are then all zero.
    """
    if not isinstance(model, (nn.Module, Graph)):
        raise TypeError(f"model must be a torch.nn.Module or a graph (sw.import_onnx), not "
                        f"{type(model).__name__}")
    from .frontend.onnx import OnnxGraph
    given = isinstance(model, OnnxGraph) and model.prequantized
    if calibration is None:
        if not (given and model.quantizes_all() and model.input_shape is not None):
            raise ValueError("calibration is None: only a QDQ ONNX model that quantizes every "
                             "tensor and fixes its input shape needs no calibration")
        calibration = []
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]     # one batch
    if isinstance(model, nn.Module) and model.training:
        model = copy.deepcopy(model).eval()   # not the caller's model: theirs stays in training
    calibration = iter(calibration)
    first = next(calibration, None)
    if isinstance(model, Graph):
        graph = model
    elif isinstance(first, torch.Tensor) and first.dim() >= 2 and \
            (first.dtype.is_floating_point or first.dtype == torch.int64):
        graph = trace(model, example=first, frontend=frontend)
    else:
        graph = trace(model, frontend=frontend)
    calibration = itertools.chain([] if first is None else [first], calibration)
    record: dict[str, tuple[float, float]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    input_shape = None
    if given and first is None:
        input_shape = model.input_shape
    n = 0
    with torch.no_grad():
        ids = graph.nodes[0].attrs == "int64"      # token ids (an embedding's input)
        for x in calibration:
            if not isinstance(x, torch.Tensor) or x.dim() < 2 or \
                    (x.dtype != torch.int64 if ids else not x.dtype.is_floating_point):
                raise ValueError(f"calibration must yield {'int64' if ids else 'float'} tensors "
                                 f"of shape [batch, *input]")
            if not torch.isfinite(x).all():
                raise ValueError(f"calibration batch {n} holds NaN or infinite values")
            if input_shape is None:
                input_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != input_shape:
                raise ValueError(f"calibration inputs differ in shape: {tuple(x.shape[1:])} "
                                 f"vs {input_shape}")
            try:
                float_forward(graph, {graph.inputs[0]: x}, record)
            except (RuntimeError, UnsupportedOpError) as exc:
                # A 3-D batch for an image model reads as tokens: say what it likely is
                # (only when the graph's input itself is the token-shaped operand: a token
                # tensor that a layer makes and a later layer refuses is the model's own).
                unbatched = x.dim() == 3 and \
                    f"its operand {graph.inputs[0]} is token-shaped" in str(exc)
                if isinstance(exc, UnsupportedOpError) and not unbatched:
                    raise
                raise ValueError(
                    f"the model cannot run calibration batch {n} of shape {tuple(x.shape)} "
                    f"({str(exc).splitlines()[0]}); calibration takes batches [batch, *input]: "
                    f"is this one sample without its batch dimension (x.unsqueeze(0))?") from None
            n += 1
        if n == 0 and input_shape is None:
            raise ValueError("calibration is empty: give at least one input batch")
        zeros = torch.zeros((1,) + input_shape, dtype=torch.int64 if ids else torch.float32)
        float_forward(graph, {graph.inputs[0]: zeros}, shapes=shapes)

    # An operand that its producer stores straight into a concatenation takes the
    # concatenation's quantization (sw.ops.cat: the range of all its operands).
    from .ops.cat import folded_operands
    for operand, cat in folded_operands(graph.nodes, graph.output).items():
        if cat in record:               # (a QDQ model's concatenation has its own)
            record[operand] = record[cat]
    for name, (lo, hi) in record.items():
        if max(abs(lo), abs(hi)) < 1e-8:
            warnings.warn(f"the calibrated range of {name!r} is [{lo:.3g}, {hi:.3g}]: it "
                          f"quantizes to all zeros (calibrate with inputs that reach it, or check "
                          f"the model's weights)", RuntimeWarning, stacklevel=2)
    if isinstance(graph, OnnxGraph):
        ctx = graph.context(record, shapes)          # the QDQ model's quantization first
        quantize_node = graph.quantize_node
    else:
        ctx = ops.QuantContext(record, {}, shapes, ops.symmetric_operands(graph.nodes))
        quantize_node = None
    qnodes: list[QNode] = []
    for node in graph.nodes:
        q = quantize_node(node, ctx) if quantize_node else ops.get(node.op).quantize(node, ctx)
        ctx.qparams[node.name] = q.out
        qnodes.append(q)
    return QuantizedModel(qnodes, graph.output, input_shape)
