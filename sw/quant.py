"""Calibrated post-training quantization and the integer golden of a whole model.

``quantize(model, calibration)`` traces the model, runs the calibration inputs
through the float graph to record each tensor's range, and returns a
:class:`QuantizedModel`: an ``nn.Module`` whose ``forward`` runs the PyTorch
integer golden (``sw.golden``) layer by layer, exactly as the NPU must, and
returns the dequantized float output.

Rules (docs/numerics.md): activations int8 per tensor, asymmetric, from the
calibrated min/max (widened to include 0); weights int8 per output channel,
symmetric; bias int32 at scale ``s_in * s_w``, with the input zero point folded
in; requantization multiplier and shift per channel. Max pooling, flatten and a
standalone ReLU keep their input's quantization; average pooling keeps it too
and divides by the window size through the requantizer; residual add rescales
both inputs to a common integer scale on the ALU before requantizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import golden
from .frontend import Graph, Node, trace

__all__ = ["QParams", "QNode", "QuantizedModel", "quantize", "ADD_SHIFT"]

#: Residual add: both inputs are scaled to ``2**ADD_SHIFT`` units of the larger scale.
ADD_SHIFT = 14


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x / self.scale) + self.zero_point
        return torch.clamp(q, -128, 127).to(torch.int8)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return (q.to(torch.float32) - self.zero_point) * self.scale


def _qparams(lo: float, hi: float) -> QParams:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        return QParams(1.0, 0)
    scale = (hi - lo) / 255.0
    zp = int(round(-128 - lo / scale))
    return QParams(scale, max(-128, min(127, zp)))


@dataclass
class QNode:
    """A quantized graph node: the integer parameters the golden and the compiler share."""
    name: str
    op: str
    inputs: list[str]
    out: QParams
    shape: tuple[int, ...]          #: output shape of one sample (C, H, W) or (F,)
    attrs: dict
    act: str | None
    where: str
    clamp: tuple[int, int] = (-128, 127)


def _act_clamp(act: str | None, q: QParams) -> tuple[int, int]:
    if act == "relu":
        return (max(-128, q.zero_point), 127)
    if act == "relu6":
        hi = q.zero_point + int(round(6.0 / q.scale))
        return (max(-128, q.zero_point), max(max(-128, q.zero_point), min(127, hi)))
    return (-128, 127)


def _float_forward(graph: Graph, x: torch.Tensor, record: dict | None = None,
                   shapes: dict | None = None) -> torch.Tensor:
    env: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        a = node.attrs
        if node.op == "input":
            y = x
        elif node.op == "conv":
            y = F.conv2d(env[node.inputs[0]], a["weight"], a["bias"], a["stride"], a["padding"],
                         1, a["groups"])
        elif node.op == "linear":
            y = F.linear(env[node.inputs[0]], a["weight"], a["bias"])
        elif node.op == "relu":
            y = F.relu(env[node.inputs[0]])
        elif node.op == "relu6":
            y = F.relu6(env[node.inputs[0]])
        elif node.op == "maxpool":
            y = F.max_pool2d(env[node.inputs[0]], a["kernel"], a["stride"], a["padding"])
        elif node.op == "avgpool":
            y = F.avg_pool2d(env[node.inputs[0]], a["kernel"], a["stride"], a["padding"])
        elif node.op == "gap":
            y = F.adaptive_avg_pool2d(env[node.inputs[0]], 1)
        elif node.op == "add":
            y = env[node.inputs[0]] + env[node.inputs[1]]
        elif node.op == "flatten":
            y = torch.flatten(env[node.inputs[0]], 1)
        else:  # pragma: no cover - the front end produces only the ops above
            raise AssertionError(node.op)
        if node.act == "relu":
            y = F.relu(y)
        elif node.act == "relu6":
            y = F.relu6(y)
        env[node.name] = y
        if shapes is not None:
            shapes[node.name] = tuple(y.shape[1:])
        if record is not None:
            lo, hi = float(y.min()), float(y.max())
            old = record.get(node.name)
            record[node.name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return env[graph.output]


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

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, not {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"input must be a float tensor, not {x.dtype}")
        shape = tuple(x.shape)
        if shape == self.input_shape:
            x = x.unsqueeze(0)
        elif shape[1:] != self.input_shape:
            raise ValueError(f"input shape {shape} does not match the model's "
                             f"{self.input_shape} (or [batch, *{self.input_shape}])")
        return x

    def forward_int(self, x: torch.Tensor) -> torch.Tensor:
        """Integer output (int8) of the golden for float input ``x`` (batched)."""
        env: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            env[node.name] = _golden_node(node, env, x)
        return env[self.output]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_input(x)
        return self.output_qparams.dequantize(self.forward_int(x))


def _golden_node(node: QNode, env: dict, x: torch.Tensor) -> torch.Tensor:
    a = node.attrs
    lo, hi = node.clamp
    if node.op == "input":
        return node.out.quantize(x.to(torch.float32))
    src = env[node.inputs[0]]
    if node.op == "conv":
        acc = golden.conv2d(src, a["w_q"], stride=a["stride"], padding=a["padding"],
                            groups=a["groups"], pad_value=a["zp_in"])
        acc = acc.permute(0, 2, 3, 1)   # channels last for the per-channel store path
        y = golden.requantize(acc, a["bias_q"], a["mult"], a["shift"], node.out.zero_point, lo, hi)
        return y.permute(0, 3, 1, 2).contiguous()
    if node.op == "linear":
        acc = golden.gemm(src, a["w_q"])
        return golden.requantize(acc, a["bias_q"], a["mult"], a["shift"], node.out.zero_point, lo, hi)
    if node.op in ("relu", "relu6"):
        return torch.clamp(src, lo, hi)
    if node.op == "maxpool":
        ph, pw = a["padding"]
        xp = F.pad(src.to(torch.float64), (pw, pw, ph, ph), value=-128.0)
        y = F.max_pool2d(xp, a["kernel"], a["stride"])
        return y.to(torch.int8)
    if node.op in ("avgpool", "gap"):
        if node.op == "gap":
            s = src.to(torch.int64).sum(dim=(2, 3), keepdim=True)
        else:
            ph, pw = a["padding"]
            xp = F.pad(src.to(torch.float64), (pw, pw, ph, ph), value=float(a["zp_in"]))
            s = F.avg_pool2d(xp, a["kernel"], a["stride"], divisor_override=1).to(torch.int64)
        y = golden.multiply_by_quantized_multiplier(s, a["mult"], a["shift"])
        return torch.clamp(y, lo, hi).to(torch.int8)
    if node.op == "add":
        b = env[node.inputs[1]]
        acc = golden.wrap_int32((src.to(torch.int64) - a["zp1"]) * a["a1"]
                                + (b.to(torch.int64) - a["zp2"]) * a["a2"])
        y = golden.multiply_by_quantized_multiplier(acc, a["mult"], a["shift"]) + node.out.zero_point
        return torch.clamp(y, lo, hi).to(torch.int8)
    if node.op == "flatten":
        return torch.flatten(src, 1)
    raise AssertionError(node.op)  # pragma: no cover


def quantize(model: nn.Module, calibration: Iterable[torch.Tensor]) -> QuantizedModel:
    """Post-training quantization of ``model`` calibrated on ``calibration`` inputs.

    ``calibration`` is an iterable of float input tensors, each ``[batch, *shape]``.
    Raises :class:`sw.frontend.UnsupportedOpError` for operations the flow does not
    support, and ``ValueError`` for an empty or ill-shaped calibration set.
    """
    graph = trace(model)
    record: dict[str, tuple[float, float]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    input_shape = None
    n = 0
    with torch.no_grad():
        for x in calibration:
            if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.dim() < 2:
                raise ValueError("calibration must yield float tensors of shape [batch, *input]")
            if input_shape is None:
                input_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != input_shape:
                raise ValueError(f"calibration inputs differ in shape: {tuple(x.shape[1:])} "
                                 f"vs {input_shape}")
            _float_forward(graph, x, record)
            n += 1
        if n == 0:
            raise ValueError("calibration is empty: give at least one input batch")
        _float_forward(graph, torch.zeros((1,) + input_shape), shapes=shapes)

    qnodes: list[QNode] = []
    qp: dict[str, QParams] = {}
    for node in graph.nodes:
        q = _quantize_node(node, graph, record, qp, shapes)
        qp[node.name] = q.out
        qnodes.append(q)
    return QuantizedModel(qnodes, graph.output, input_shape)


def _quantize_node(node: Node, graph: Graph, record, qp, shapes) -> QNode:
    a = node.attrs
    shape = shapes[node.name]
    if node.op == "input":
        return QNode(node.name, "input", [], _qparams(*record[node.name]), shape, {}, None, node.where)
    q_in = qp[node.inputs[0]]
    if node.op in ("conv", "linear"):
        out = _qparams(*record[node.name])
        w = a["weight"].to(torch.float64)
        w_flat = w.reshape(w.shape[0], -1)
        s_w = w_flat.abs().amax(dim=1) / 127.0
        s_w = torch.where(s_w > 0, s_w, torch.ones_like(s_w))
        w_q = torch.clamp(torch.round(w / s_w.reshape(-1, *[1] * (w.dim() - 1))), -127, 127).to(torch.int8)
        bias_q = torch.round(a["bias"].to(torch.float64) / (q_in.scale * s_w)).to(torch.int64)
        # Fold the input zero point: sum_k (x - zx) w = sum_k x w - zx * sum_k w.
        folded = bias_q - q_in.zero_point * w_q.to(torch.int64).reshape(w.shape[0], -1).sum(dim=1)
        folded = torch.clamp(folded, golden.INT32_MIN, golden.INT32_MAX)
        qm = [golden.quantize_multiplier(float(q_in.scale * sw / out.scale)) for sw in s_w]
        attrs = dict(w_q=w_q, bias_q=folded.to(torch.int32), mult=torch.tensor([m for m, _ in qm]),
                     shift=torch.tensor([s for _, s in qm]), zp_in=q_in.zero_point)
        if node.op == "conv":
            attrs.update(stride=a["stride"], padding=a["padding"], groups=a["groups"])
        return QNode(node.name, node.op, node.inputs, out, shape, attrs, node.act, node.where,
                     _act_clamp(node.act, out))
    if node.op in ("relu", "relu6", "maxpool", "flatten"):
        attrs = dict(a)
        return QNode(node.name, node.op, node.inputs, q_in, shape, attrs, None, node.where,
                     _act_clamp(node.op if node.op in ("relu", "relu6") else None, q_in))
    if node.op in ("avgpool", "gap"):
        if node.op == "gap":
            _, h, w = shapes[node.inputs[0]]
            count = h * w
        else:
            count = a["kernel"][0] * a["kernel"][1]
        m, s = golden.quantize_multiplier(1.0 / count)
        attrs = dict(a, mult=m, shift=s, zp_in=q_in.zero_point, count=count)
        return QNode(node.name, node.op, node.inputs, q_in, shape, attrs, None, node.where)
    if node.op == "add":
        out = _qparams(*record[node.name])
        q2 = qp[node.inputs[1]]
        base = max(q_in.scale, q2.scale)
        a1 = int(round(q_in.scale / base * (1 << ADD_SHIFT)))
        a2 = int(round(q2.scale / base * (1 << ADD_SHIFT)))
        m, s = golden.quantize_multiplier(base / (1 << ADD_SHIFT) / out.scale)
        attrs = dict(a1=a1, a2=a2, zp1=q_in.zero_point, zp2=q2.zero_point, mult=m, shift=s)
        return QNode(node.name, "add", node.inputs, out, shape, attrs, node.act, node.where,
                     _act_clamp(node.act, out))
    raise AssertionError(node.op)  # pragma: no cover

