"""Reshapes of flat (token-shaped) tensors: ``view``, ``reshape``, ``transpose``,
``permute`` and ``contiguous``, as attention splits and merges heads.

A flat tensor sits in DRAM in PyTorch's row-major order (:attr:`sw.ops.Op.flat_output`),
so these are strided views (:attr:`sw.compiler.Tensor.strides`): no instructions, the
reader (a matmul, :mod:`sw.ops.matmul`) strides through the bytes. A channel-last image
``[C, H, W]`` is ``H*W`` tokens of ``C`` features in the same bytes, so a vision
transformer's patch tokens (``x.flatten(2).transpose(1, 2)`` of a convolution's output)
and their way back (``t.transpose(1, 2).view(B, C, H, W)``) are views too. Where PyTorch itself
copies (``reshape`` of a tensor no view can give, ``contiguous`` of a transposed one) the
front end puts a ``copy`` layer: a DMA copy through the accumulator and the identity
requantizer, rows of the last dimension where it is contiguous, single elements where it
is not. The batch dimension stays first and whole; channel-last images are not views of
this kind (their channel shuffles are :mod:`sw.ops.layout`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from hw import isa

from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import Op, QuantContext, register

__all__ = ["Reshape", "ViewOp", "Copy", "copy_strided", "is_flat", "image_rows_pattern",
           "reshape_pattern", "slice_pattern", "slice_part"]


@dataclass(frozen=True)
class Reshape:
    """A view of one sample: ``kind`` "shape" (``arg`` the new shape), "permute" (``arg``
    the order of the dimensions) or "slice" (``arg`` the dimension, start and stop)."""
    kind: str
    arg: tuple[int, ...]


def _apply(a: Reshape, x: torch.Tensor) -> torch.Tensor:
    if a.kind == "slice":
        dim, start, stop = a.arg
        return x.narrow(dim + 1, start, stop - start)
    if a.kind == "permute":
        return x.permute(0, *[d + 1 for d in a.arg])
    return x.reshape(x.shape[0], *a.arg)


def _keep_q(node: Node, ctx: QuantContext) -> QNode:
    # Moving bytes keeps the operand's quantization.
    return QNode(node.name, node.op, node.inputs, ctx.q(node.inputs[0]), ctx.shape(node.name),
                 node.attrs, None, node.where)


@register
class ViewOp(Op):
    name = "view"
    view = True
    tokens = True
    strided = True
    flat_output = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return _apply(node.attrs, args[0])

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        return _keep_q(node, ctx)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        return _apply(node.attrs, args[0])

    def lower_view(self, c, node, args):
        from ..compiler import Tensor
        src = args[0]
        c.check(src.flat or not src.pad_w, node, f"operand {src.name} {list(src.shape)} is stored "
                                                 f"with a row border; it has no views")
        a = node.attrs
        addr = src.addr
        if a.kind == "slice":
            dim, start, stop = a.arg
            shape = src.shape[:dim] + (stop - start,) + src.shape[dim + 1:]
            strides = src.elem_strides
            addr = src.addr + start * strides[dim]
        elif a.kind == "permute":
            shape = tuple(src.shape[d] for d in a.arg)
            strides = tuple(src.elem_strides[d] for d in a.arg)
        else:
            # PyTorch's own rule for which strides a view of these strides has.
            base = torch.empty(1 + sum((n - 1) * st for n, st in zip(src.shape, src.elem_strides)),
                               dtype=torch.int8)
            try:
                v = base.as_strided(src.shape, src.elem_strides).view(node.shape)
            except RuntimeError:
                c.check(False, node, f"no view of {list(src.shape)} with strides "
                                     f"{list(src.elem_strides)} has shape {list(node.shape)}")
            shape, strides = tuple(v.shape), tuple(v.stride())
        if strides == Tensor(node.name, shape, node.out, flat=True).elem_strides:
            return Tensor(node.name, shape, node.out, addr, flat=True)   # row-major again
        if len(shape) == 3 and strides == (1, shape[2] * shape[0], shape[0]) and addr == src.addr:
            # A channel-last image ([C, H, W] of tokens [H*W, C] transposed): a conv's operand.
            return Tensor(node.name, shape, node.out, addr)
        return Tensor(node.name, shape, node.out, addr, flat=True, strides=strides)


@register
class Copy(Op):
    """Materialize a strided view row-major (what ``contiguous`` does)."""
    name = "copy"
    tokens = True
    strided = True
    flat_output = True

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0].contiguous()

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        return _keep_q(node, ctx)

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0].contiguous()

    def lower(self, c, node, layer_id, args, out):
        src = args[0]
        c.check(src.flat, node, f"operand {src.name} is a channel-last image")
        copy_strided(c, node, layer_id, src.addr, src.shape, src.elem_strides, out.addr)
        return 0


def copy_strided(c, node: QNode, layer_id: int, src: int, shape, strides, dst: int,
                 first: bool = True) -> None:
    """Emit the copy of the int8 tensor of ``shape`` at DRAM ``src`` with element
    ``strides`` to ``dst``, row-major: LOADs into the accumulator and STOREs through
    the identity requantizer, each a serialized step (``chunk``). Where the last
    dimension is contiguous its rows are the vectors (up to ``cols`` elements) and one
    LOAD gathers a 2D pattern of them over the two dimensions before it (a head merge
    ``[T, H, D]`` is one LOAD of T x H rows of D); otherwise every element is a vector of
    one, the pattern over the last two dimensions, so that a STORE of one byte per row
    with a stride of one writes them contiguously (this is how a transpose is done by
    DMA). In both the accumulator rows are in the destination's order, so each step's
    STORE is one run. ``first``: this begins the layer (its CONFIG, the identity
    parameters)."""
    shape, strides = list(shape), list(strides)
    if strides[-1] != 1:
        shape, strides = shape + [1], strides + [1]          # vectors of one element
    while len(shape) < 3:
        shape, strides = [1] + shape, [0] + strides
    if shape[-2] > 1 and strides[-2] > c.MAX_X_STRIDE:
        # Vectors further apart than x_stride reaches: they are the pattern's y instead
        # (the dimension before them goes outside, a step each).
        shape = shape[:-1] + [1] + shape[-1:]
        strides = strides[:-1] + [0] + strides[-1:]
    Y, X, L = shape[-3:]
    sy, sx = strides[-3], strides[-2]
    per = min(c.cfg.acc_depth, c.MAX_VECTORS)
    nx = min(X, per, isa.field_max(isa.Opcode.LOAD, "x_size"))
    # Rows further apart than y_stride reaches: a step each.
    ny = max(1, min(per // nx, c.MAX_VECTORS, Y)) if nx == X and sy <= c.MAX_Y_STRIDE else 1
    params = [c.identity_params(0)]
    for n, idx in enumerate(itertools.product(*map(range, shape[:-3]))):
        s0 = src + sum(i * s for i, s in zip(idx, strides))
        d0 = dst + n * Y * X * L
        for l0 in range(0, L, c.C):
            length = min(c.C, L - l0)
            for y0 in range(0, Y, ny):
                rows = min(ny, Y - y0)
                for x0 in range(0, X, nx):
                    cols = min(nx, X - x0)
                    load = c.acc_load(0, s0 + y0 * sy + x0 * sx + l0, rows, sy if rows > 1 else 0,
                                      cols, sx if cols > 1 else 0, length)
                    store = isa.store(acc=0, dram=d0 + (y0 * X + x0) * L + l0, rows=rows * cols,
                                      stride=L, length=length, param=0, out_zp=0,
                                      clamp_lo=-128, clamp_hi=127)
                    c.chunk(layer_id, first, [load], params, [], [store])
                    first = False


def _value(t: fx.Tracer, fx_node, arg) -> torch.Tensor:
    value = t.values.get(getattr(arg, "name", None))
    if not isinstance(value, torch.Tensor):
        raise UnsupportedOpError(f"{fx_node.target} at {t.place(fx_node)}: its operand's shape "
                                 f"is unknown (trace with an example input: sw.quantize does)")
    return value


def is_flat(t: fx.Tracer, arg) -> bool:
    """Whether fx operand ``arg`` is a flat tensor (PyTorch's order in DRAM): token-shaped,
    made by a view, copy or matmul, or by a token operator from flat operands; a
    channel-last image is not."""
    from . import REGISTRY

    def flat(name: str) -> bool:
        node = next((n for n in t.nodes if n.name == name), None)
        if node is None:
            return False                     # a value in progress (a channel shuffle's)
        if node.op in ("view", "copy", "matmul"):
            return True
        value = t.values.get(name)
        if isinstance(value, torch.Tensor) and value.dim() <= 3:
            return True
        return bool(node.inputs) and REGISTRY[node.op].tokens and all(flat(i) for i in node.inputs)
    return isinstance(arg, torch.fx.Node) and flat(t.src(arg))


def image_rows_pattern(t: fx.Tracer, fx_node) -> bool:
    """``flatten(x, 2)``, ``x.view(B, C, -1)`` or ``x.reshape(B, C, H * W)`` of an image
    ``[B, C, H, W]``: a view (to be transposed into tokens); True if ``fx_node`` is one."""
    x, y = t.values.get(getattr(fx_node.args[0], "name", None)), t.values.get(fx_node.name)
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dim() == 4 and
            tuple(y.shape) == (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])):
        return False
    reshape_pattern(t, fx_node, "shape")
    return True


def _as_compiled(t: fx.Tracer, name: str, value: torch.Tensor) -> torch.Tensor:
    """IR node ``name``'s value (``value`` from the example run) with the strides the
    compiled program gives it: every operator stores row-major, a view takes its operand's
    strides (PyTorch's own kernels may return other strides, e.g. its CPU attention)."""
    node = next((n for n in t.nodes if n.name == name), None)
    if node is None or node.op != "view":
        return value.contiguous()
    base = t.values.get(node.inputs[0])
    if not isinstance(base, torch.Tensor):
        return value
    return _apply(node.attrs, _as_compiled(t, node.inputs[0], base))


def reshape_pattern(t: fx.Tracer, fx_node, kind: str, arg=None) -> None:
    """Add the nodes of a ``view``/``reshape`` (``kind`` "shape"), ``transpose``/``permute``
    (``kind`` "permute", ``arg`` the batched dimension order) or ``contiguous`` (``kind``
    "contiguous") of a flat tensor: a view node, after a copy node where PyTorch copies."""
    src = fx_node.args[0]
    x = _value(t, fx_node, src)
    y = t.values.get(fx_node.name)
    where, inp = t.where(fx_node), t.src(src)
    if not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1] or \
            kind == "permute" and arg[0] != 0:
        raise UnsupportedOpError(f"{fx_node.target} at {t.place(fx_node)}: only reshapes that "
                                 f"keep the batch dimension first and whole are supported")
    sample = _as_compiled(t, inp, x)[0]
    copies = kind == "contiguous" and not sample.is_contiguous()
    if kind == "shape":
        try:
            sample.view(y.shape[1:])
        except RuntimeError:
            copies = True                    # reshape copies where no view exists
    if copies:
        name = fx_node.name if kind == "contiguous" else f"{fx_node.name}_copy"
        t.add(Node(name, "copy", [inp], where=f"{where} (copy)"))
        inp = name
    if kind == "contiguous":
        if not copies:
            t.alias(fx_node.name, inp)
        return
    attrs = Reshape("permute", tuple(d - 1 for d in arg[1:])) if kind == "permute" else \
        Reshape("shape", tuple(y.shape[1:]))
    t.add(Node(fx_node.name, "view", [inp], attrs, where=where))


@fx.function(torch.unflatten, "unflatten")
def _from_unflatten(t: fx.Tracer, fx_node) -> None:
    dim = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim")
    x = _value(t, fx_node, fx_node.args[0])
    if not is_flat(t, fx_node.args[0]) or dim % x.dim() == 0:
        raise UnsupportedOpError(f"unflatten at {t.place(fx_node)}: only the unflatten of a "
                                 f"feature dimension of a flat (token-shaped) tensor is supported")
    reshape_pattern(t, fx_node, "shape")             # heads split: [B, T, H*D] to [B, T, H, D]


def slice_pattern(t: fx.Tracer, fx_node, dim: int, bounds: list[tuple[int, int]]) -> bool:
    """``split``/``chunk`` of a flat tensor along a dimension other than the batch (GPT-2's
    fused ``q, k, v``): each part a strided view of its operand's bytes; True if handled
    (the parts are taken by ``getitem``, :func:`slice_part`)."""
    src = fx_node.args[0]
    if not is_flat(t, src):
        return False
    x = _value(t, fx_node, src)
    dim %= x.dim()
    if dim == 0:
        raise UnsupportedOpError(f"{fx_node.target} at {t.place(fx_node)}: a split of the batch "
                                 f"dimension is not supported")
    t.pending[fx_node.name] = ("flat_slices", t.src(src), bounds, dim - 1)
    return True


def slice_part(t: fx.Tracer, fx_node, pending, index: int) -> None:
    """Part ``index`` of a :func:`slice_pattern`: a view node."""
    _, inp, bounds, dim = pending
    start, stop = bounds[index]
    t.add(Node(fx_node.name, "view", [inp], Reshape("slice", (dim, start, stop)),
               where=t.where(fx_node)))


@fx.function(torch.permute, "permute")
def _from_permute(t: fx.Tracer, fx_node) -> None:
    if len(fx_node.args) > 2:
        dims = fx_node.args[1:]              # x.permute(0, 2, 1, 3)
    else:
        dims = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs["dims"]
    dims = tuple(t.const(dims))
    n = len(dims)
    if not is_flat(t, fx_node.args[0]):
        raise UnsupportedOpError(f"permute at {t.place(fx_node)}: only permutes of flat "
                                 f"(token-shaped) tensors are supported")
    reshape_pattern(t, fx_node, "permute", tuple(d % n for d in dims))
