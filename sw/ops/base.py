"""The operator interface and the op table.

An operator is one subclass of :class:`Op` in one file of ``sw/ops/``, registered with
:func:`register`; its front-end patterns sit in the same file (for torch.fx:
``@sw.frontend.fx.module(...)`` and ``@sw.frontend.fx.function(...)``). The flow
asks the op table, never an if-chain:

* the float reference (:meth:`Op.forward`), run to calibrate and to infer shapes;
* the quantization (:meth:`Op.quantize`): a :class:`sw.ir.QNode` with integer attributes;
* the integer golden (:meth:`Op.golden`) over the primitives of :mod:`sw.golden`;
* the lowering (:meth:`Op.lower`) to NPU instructions, or, for an operator with
  ``host = True``, the host implementation (:meth:`Op.run_host`) that the device runs
  between NPU segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..ir import Node, QNode, QParams

if TYPE_CHECKING:  # the compiler imports the op table, not the other way round
    from ..compiler import Compiler, Tensor

__all__ = ["Op", "QuantContext", "REGISTRY", "OP_CLASSES", "register", "get", "qparams", "act_clamp",
           "refuse_options", "token_ops", "symmetric_qparams", "symmetric_operands"]


def qparams(lo: float, hi: float) -> QParams:
    """Asymmetric int8 quantization of a calibrated range (widened to include 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        return QParams(1.0, 0)
    scale = (hi - lo) / 255.0
    zp = int(round(-128 - lo / scale))
    return QParams(scale, max(-128, min(127, zp)))


def symmetric_qparams(lo: float, hi: float) -> QParams:
    """Symmetric int8 quantization of a calibrated range: zero point 0, ``max|x| / 127``."""
    m = max(abs(lo), abs(hi))
    return QParams(m / 127.0, 0) if m >= 1e-8 else QParams(1.0, 0)


@dataclass
class QuantContext:
    """What an operator's quantization reads: the calibration and its operands' quantization."""
    ranges: dict[str, tuple[float, float]]     #: calibrated (min, max) of each node's output
    qparams: dict[str, QParams]                #: quantization of the nodes quantized so far
    shapes: dict[str, tuple[int, ...]]         #: output shape of one sample per node
    #: nodes whose output is quantized symmetric (the operands of a matmul, sw.ops.matmul)
    symmetric: set[str] = field(default_factory=set)

    def out(self, node: Node) -> QParams:
        """Quantization of ``node``'s output from its calibrated range (symmetric where a
        reader needs it)."""
        if node.name in self.symmetric:
            return symmetric_qparams(*self.ranges[node.name])
        return qparams(*self.ranges[node.name])

    def q(self, name: str) -> QParams:
        """Quantization of the output of node ``name`` (an operand)."""
        return self.qparams[name]

    def shape(self, name: str) -> tuple[int, ...]:
        """Output shape of one sample of node ``name``."""
        return self.shapes[name]


class Op:
    """One operator: its float reference, quantization, integer golden and lowering.

    Class attributes:

    * ``name``: the key in the op table and the ``op`` of its nodes;
    * ``host``: runs on the host between NPU segments (``run_host``) instead of ``lower``;
    * ``view``: lowers to no instructions, its output reinterprets its input's bytes
      (``lower_view``);
    * ``fuses_activation``: a following ReLU/ReLU6 folds into its output clamp;
    * ``op_class``: the group the analysis reports it in (:data:`OP_CLASSES`);
    * ``tokens``: takes token-shaped operands ([batch, tokens, features]; one sample
      [T, F], in DRAM T rows of F bytes), which the flow refuses, naming the layer,
      for the operators without; with it, also flat tensors of more dimensions (PyTorch's
      row-major order in DRAM, rows of the last dimension: the heads of attention);
    * ``strided``: reads operands that are strided views (:mod:`sw.ops.reshape`), which
      the compiler refuses, naming the layer, for the operators without;
    * ``flat_output``: its output is a flat tensor of PyTorch's row-major order whatever
      its rank (not a channel-last image);
    * ``symmetric_inputs``: its operands' producers are quantized symmetric (zero point
      0; :func:`symmetric_operands`).
    * ``ids``: its operands are integer token ids (an int64 model input), which the flow
      refuses, naming the layer, for the operators without.
    """
    name: ClassVar[str] = ""
    host: ClassVar[bool] = False
    view: ClassVar[bool] = False
    fuses_activation: ClassVar[bool] = False
    op_class: ClassVar[str] = "data"
    tokens: ClassVar[bool] = False
    strided: ClassVar[bool] = False
    flat_output: ClassVar[bool] = False
    symmetric_inputs: ClassVar[bool] = False
    ids: ClassVar[bool] = False

    def vector_ops(self, node: QNode, in_shapes: list[tuple[int, ...]]) -> int:
        """Arithmetic operations of one sample besides MACs (one per comparison, add or
        clamp of an element): what its FLOP count adds to two per MAC. ``in_shapes``: the
        operands' shapes of one sample."""
        return 0

    def macs(self, node: QNode) -> int:
        """The model's real multiply-accumulates of one sample (what ``thop`` counts), not
        the array's MAC slots; 0 for an operator without."""
        return 0

    def param_bytes(self, node: QNode) -> int:
        """Bytes of the layer's constants as the NPU holds them (weights, per-channel
        parameters; the compiler's padding excluded); 0 for an operator without."""
        return 0

    def forward(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        """Float reference on batched operands (the fused activation is applied by the caller)."""
        raise NotImplementedError(f"op {self.name}: no float reference")

    def quantize(self, node: Node, ctx: QuantContext) -> QNode:
        """The quantized node, from the calibration in ``ctx``."""
        raise NotImplementedError(f"op {self.name}: no quantization")

    def golden(self, node: QNode, args: list[torch.Tensor]) -> torch.Tensor:
        """Integer golden: int8 batched operands to the int8 output, as the NPU must compute it.

        A host operator's golden is its host implementation.
        """
        if self.host:
            return self.run_host(self.host_params(node), args)
        raise NotImplementedError(f"op {self.name}: no golden")

    def lower(self, c: Compiler, node: QNode, layer_id: int, args: list[Tensor], out: Tensor) -> int:
        """Emit the instructions of one layer into compiler ``c``; returns the layer's MAC
        slots (what its GEMM instructions occupy on the array; the compiler checks them)."""
        raise NotImplementedError(f"op {self.name}: no lowering")

    def lower_view(self, c: Compiler, node: QNode, args: list[Tensor]) -> Tensor:
        """For a ``view`` operator: the output tensor, over its operand's bytes."""
        raise NotImplementedError(f"op {self.name}: not a view")

    def input_pad_w(self, c: Compiler, node: QNode, shape: tuple[int, ...]) -> int:
        """Zero-point columns this node wants each side of the rows of the model input
        (read when it is the input's only user); 0 for none."""
        return 0

    def input_im2col(self, c: Compiler, node: QNode, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The im2col layout (:func:`sw.program.im2col`) this node wants the model input
        written in (asked when it is the input's only user); ``None`` for none."""
        return None

    def host_params(self, node: QNode) -> dict[str, Any]:
        """For a host operator: its parameters as JSON values (saved with the program)."""
        return {}

    def run_host(self, params: dict[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        """For a host operator: int8 batched operands (PyTorch layout) to the int8 output."""
        raise NotImplementedError(f"op {self.name}: no host implementation")


#: The operator classes of :attr:`Op.op_class`, in report order: ``gemm`` (MACs on the
#: array: convolution, linear), ``pooling``, ``elementwise`` (residual add, activations),
#: ``normalization``, ``data`` (no arithmetic: input, reshapes).
OP_CLASSES = ("gemm", "pooling", "elementwise", "normalization", "data")

#: op name -> the operator
REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: put an instance of ``cls`` in the op table under ``cls.name``.

    Raises ``TypeError`` for a class that is not an :class:`Op` and ``ValueError`` for a
    missing or already registered name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Op)):
        raise TypeError(f"register expects a subclass of sw.ops.Op, not {cls!r}")
    if not cls.name:
        raise ValueError(f"op class {cls.__name__} has no name")
    if cls.op_class not in OP_CLASSES:
        raise ValueError(f"op {cls.name!r}: op_class {cls.op_class!r} is not one of {', '.join(OP_CLASSES)}")
    if cls.name in REGISTRY:
        raise ValueError(f"op {cls.name!r} is already registered ({type(REGISTRY[cls.name]).__name__})")
    REGISTRY[cls.name] = cls()
    return cls


def act_clamp(act: str | None, q: QParams) -> tuple[int, int]:
    """The int8 output range of a fused activation ``act`` (an op with a ``clamp(q)``
    method, or None for none) at output quantization ``q``."""
    if act is None:
        return (-128, 127)
    return get(act).clamp(q)


def refuse_options(where: str, name: str, **options: tuple[Any, Any]) -> None:
    """Raise :class:`sw.UnsupportedOpError` naming each option of operation ``name`` at
    ``where`` (its module path) that is not at its supported value: ``option=(value,
    supported)``, e.g. ``MaxPool2d at body.0: dilation=(2, 2) is not supported``."""
    from ..frontend import UnsupportedOpError
    bad = [f"{k}={v!r}" for k, (v, ok) in options.items() if v != ok]
    if bad:
        raise UnsupportedOpError(f"{name} at {where}: {', '.join(bad)} "
                                 f"{'is' if len(bad) == 1 else 'are'} not supported")


def symmetric_operands(nodes) -> set[str]:
    """The nodes whose output must be quantized symmetric: the producers of the operands
    of operators with ``symmetric_inputs`` (a matmul), found through the views, copies
    and standalone clamps that keep their operand's quantization."""
    by_name = {n.name: n for n in nodes}
    out: set[str] = set()
    todo = [i for n in nodes if get(n.op).symmetric_inputs for i in n.inputs]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        node = by_name[name]
        if node.op in ("view", "copy", "relu", "relu6", "flatten"):
            todo.extend(node.inputs)
    return out


def token_ops() -> str:
    """The operators that take token-shaped tensors (:attr:`Op.tokens`), for messages."""
    return ", ".join(name for name, op in REGISTRY.items() if op.tokens and name != "input")


def get(name: str) -> Op:
    """The operator called ``name``; ``KeyError`` naming the known ones if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no operator {name!r} in the op table; it has: {', '.join(REGISTRY)}") from None
