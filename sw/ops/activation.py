"""ReLU and ReLU6: an output clamp, fused into the producing node where possible.

Fused (into a conv, linear or add with no other user) the activation narrows that
node's store clamp; standalone it keeps its input's quantization and runs as a
load/store through the identity requantizer with the clamp.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw import isa

from ..frontend import fx
from ..ir import Graph, Node, QNode, QParams
from .base import REGISTRY, Op, QuantContext, register

__all__ = ["Activation", "ReLU", "ReLU6", "fuse_activations", "load_store"]


class Activation(Op):
    """An element-wise clamp; ``fn`` is the float function."""
    fn = staticmethod(F.relu)
    op_class = "elementwise"
    tokens = True

    def vector_ops(self, node, in_shapes):
        return math.prod(node.shape)                  # one clamp per element

    def clamp(self, q: QParams) -> tuple[int, int]:
        """The int8 range of the activation's output at quantization ``q``."""
        raise NotImplementedError

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return self.fn(args[0])

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        q_in = ctx.q(node.inputs[0])
        return QNode(node.name, node.op, node.inputs, q_in, ctx.shape(node.name), None, None,
                     node.where, self.clamp(q_in))

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        lo, hi = node.clamp
        return torch.clamp(args[0], lo, hi)

    def lower(self, c, node, layer_id, args, out):
        lo, hi = node.clamp
        return load_store(c, layer_id, args[0], out, c.identity_params(0),
                          clamp_lo=lo, clamp_hi=hi)


def load_store(c, layer_id, src, out, params, **store) -> int:
    """A standalone element-wise layer: each block of ``src`` loaded into the accumulator
    and stored to ``out`` through parameter group 0 (``params``, its LOAD), with the
    STORE fields ``store`` (the clamp, the activation table bit)."""
    ch, h, w = src.geometry
    per = min(c.cfg.acc_depth, c.MAX_VECTORS)
    for first, c0, length, p0, n in c.blocks(ch, h * w, per):
        load = c.acc_load(0, src.addr + p0 * ch + c0, n, ch, 1, 0, length)
        st = isa.store(acc=0, dram=out.addr + p0 * out.pixel_stride + c0, rows=n,
                       stride=out.pixel_stride, length=length, param=0, out_zp=0, **store)
        c.chunk(layer_id, first, [load], [params], [], [st])
    return 0


@register
class ReLU(Activation):
    name = "relu"
    fn = staticmethod(F.relu)

    def clamp(self, q: QParams) -> tuple[int, int]:
        return (max(-128, q.zero_point), 127)


@register
class ReLU6(Activation):
    name = "relu6"
    fn = staticmethod(F.relu6)

    def clamp(self, q: QParams) -> tuple[int, int]:
        hi = q.zero_point + int(round(6.0 / q.scale))
        return (max(-128, q.zero_point), max(max(-128, q.zero_point), min(127, hi)))


@fx.module(nn.ReLU, nn.ReLU6, label="ReLU, ReLU6")
def _from_module(t: fx.Tracer, fx_node, mod, inp: str, where: str) -> None:
    t.add(Node(fx_node.name, "relu" if isinstance(mod, nn.ReLU) else "relu6", [inp], where=where))


@fx.function(F.relu, torch.relu, "relu")
def _from_relu(t: fx.Tracer, fx_node) -> None:
    t.add(Node(fx_node.name, "relu", [t.src(fx_node.args[0])], where=t.where(fx_node)))


@fx.function(F.relu6)
def _from_relu6(t: fx.Tracer, fx_node) -> None:
    t.add(Node(fx_node.name, "relu6", [t.src(fx_node.args[0])], where=t.where(fx_node)))


def fuse_activations(graph: Graph) -> None:
    """Fold each activation into a producing node that fuses activations and has no other user."""
    for node in list(graph.nodes):
        if not isinstance(REGISTRY[node.op], Activation):
            continue
        prev = graph.node(node.inputs[0])
        if REGISTRY[prev.op].fuses_activation and prev.act is None and \
                len(graph.users(prev.name)) == 1 and prev.name not in graph.outputs:
            prev.act = node.op
            graph.nodes.remove(node)
            for user in graph.users(node.name):
                user.inputs = [prev.name if i == node.name else i for i in user.inputs]
            graph.replace_output(node.name, prev.name)
            # The fused node keeps the activation's name for messages.
            prev.where = f"{prev.where}+{node.where}"
