"""LLM proxies on the NPU: one prefill or decode step, operator by operator.

A transformer layer of a proxy (:mod:`sw.analysis.llm`) at batch ``B``, ``T`` new tokens
per sequence (prefill: the sequence; decode: one) and a context of ``L`` tokens is, per
layer:

* the weight GEMMs: Q, K, V and output projections, the FFN's up (and, for SwiGLU,
  gate) and down projections, each ``M = B*T`` tokens by ``K`` inputs by ``N`` outputs;
* the attention GEMMs, per sequence and head: scores ``Q K^T`` (``T x head_dim x L``)
  and context ``P V`` (``T x L x head_dim``), the KV cache streamed like weights;
* the residual adds (the NPU's vector ALU);
* softmax (per sequence and head, ``T`` rows of ``L`` scores) and LayerNorm (``B*T`` rows
  of the hidden size) on the vector ALU (:mod:`sw.ops.softmax`, :mod:`sw.ops.layernorm`),
  costed by the layer-level model on :data:`VECTOR_ROWS` rows and scaled to all of
  them (their row chunks are alike); one that the configuration cannot hold (a row
  wider than the accumulator, more features than parameter groups) runs on the host;
* the operators the NPU does not run yet, counted and listed as *host operators*:
  RMSNorm, rotary embeddings, GELU and SiLU (tables the compiler has, not priced here
  yet), the SwiGLU product. OPT's ReLU folds into its up projection's output clamp, as
  the compiler fuses it.

Every GEMM is costed as the compiler would tile it: as a 1x1 convolution over the
tokens (``K`` channels, the tokens as pixels of rows of at most ``TOKEN_ROW`` pixels),
through the layer-level model (:mod:`sw.analysis.layers`, the compiler's own tiling
functions), int8 weights and KV cache. Today's compiler has no token-batched linear
layer and its LOADs address at most 4,095 channels per pixel (the ``x_stride`` field),
less than Llama's 4,096: wider reductions are costed in chunks (:func:`_gemm_cost`). The NPU's time is the sum of its operators'
(host operators not included: they are listed with their elements and bytes); tokens
per second and MBU (compulsory int8 bytes per second over the peak DRAM bandwidth)
follow. :func:`gpu_step` gives the same step on a reference GPU from its peaks
(roofline time, fp16), for comparison.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from hw import isa
from hw.config import NPUConfig, require_config

from . import llm
from .roofline import npu_roof

__all__ = ["LLMOp", "OpCost", "NPUStep", "GPUStep", "layer_ops", "npu_step", "gpu_step",
           "TOKEN_ROW", "VECTOR_ROWS"]

#: Tokens per row of the 1x1-convolution view of a GEMM (the GEMM's ``m`` per tile).
TOKEN_ROW = 32
#: Rows a softmax or LayerNorm is costed on (then scaled to all its rows).
VECTOR_ROWS = 16


@dataclass(frozen=True)
class LLMOp:
    """One operator of a transformer layer's step, ``count`` instances of it."""
    name: str
    kind: str            #: "gemm" (weights), "attention" (KV cache), "add", "vector", "host"
    m: int = 0           #: GEMM rows (tokens); vector: rows
    k: int = 0           #: reduction; vector: features per row
    n: int = 0           #: outputs
    count: int = 1       #: instances per layer (attention: sequences x heads)
    elements: int = 0    #: elements in and out (add, host operators), all instances

    @property
    def macs(self) -> int:
        return self.count * self.m * self.k * self.n


@dataclass(frozen=True)
class OpCost:
    """An operator's cost for all its instances in one layer."""
    op: LLMOp
    cycles: float        #: NPU cycles (0 for a host operator)
    mac_slots: int
    dram_bytes: int


def layer_ops(cfg: llm.LLMConfig, phase: str, *, batch: int, seq: int) -> list[LLMOp]:
    """The operators of one layer of ``cfg`` in one step (see the module docstring).
    Raises ValueError as :func:`sw.analysis.llm.phase_cost` does."""
    cost = llm.phase_cost(cfg, phase, batch=batch, seq=seq, layers=1)   # validates
    t, ctx = cost.tokens, cost.context
    tokens = batch * t
    h, hd = cfg.hidden, cfg.head_dim
    kv = cfg.kv_heads * hd
    norm = "rmsnorm" if cfg.norm == "rmsnorm" else "layernorm"

    def norm_op(where):
        if norm == "layernorm":
            return LLMOp(f"layernorm_{where}", "vector", tokens, h, elements=2 * tokens * h)
        return LLMOp(f"rmsnorm_{where}", "host", elements=2 * tokens * h)

    out = [norm_op("attn"),
           LLMOp("q_proj", "gemm", tokens, h, h), LLMOp("k_proj", "gemm", tokens, h, kv),
           LLMOp("v_proj", "gemm", tokens, h, kv)]
    if cfg.positions == 0:               # rotary embeddings (Llama)
        out.append(LLMOp("rope", "host", elements=2 * tokens * (h + kv)))
    out += [LLMOp("scores", "attention", t, hd, ctx, batch * cfg.heads),
            LLMOp("softmax", "vector", t, ctx, count=batch * cfg.heads,
                  elements=2 * batch * cfg.heads * t * ctx),
            LLMOp("context", "attention", t, ctx, hd, batch * cfg.heads),
            LLMOp("o_proj", "gemm", tokens, h, h),
            LLMOp("residual_attn", "add", elements=3 * tokens * h),
            norm_op("ffn")]
    inter = cfg.intermediate
    if cfg.ffn == "swiglu":
        out += [LLMOp("gate_proj", "gemm", tokens, h, inter), LLMOp("up_proj", "gemm", tokens, h, inter),
                LLMOp("silu", "host", elements=2 * tokens * inter),
                LLMOp("swiglu_mul", "host", elements=3 * tokens * inter)]
    else:
        out.append(LLMOp("up_proj", "gemm", tokens, h, inter))
        if cfg.ffn != "relu":            # ReLU fuses into up_proj's clamp
            out.append(LLMOp(cfg.ffn, "host", elements=2 * tokens * inter))
    out += [LLMOp("down_proj", "gemm", tokens, inter, h),
            LLMOp("residual_ffn", "add", elements=3 * tokens * h)]
    return out


def _gemm_model(m: int, k: int, n: int):
    """A quantized 1x1 convolution of ``k`` to ``n`` channels over ``m`` tokens (rows of
    at most :data:`TOKEN_ROW`): the shape the compiler tiles a token GEMM as."""
    from ..ir import QNode, QParams
    from ..ops.conv import QConv
    from ..quant import QuantizedModel
    width = min(m, TOKEN_ROW)
    rows = math.ceil(m / width)
    q = QParams(0.05, 0)
    attrs = QConv(w_q=torch.zeros((n, k, 1, 1), dtype=torch.int8),
                  bias_q=torch.zeros(n, dtype=torch.int32),
                  mult=torch.full((n,), 1 << 30, dtype=torch.int64),
                  shift=torch.full((n,), 31, dtype=torch.int64), zp_in=0,
                  stride=(1, 1), padding=(0, 0), groups=1)
    nodes = [QNode("x", "input", [], q, (k, rows, width), None, None, "tokens"),
             QNode("gemm", "conv", ["x"], q, (n, rows, width), attrs, None, "gemm")]
    return QuantizedModel(nodes, "gemm", (k, rows, width))


@functools.lru_cache(maxsize=256)
def _gemm_cost(config: NPUConfig, m: int, k: int, n: int) -> tuple[float, int, int]:
    """(cycles, MAC slots, DRAM bytes) of one token GEMM on ``config``.

    A reduction wider than a LOAD's pixel stride can address (``x_stride``, 4,095
    channels) is split into the fewest equal chunks that fit, each costed as its own
    GEMM and added: the cycles of the weight stream and the MAC slots scale with ``k``;
    each chunk's output store is counted, a small overestimate.
    """
    from .layers import estimate_layers
    limit = isa.field_max(isa.Opcode.LOAD, "x_stride")
    chunks = math.ceil(k / limit)
    sizes = [k // chunks + (1 if i < k % chunks else 0) for i in range(chunks)]
    cycles, slots, dram = 0.0, 0, 0
    for size in set(sizes):
        est = estimate_layers(_gemm_model(m, size, n), config)
        layer = next(x for x in est.layers if not x.host)
        times = sizes.count(size)
        cycles += times * layer.cycles
        slots += times * layer.mac_slots
        dram += times * layer.dram_bytes
    return cycles, slots, dram


@functools.lru_cache(maxsize=64)
def _add_cost(config: NPUConfig, elements: int) -> tuple[float, int]:
    """(cycles, DRAM bytes) of a residual add of ``elements`` int8 outputs."""
    from ..ir import QNode, QParams
    from ..ops.add import QAdd
    from ..quant import QuantizedModel
    from .layers import estimate_layers
    width = min(elements, TOKEN_ROW)
    shape = (1, math.ceil(elements / width), width)
    q = QParams(0.05, 0)
    attrs = QAdd(a1=1 << 14, a2=1 << 14, zp1=0, zp2=0, mult=1 << 30, shift=31)
    nodes = [QNode("x", "input", [], q, shape, None, None, "tokens"),
             QNode("add", "add", ["x", "x"], q, shape, attrs, None, "add")]
    est = estimate_layers(QuantizedModel(nodes, "add", shape), config)
    layer = next(x for x in est.layers if not x.host)
    return layer.cycles, layer.dram_bytes


@functools.lru_cache(maxsize=64)
def _vector_cost(config: NPUConfig, name: str, rows: int, features: int) -> tuple[float, int]:
    """(cycles, DRAM bytes) of a softmax or LayerNorm (``name``) over ``rows`` rows of
    ``features``: the layer-level model on :data:`VECTOR_ROWS` rows, scaled. Raises
    :class:`sw.compiler.CompileError` where the configuration cannot hold it."""
    from .. import ops
    from ..ir import Node, QNode, QParams
    from ..ops.base import QuantContext
    from ..ops.layernorm import LayerNormAttrs
    from ..ops.softmax import SoftmaxAttrs
    from ..quant import QuantizedModel
    from .layers import estimate_layers
    n = min(rows, VECTOR_ROWS)
    shape = (n, features)
    q = QParams(0.05, 0)
    attrs = (SoftmaxAttrs() if name == "softmax"
             else LayerNormAttrs(features, 1e-5, None, None))
    op = "softmax" if name == "softmax" else "layernorm"
    ctx = QuantContext({name: (-4.0, 4.0)}, {"x": q}, {name: shape})
    node = ops.get(op).quantize(Node(name, op, ["x"], attrs=attrs, where=name), ctx)
    nodes = [QNode("x", "input", [], q, shape, None, None, "tokens"), node]
    est = estimate_layers(QuantizedModel(nodes, name, shape), config)
    layer = next(x for x in est.layers if not x.host)
    return layer.cycles * rows / n, round(layer.dram_bytes * rows / n)


@dataclass(frozen=True)
class NPUStep:
    """One step of all layers of a proxy on an NPU configuration."""
    model: str
    phase: str
    batch: int
    seq: int
    config: NPUConfig
    clock_mhz: float
    peak_bytes_s: float
    layers: int
    ops: list[OpCost]                 #: one layer's operators (all layers are alike)
    cost: llm.PhaseCost               #: compulsory FLOPs and bytes, int8 (all layers)

    @property
    def cycles(self) -> float:
        return self.layers * sum(c.cycles for c in self.ops)

    @property
    def seconds(self) -> float:
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def tokens_per_s(self) -> float:
        return self.cost.tokens_per_s(self.seconds)

    @property
    def mbu(self) -> float:
        """Compulsory bytes per second over the peak DRAM bandwidth."""
        return self.cost.mbu(self.seconds, self.peak_bytes_s)

    @property
    def utilization(self) -> float:
        """Real MACs per cycle over the array's."""
        macs = self.layers * sum(c.op.macs for c in self.ops)
        return macs / (self.cycles * self.config.macs)

    @property
    def dram_bytes(self) -> int:
        """What the program moves (more than the compulsory bytes: re-reads, padding)."""
        return self.layers * sum(c.dram_bytes for c in self.ops)

    @property
    def host_ops(self) -> list[LLMOp]:
        return [c.op for c in self.ops if c.op.kind == "host"]

    def shares(self) -> dict[str, float]:
        """Share of NPU cycles of each operator kind (gemm, attention, add, vector)."""
        total = sum(c.cycles for c in self.ops) or 1.0
        out: dict[str, float] = {}
        for c in self.ops:
            if c.op.kind != "host":
                out[c.op.kind] = out.get(c.op.kind, 0.0) + c.cycles / total
        return out

    def as_dict(self) -> dict:
        return {"model": self.model, "phase": self.phase, "batch": self.batch, "seq": self.seq,
                "config": self.config.describe(), "clock_mhz": self.clock_mhz,
                "layers": self.layers, "cycles": self.cycles, "seconds": self.seconds,
                "tokens_per_s": self.tokens_per_s, "mbu": self.mbu,
                "utilization": self.utilization, "dram_bytes": self.dram_bytes,
                "compulsory_bytes": self.cost.dram_bytes, "flops": self.cost.flops,
                "intensity": self.cost.intensity, "shares": self.shares(),
                "ops": [{"name": c.op.name, "kind": c.op.kind, "m": c.op.m, "k": c.op.k,
                         "n": c.op.n, "count": c.op.count, "elements": c.op.elements,
                         "cycles": c.cycles, "mac_slots": c.mac_slots,
                         "dram_bytes": c.dram_bytes} for c in self.ops],
                "host_ops": [op.name for op in self.host_ops]}


def npu_step(name: str | llm.LLMConfig, config: NPUConfig, *, phase: str, batch: int, seq: int,
             clock_mhz: float = 200.0, dram_gbs: float | None = None,
             layers: int | None = None) -> NPUStep:
    """One ``phase`` step of ``layers`` layers (default all) of the proxy ``name`` at
    ``batch`` and sequence (prefill) or cache length (decode) ``seq`` on ``config``.

    Raises KeyError for an unknown proxy, ValueError for bad sizes or a phase the model
    has not, and :class:`sw.compiler.CompileError` when a GEMM does not fit the config.
    """
    cfg = name if isinstance(name, llm.LLMConfig) else llm.get(name)
    require_config(config)
    roof = npu_roof(config, clock_mhz=clock_mhz, dram_gbs=dram_gbs)
    cost = llm.phase_cost(cfg, phase, batch=batch, seq=seq, dtype_bytes=1, layers=layers)
    costs = []
    for op in layer_ops(cfg, phase, batch=batch, seq=seq):
        if op.kind in ("gemm", "attention"):
            cycles, slots, dram = _gemm_cost(config, op.m, op.k, op.n)
            costs.append(OpCost(op, op.count * cycles, op.count * slots, op.count * dram))
        elif op.kind == "add":
            cycles, dram = _add_cost(config, op.elements // 3)
            costs.append(OpCost(op, cycles, 0, dram))
        elif op.kind == "vector":
            from ..compiler import CompileError
            try:
                cycles, dram = _vector_cost(config, op.name.split("_")[0], op.m, op.k)
            except CompileError:
                costs.append(OpCost(dataclasses.replace(op, kind="host"), 0.0, 0, 0))
                continue
            costs.append(OpCost(op, op.count * cycles, 0, op.count * dram))
        else:
            costs.append(OpCost(op, 0.0, 0, 0))
    return NPUStep(cfg.name, phase, batch, seq, config, clock_mhz, roof.bytes_s, cost.layers,
                   costs, cost)


@dataclass(frozen=True)
class GPUStep:
    """The same step on a reference GPU from its peaks (roofline time, 2-byte weights)."""
    gpu: str
    cost: llm.PhaseCost
    seconds: float
    peak_bytes_s: float
    bound: str

    @property
    def tokens_per_s(self) -> float:
        return self.cost.tokens_per_s(self.seconds)

    @property
    def mbu(self) -> float:
        return self.cost.mbu(self.seconds, self.peak_bytes_s)


def gpu_step(name: str | llm.LLMConfig, gpu: str = "H200", *, phase: str, batch: int, seq: int,
             layers: int | None = None) -> GPUStep:
    """One step on the reference GPU matching ``gpu`` (``sw/analysis/data/gpus.json``),
    fp16, at the roofline: an upper bound on what the GPU can do."""
    from .gpu import find_peaks
    cfg = name if isinstance(name, llm.LLMConfig) else llm.get(name)
    peaks = find_peaks(gpu)
    if peaks is None:
        raise ValueError(f"no reference GPU matches {gpu!r} (sw/analysis/data/gpus.json)")
    cost = llm.phase_cost(cfg, phase, batch=batch, seq=seq, dtype_bytes=2, layers=layers)
    seconds = cost.time_s(peaks.flops_fp16, peaks.bytes_s)
    return GPUStep(peaks.name, cost, seconds, peaks.bytes_s,
                   cost.bound(peaks.flops_fp16, peaks.bytes_s))
