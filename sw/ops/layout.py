"""Channel layout changes: ShuffleNet's channel shuffle (``view`` to channel groups,
``transpose``, ``contiguous``, ``view`` back) and channel slices (``x.chunk(k, 1)``,
``torch.split(x, n, 1)``).

Both are a fixed linear map of each pixel's channels, so they lower to a 1x1 convolution
of 0/1 weights on the array (``channels`` operator), the fastest path the NPU has. A
shuffle keeps its input's range, so its quantization, and moves the int8 values exactly;
a slice is requantized to its own (narrower) range, or to the concatenation's it is
stored into. They count no real MACs (the model does none) but occupy MAC slots.

The shapes these patterns read (``x.size()``, ``num_channels // groups``) come from the
example input the quantizer traces with (:func:`sw.frontend.fx.trace`).
"""

from __future__ import annotations

import operator

import torch

from ..frontend import UnsupportedOpError, fx
from ..ir import Node, QNode
from .base import QuantContext, register
from .conv import Conv, ConvOp, QConv
from .gemm import quantize_gemm

__all__ = ["ChannelMap", "shuffle_weights", "slice_weights"]


@register
class ChannelMap(ConvOp):
    """A 1x1 convolution of 0/1 weights that moves channels (no arithmetic of the model)."""
    name = "channels"
    op_class = "data"
    fuses_activation = False

    def macs(self, node: QNode) -> int:
        return 0

    def packed(self, c, node, src_shape) -> bool:
        return False

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        # A permutation (a shuffle) keeps its operand's quantization, so that it moves the
        # int8 values exactly (and the compiler can fold it, sw.compiler.fold); a slice
        # has its own (narrower) range.
        w = node.attrs.weight[:, :, 0, 0] != 0
        perm = w.shape[0] == w.shape[1] and bool((w.sum(0) == 1).all() and (w.sum(1) == 1).all())
        qnode, fields = quantize_gemm(node, ctx, ctx.q(node.inputs[0]) if perm else None)
        a = node.attrs
        qnode.attrs = QConv(**fields, stride=a.stride, padding=a.padding, groups=a.groups)
        return qnode


def shuffle_weights(channels: int, groups: int) -> torch.Tensor:
    """The [C, C, 1, 1] weights of ``channel_shuffle(x, groups)``: output channel
    ``j * groups + i`` is input channel ``i * (C / groups) + j``."""
    per = channels // groups
    w = torch.zeros(channels, channels, 1, 1)
    for i in range(groups):
        for j in range(per):
            w[j * groups + i, i * per + j] = 1.0
    return w


def slice_weights(channels: int, start: int, stop: int) -> torch.Tensor:
    """The [stop - start, C, 1, 1] weights that select channels ``start`` to ``stop``."""
    w = torch.zeros(stop - start, channels, 1, 1)
    for o in range(stop - start):
        w[o, start + o] = 1.0
    return w


def _channel_node(t: fx.Tracer, fx_node, inp: str, w: torch.Tensor, what: str) -> None:
    t.add(Node(fx_node.name, "channels", [inp],
               Conv(w, torch.zeros(w.shape[0]), (1, 1), (0, 0), 1),
               where=f"{t.where(fx_node)} ({what})"))


def _shape(t: fx.Tracer, fx_node, arg) -> tuple[int, ...]:
    """The batched shape of tensor operand ``arg``, from the example run."""
    value = t.values.get(arg.name) if isinstance(arg, torch.fx.Node) else None
    if not isinstance(value, torch.Tensor):
        raise UnsupportedOpError(
            f"{fx_node.target} at {t.place(fx_node)}: its operand's shape is unknown (trace with "
            f"an example input: sw.quantize does)")
    return tuple(value.shape)


def view_pattern(t: fx.Tracer, fx_node, shape: tuple[int, ...]) -> bool:
    """The layout views of a channel shuffle; True if ``fx_node`` (a view or reshape to
    ``shape``, batch first) is one of them (and handled)."""
    src = fx_node.args[0]
    pending = t.pending.get(src.name)
    if pending is None and len(shape) != 5:
        return False                       # not a layout view (a flatten, or unsupported)
    in_shape = _shape(t, fx_node, src) if pending is None else pending[3]
    if pending is None and len(in_shape) == 4 and len(shape) == 5 and \
            shape[0] == in_shape[0] and shape[3:] == in_shape[2:] and \
            shape[1] * shape[2] == in_shape[1]:
        # [N, C, H, W] -> [N, g, C/g, H, W]: channel groups, to be transposed.
        t.pending[fx_node.name] = ("groups", t.src(src), shape[1], in_shape)
        return True
    if pending is not None and pending[0] == "swapped" and len(shape) == 4 and \
            shape[0] == in_shape[0] and shape[2:] == in_shape[2:] and shape[1] in (-1, in_shape[1]):
        _, inp, groups, _ = pending
        _channel_node(t, fx_node, inp, shuffle_weights(in_shape[1], groups),
                      f"channel shuffle of {groups} groups")
        return True
    if pending is not None:
        raise UnsupportedOpError(f"{fx_node.target} at {t.place(fx_node)}: only a channel "
                                 f"shuffle (view to groups, transpose(1, 2), view back) is "
                                 f"supported on a grouped view")
    return False


@fx.function(torch.transpose, "transpose")
def _from_transpose(t: fx.Tracer, fx_node) -> None:
    src = fx_node.args[0]
    dims = tuple(fx_node.args[1:3]) or (fx_node.kwargs.get("dim0"), fx_node.kwargs.get("dim1"))
    pending = t.pending.get(getattr(src, "name", None))
    from .reshape import is_flat, reshape_pattern
    if pending is None and is_flat(t, src):
        # A head split or merge of a token-shaped tensor: a strided view (sw.ops.reshape).
        n = t.values[src.name].dim()
        perm = list(range(n))
        d0, d1 = (t.const(d) % n for d in dims)
        perm[d0], perm[d1] = perm[d1], perm[d0]
        reshape_pattern(t, fx_node, "permute", tuple(perm))
        return
    if pending is None or pending[0] != "groups" or sorted(d % 5 for d in dims) != [1, 2]:
        raise UnsupportedOpError(
            f"transpose at {t.place(fx_node)}: only the transpose of channel groups in a "
            f"channel shuffle (view to [N, g, C/g, H, W], transpose(1, 2)) is supported")
    t.pending[fx_node.name] = ("swapped",) + pending[1:]


@fx.function("contiguous")
def _from_contiguous(t: fx.Tracer, fx_node) -> None:
    src = fx_node.args[0]
    from .reshape import is_flat, reshape_pattern
    if src.name in t.pending:
        t.pending[fx_node.name] = t.pending[src.name]
    elif is_flat(t, src):
        reshape_pattern(t, fx_node, "contiguous")   # a copy where the tensor is strided
    else:
        t.alias(fx_node.name, t.src(src))


def _slices(t: fx.Tracer, fx_node, sizes_of) -> None:
    src = fx_node.args[0]
    shape = _shape(t, fx_node, src)
    dim = fx_node.args[2] if len(fx_node.args) > 2 else fx_node.kwargs.get("dim", 0)
    from .reshape import is_flat, slice_pattern
    if is_flat(t, src):
        bounds, start = [], 0
        for size in sizes_of(shape[dim]):
            bounds.append((start, start + size))
            start += size
        if slice_pattern(t, fx_node, dim, bounds):
            return
    if len(shape) != 4 or dim % 4 != 1:
        raise UnsupportedOpError(f"{fx_node.target} at {t.place(fx_node)}: only slices of the "
                                 f"channels (dim=1) of [N, C, H, W] tensors are supported")
    bounds, start = [], 0
    for size in sizes_of(shape[1]):
        bounds.append((start, start + size))
        start += size
    t.pending[fx_node.name] = ("slices", t.src(src), bounds, shape)


@fx.function(torch.chunk, "chunk")
def _from_chunk(t: fx.Tracer, fx_node) -> None:
    k = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs["chunks"]
    _slices(t, fx_node, lambda c: [min(-(-c // k), c - i * -(-c // k))
                                   for i in range(-(-c // -(-c // k)))])


@fx.function(torch.split, "split")
def _from_split(t: fx.Tracer, fx_node) -> None:
    size = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs["split_size_or_sections"]
    if isinstance(size, int):
        _slices(t, fx_node, lambda c: [min(size, c - s) for s in range(0, c, size)])
    else:
        _slices(t, fx_node, lambda c: list(size))


@fx.function(operator.getitem)
def _from_getitem(t: fx.Tracer, fx_node) -> None:
    src, index = fx_node.args
    pending = t.pending.get(getattr(src, "name", None))
    if pending is not None and pending[0] == "mha":
        from .attention import mha_output
        mha_output(t, fx_node, pending, index)
        return
    if pending is not None and pending[0] == "flat_slices" and isinstance(index, int):
        from .reshape import slice_part
        slice_part(t, fx_node, pending, index)
        return
    if pending is None or pending[0] != "slices" or not isinstance(index, int):
        raise UnsupportedOpError(f"indexing at {t.place(fx_node)} is not supported (only the "
                                 f"parts of x.chunk / torch.split along channels)")
    _, inp, bounds, shape = pending
    start, stop = bounds[index]
    if (start, stop) == (0, shape[1]):
        t.alias(fx_node.name, inp)
        return
    _channel_node(t, fx_node, inp, slice_weights(shape[1], start, stop),
                  f"channels {start} to {stop - 1}")
