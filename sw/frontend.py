"""Front end: trace a ``torch.nn.Module`` into the project's small graph IR.

``trace(model, example)`` runs ``torch.fx.symbolic_trace`` and maps each node to
one of the supported operations: ``conv`` (Conv2d, any kernel, stride, padding
and groups; BatchNorm2d folded into it), ``linear``, ``relu``/``relu6`` (fused
into the producing conv, linear or add where possible), ``maxpool``,
``avgpool``, ``gap`` (global average pooling), ``add`` (residual) and
``flatten``. Dropout and Identity disappear. Anything else raises
:class:`UnsupportedOpError` naming the operation and where it is in the model.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Node", "Graph", "UnsupportedOpError", "trace"]


class UnsupportedOpError(ValueError):
    """The model uses an operation the NPU flow does not support."""


@dataclass
class Node:
    name: str
    op: str                       #: input, conv, linear, relu, relu6, maxpool, avgpool, gap, add, flatten
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    act: str | None = None        #: fused activation: None, "relu" or "relu6"
    where: str = ""               #: module path or code location, for messages


@dataclass
class Graph:
    nodes: list[Node]
    output: str

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def users(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _fold_bn(conv: Node, bn: nn.BatchNorm2d) -> None:
    w, b = conv.attrs["weight"], conv.attrs["bias"]
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    conv.attrs["weight"] = w * scale[:, None, None, None]
    conv.attrs["bias"] = (b - bn.running_mean) * scale + bn.bias.detach()


def trace(model: nn.Module) -> Graph:
    """Trace ``model`` (put in eval mode) into a :class:`Graph`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace expects a torch.nn.Module, not {type(model).__name__}")
    model = model.eval()
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for data-dependent control flow
        raise UnsupportedOpError(f"torch.fx could not trace the model: {exc}") from None
    modules = dict(gm.named_modules())
    nodes: list[Node] = []
    alias: dict[str, str] = {}
    out_name = None

    def src(arg) -> str:
        if not isinstance(arg, torch.fx.Node):
            raise UnsupportedOpError(f"constant operand {arg!r} is not supported")
        return alias.get(arg.name, arg.name)

    def find(name: str) -> Node:
        return next(n for n in nodes if n.name == name)

    for fx_node in gm.graph.nodes:
        name = fx_node.name
        where = fx_node.target if fx_node.op == "call_module" else name
        if fx_node.op == "placeholder":
            if any(n.op == "input" for n in nodes):
                raise UnsupportedOpError(f"model has more than one input ({name}); one is supported")
            nodes.append(Node(name, "input", [], where=name))
        elif fx_node.op == "output":
            out_name = src(fx_node.args[0])
        elif fx_node.op == "call_module":
            mod = modules[fx_node.target]
            inp = src(fx_node.args[0])
            if isinstance(mod, nn.Conv2d):
                if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                    raise UnsupportedOpError(
                        f"Conv2d at {where}: padding {mod.padding!r} mode {mod.padding_mode!r} is "
                        f"not supported (numeric zero padding only)")
                if _pair(mod.dilation) != (1, 1):
                    raise UnsupportedOpError(f"Conv2d at {where}: dilation {mod.dilation} is not supported")
                w = mod.weight.detach().clone()
                b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
                nodes.append(Node(name, "conv", [inp], dict(
                    weight=w, bias=b, stride=_pair(mod.stride), padding=_pair(mod.padding),
                    groups=mod.groups), where=str(where)))
            elif isinstance(mod, nn.BatchNorm2d):
                prev = find(inp)
                if prev.op != "conv" or len(fx_node.args[0].users) != 1 or prev.act:
                    raise UnsupportedOpError(
                        f"BatchNorm2d at {where} must directly follow a Conv2d (it is folded into it)")
                _fold_bn(prev, mod)
                alias[name] = inp
            elif isinstance(mod, nn.Linear):
                w = mod.weight.detach().clone()
                b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
                nodes.append(Node(name, "linear", [inp], dict(weight=w, bias=b), where=str(where)))
            elif isinstance(mod, (nn.ReLU, nn.ReLU6)):
                nodes.append(Node(name, "relu" if isinstance(mod, nn.ReLU) else "relu6", [inp],
                                  where=str(where)))
            elif isinstance(mod, nn.MaxPool2d):
                if _pair(mod.dilation) != (1, 1) or mod.ceil_mode:
                    raise UnsupportedOpError(f"MaxPool2d at {where}: dilation and ceil_mode are not supported")
                nodes.append(Node(name, "maxpool", [inp], dict(
                    kernel=_pair(mod.kernel_size), stride=_pair(mod.stride or mod.kernel_size),
                    padding=_pair(mod.padding)), where=str(where)))
            elif isinstance(mod, nn.AvgPool2d):
                if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                    raise UnsupportedOpError(
                        f"AvgPool2d at {where}: ceil_mode, count_include_pad=False and "
                        f"divisor_override are not supported")
                nodes.append(Node(name, "avgpool", [inp], dict(
                    kernel=_pair(mod.kernel_size), stride=_pair(mod.stride or mod.kernel_size),
                    padding=_pair(mod.padding)), where=str(where)))
            elif isinstance(mod, nn.AdaptiveAvgPool2d):
                if _pair(mod.output_size) != (1, 1):
                    raise UnsupportedOpError(
                        f"AdaptiveAvgPool2d at {where}: only output size 1 (global pooling) is supported")
                nodes.append(Node(name, "gap", [inp], where=str(where)))
            elif isinstance(mod, nn.Flatten):
                if mod.start_dim != 1 or mod.end_dim != -1:
                    raise UnsupportedOpError(f"Flatten at {where}: only start_dim=1, end_dim=-1")
                nodes.append(Node(name, "flatten", [inp], where=str(where)))
            elif isinstance(mod, (nn.Dropout, nn.Identity)):
                alias[name] = inp
            else:
                raise UnsupportedOpError(
                    f"unsupported module {type(mod).__name__} at {where!r}; supported: Conv2d, "
                    f"BatchNorm2d (after Conv2d), Linear, ReLU, ReLU6, MaxPool2d, AvgPool2d, "
                    f"AdaptiveAvgPool2d(1), Flatten, Dropout, Identity")
        elif fx_node.op in ("call_function", "call_method"):
            t = fx_node.target
            if t in (operator.add, torch.add, "add", operator.iadd):
                a, b = fx_node.args[:2]
                if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)):
                    raise UnsupportedOpError(f"add at {name}: adding a constant is not supported")
                nodes.append(Node(name, "add", [src(a), src(b)], where=name))
            elif t in (F.relu, torch.relu, "relu"):
                nodes.append(Node(name, "relu", [src(fx_node.args[0])], where=name))
            elif t in (F.relu6,):
                nodes.append(Node(name, "relu6", [src(fx_node.args[0])], where=name))
            elif t in (torch.flatten, "flatten"):
                start = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("start_dim", 0)
                if start != 1:
                    raise UnsupportedOpError(f"flatten at {name}: only start_dim=1 is supported")
                nodes.append(Node(name, "flatten", [src(fx_node.args[0])], where=name))
            elif t in ("view", "reshape"):
                shape = fx_node.args[1:]
                if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
                    shape = tuple(shape[0])
                if len(shape) != 2 or shape[1] != -1:
                    raise UnsupportedOpError(
                        f"{t} at {name}: only x.{t}(batch, -1) (a flatten) is supported")
                nodes.append(Node(name, "flatten", [src(fx_node.args[0])], where=name))
            elif t in (F.max_pool2d, F.avg_pool2d):
                args = list(fx_node.args[1:])
                kw = dict(fx_node.kwargs)
                names = ["kernel_size", "stride", "padding"]
                for k, v in zip(names, args):
                    kw[k] = v
                kernel = _pair(kw["kernel_size"])
                stride = _pair(kw.get("stride") or kernel)
                padding = _pair(kw.get("padding", 0))
                extra = {k for k in kw if k not in names and kw[k] not in (None, False, 1, True)}
                if extra or kw.get("ceil_mode") or (t is F.avg_pool2d and kw.get("divisor_override")):
                    raise UnsupportedOpError(f"{t.__name__} at {name}: options {sorted(kw)} "
                                             f"beyond kernel, stride, padding are not supported")
                nodes.append(Node(name, "maxpool" if t is F.max_pool2d else "avgpool",
                                  [src(fx_node.args[0])],
                                  dict(kernel=kernel, stride=stride, padding=padding), where=name))
            elif t in (F.adaptive_avg_pool2d,):
                if _pair(fx_node.args[1]) != (1, 1):
                    raise UnsupportedOpError(f"adaptive_avg_pool2d at {name}: only output size 1")
                nodes.append(Node(name, "gap", [src(fx_node.args[0])], where=name))
            elif t in ("size", getattr):
                raise UnsupportedOpError(f"{t} at {name}: shape arithmetic is not supported")
            else:
                tname = getattr(t, "__name__", str(t))
                raise UnsupportedOpError(f"unsupported operation {tname!r} at {name}")
        else:
            raise UnsupportedOpError(f"unsupported node {fx_node.op} {fx_node.target} at {name}")
    if out_name is None:
        raise UnsupportedOpError("the model has no output")
    graph = Graph(nodes, out_name)
    _fuse_activations(graph)
    return graph


def _fuse_activations(graph: Graph) -> None:
    """Fold ReLU/ReLU6 into a producing conv, linear or add that has no other user."""
    for node in list(graph.nodes):
        if node.op not in ("relu", "relu6"):
            continue
        prev = graph.node(node.inputs[0])
        if prev.op in ("conv", "linear", "add") and prev.act is None and \
                len(graph.users(prev.name)) == 1 and graph.output != prev.name:
            prev.act = node.op
            graph.nodes.remove(node)
            for user in graph.users(node.name):
                user.inputs = [prev.name if i == node.name else i for i in user.inputs]
            if graph.output == node.name:
                graph.output = prev.name
            # The fused node keeps the activation's name for messages.
            prev.where = f"{prev.where}+{node.where}"
