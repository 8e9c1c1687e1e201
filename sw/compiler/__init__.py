"""The compiler: a :class:`sw.quant.QuantizedModel` to an NPU :class:`sw.program.Program`.

Activations live in DRAM as int8 NHWC (a pixel's channels contiguous). Each node
lowers through its operator in the op table (:mod:`sw.ops`); docs/compiler.md has
the details:

* **conv and linear** are implicit GEMMs (:mod:`sw.compiler.gemm`). The reduction runs
  over (kh, kw, channel chunk of ``rows``); for each chunk a strided 2D LOAD gathers
  one activation row per output pixel straight from the input tensor, with the
  convolution's border as LOAD padding filled with the input zero point (no im2col
  copy). Weight tiles are pre-arranged in DRAM, one ``cols x rows`` block per (output
  tile, chunk); grouped and depthwise convolutions use block-diagonal tiles and skip
  the chunks outside each group. Activation and weight slots, and accumulator tiles,
  are double-buffered with tokens.
* **max/avg pooling, global average pooling, residual add and standalone ReLU**
  run on the ALU over accumulator rows, then through the store path
  (:mod:`sw.compiler.alu`).
* **flatten** is free (the following linear layer's weights are permuted to
  NHWC order).
* an operator declared ``host`` runs on the host: the program is split into NPU
  segments with the host operations between them (``Program.segments``).

Between layers a token barrier orders every STORE of one layer before any LOAD
of the next. Each layer is tagged with ``CONFIG layer=<id>`` for per-layer
counts. DRAM is allocated by :mod:`sw.compiler.memory`. The output is
deterministic for a given model and configuration.
"""


class CompileError(ValueError):
    """The model cannot be lowered to this configuration; the message names the layer."""


# After the error class: the schedule modules raise it.
from .core import Compiler, Tensor, compile  # noqa: E402, A004 - the public name is compile

__all__ = ["compile", "CompileError", "Compiler", "Tensor"]
