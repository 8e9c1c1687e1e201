"""The op table: one file per operator, each registering an :class:`Op` and its
front-end patterns.

================  ====================================================================
``input``         the model input (:mod:`sw.ops.input`)
``conv``          Conv2d, BatchNorm2d folded in (:mod:`sw.ops.conv`)
``linear``        Linear (:mod:`sw.ops.linear`)
``relu/relu6``    ReLU, ReLU6, fused into their producer where possible (:mod:`sw.ops.activation`)
``silu`` ...      SiLU, Sigmoid, Hardswish, Hardsigmoid, Tanh, GELU, LeakyReLU: 256-entry
                  tables on the store path (:mod:`sw.ops.table`); ``elementwise``: a
                  model's own element-wise module (torch.export), tabulated the same way
``maxpool``       MaxPool2d (:mod:`sw.ops.pool`)
``avgpool``       AvgPool2d, any ceil_mode, count_include_pad, divisor_override (:mod:`sw.ops.pool`)
``gap``           AdaptiveAvgPool2d(1), ``x.mean([2, 3])`` (:mod:`sw.ops.gap`)
``adaptive_*``    AdaptiveAvgPool2d, AdaptiveMaxPool2d to any size (:mod:`sw.ops.adaptive`)
``add``           residual add (:mod:`sw.ops.add`)
``cat``           torch.cat along channels (:mod:`sw.ops.cat`)
``channels``      channel shuffle, chunk/split: 0/1 1x1 convolutions (:mod:`sw.ops.layout`;
                  shuffles folded into their readers: :mod:`sw.compiler.fold`)
``mul``           element-wise and per-channel (squeeze-and-excitation) multiply (:mod:`sw.ops.mul`)
``flatten``       Flatten, flatten, view/reshape(batch, -1) (:mod:`sw.ops.flatten`)
``matmul``        matmul of two activations: ``torch.matmul``, ``@``, ``torch.bmm``, batched over
                  heads, a scalar factor folded in (:mod:`sw.ops.matmul`)
``view/copy``     view, reshape, transpose, permute, contiguous of flat (token-shaped) tensors:
                  strided views, or DMA copies where PyTorch copies (:mod:`sw.ops.reshape`)
``softmax``       Softmax over token features, integer-only (I-BERT exp, Newton reciprocal),
                  optionally causal (:mod:`sw.ops.softmax`, a row program: :mod:`sw.ops.rows`)
``attention``     F.scaled_dot_product_attention (causal or not), nn.MultiheadAttention: as
                  their linears, views, matmuls and softmax (:mod:`sw.ops.attention`)
``layernorm``     LayerNorm, F.layer_norm over token features, integer-only (Newton rsqrt),
                  gamma and beta in the store path (:mod:`sw.ops.layernorm`, a row program)
``embedding``     Embedding of int64 token ids, on the host; position embeddings folded in
                  (:mod:`sw.ops.embedding`)
================  ====================================================================

Dropout and Identity disappear in the front end (:mod:`sw.ops.identity`). Adding an
operator: a file here with its attribute dataclasses, an ``Op`` subclass decorated
with :func:`register` and its front-end patterns, imported below; and its tests
(tests/sw/ops/).
"""

from .base import (OP_CLASSES, REGISTRY, Op, QuantContext, act_clamp, get, qparams, register,
                   symmetric_operands, symmetric_qparams, token_ops)

# Registration order is the order of the supported-module list in messages.
from . import input, conv, linear, activation, table, pool, gap, adaptive, add, mul, cat, flatten, layout, identity  # noqa: E402, F401, A004
from . import matmul, reshape, softmax, layernorm, attention, embedding  # noqa: E402, F401

__all__ = ["Op", "QuantContext", "REGISTRY", "OP_CLASSES", "register", "get", "qparams", "act_clamp",
           "token_ops", "symmetric_operands", "symmetric_qparams"]
