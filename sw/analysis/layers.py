"""The layer-level performance model: per-layer cycles, MACs, bytes and SRAM traffic of a
quantized model on a configuration, without compiling it to a program.

It is the model that sweeps use (:mod:`sw.sweep`): the quantized graph is made once, and
each design point costs milliseconds. For each layer it follows the compiler's own
decisions, through the functions the compiler itself calls, so the two cannot drift apart:

* **conv and linear** (:mod:`sw.compiler.gemm`): ``check_gemm`` (what does not fit is an
  error, as when compiling), ``reduction_tiles`` (the weight blocks of each output tile),
  ``plan_gemm`` (output rows per block, tiles per group, chunks per activation group) and
  ``tile_groups`` (the order of blocks, groups and activation groups). From them the model
  counts, exactly as the program would hold them, every LOAD (its vectors, padding rows
  and DRAM bytes), GEMM, STORE and SYNC, and times the layer as a pipeline of activation
  groups: each group takes as long as the slowest of its GEMMs on the compute queue, its
  weight loads plus the next group's activation loads on the load queue, and its stores;
  a ramp (the first loads) and a drain (the array's latency and the last stores) are added.
* **the layers that run on the vector ALU** (pooling, residual add, global average
  pooling, standalone activations): a few hundred instructions each, lowered by their
  operator into a scratch compiler and priced instruction by instruction (their
  load, ALU, store steps are serialized by tokens, so their times add).

Instruction costs (:class:`Timing`) are in cycles: a LOAD costs a fixed latency plus one
cycle per DMA beat and per padding row, a GEMM its rows plus a fixed overhead (at least
the weight preload's ``rows + cols`` when its rows are few), a STORE a latency plus a
cycle per beat, an ALU instruction an overhead plus one cycle a row (two when its
destination and source meet in one accumulator bank). The constants were fitted to the
RTL's per-layer counters; ``tests/sw/analysis/test_layers.py`` holds the model to the RTL
on LeNet-5 and ResNet-8 on the ``tiny`` and ``small`` presets and states the error
measured (docs/analysis.md, "Layer-level model").

The traffic counts are those of :mod:`sw.analysis.traffic` (:class:`Traffic`), so
:func:`sw.analysis.energy.estimate` prices them; MAC slots and DRAM bytes equal the
compiled program's.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import weakref
from dataclasses import dataclass, field

from hw import isa
from hw.config import NPUConfig, require_config
from hw.isa import DRAM_ELEM_BYTES, Opcode

from .. import ops
from ..compiler import Compiler, Tensor
from ..compiler.gemm import reduction_tiles, tile_groups
from ..quant import QuantizedModel
from .energy import Energy, EnergyTable
from .energy import estimate as price
from .traffic import Traffic, count_instruction

__all__ = ["Timing", "LayerEstimate", "ModelEstimate", "estimate_layers", "layer_cycles",
           "TIMING"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=4096)
def _beats(nbytes: int, beat: int, offset: int, stride: int) -> float:
    """Mean AXI beats of a vector of ``nbytes`` whose addresses are ``offset`` plus
    multiples of ``stride`` (the DMA reads from the beat that holds its first byte): exact
    when every vector is aligned alike, the mean over the alignments met otherwise."""
    g = math.gcd(beat, stride) if stride else beat
    starts = range(offset % g, beat, g)
    return sum(_ceil(r + nbytes, beat) for r in starts) / len(starts)


@dataclass(frozen=True)
class Timing:
    """Cycle costs of the instruction classes, fitted to the RTL's per-layer counters
    (LeNet-5 and ResNet-8 on the ``tiny``, ``small`` and ``default`` presets)."""
    load_latency: float = 3.5     #: a LOAD's cycles beyond its beats and padding rows
    gemm_overhead: float = 8.0    #: a GEMM's cycles beyond ``max(m, cols)`` (the preload)
    store_row: float = 1.6        #: a stored row's cycles beyond its beats (its AXI address)
    fetch_share: float = 1.1      #: the share of the instruction fetch's beats the loads wait
    alu_overhead: float = 7.0     #: an ALU instruction's cycles beyond its rows
    sync_cycles: float = 17.0     #: a SYNC or CONFIG on the compute queue (its token wait)
    layer_overhead: float = 9.5   #: a layer's barrier: the queues drain and restart


#: The constants the model uses by default.
TIMING = Timing()


@dataclass
class LayerEstimate:
    """One layer's estimate. ``mac_slots``: what its tiles occupy in the array
    (``device.stats["macs"]``); ``real_macs``: the model's own multiply-accumulates."""
    id: int
    name: str
    op: str
    cycles: float
    real_macs: int
    traffic: Traffic
    compute_cycles: float          #: the compute queue's busy cycles alone
    memory_cycles: float           #: the load and store queues' busy cycles alone (the larger)
    host: bool = False             #: a host operator (no NPU cycles)

    @property
    def mac_slots(self) -> int:
        return self.traffic.mac_slots

    @property
    def dram_bytes(self) -> int:
        return self.traffic.dram_read_bytes + self.traffic.dram_write_bytes

    @property
    def bound(self) -> str:
        """``compute`` or ``memory``: which side of the layer takes longer alone."""
        return "compute" if self.compute_cycles >= self.memory_cycles else "memory"


@dataclass
class ModelEstimate:
    """The whole model's estimate on ``config`` at ``clock_mhz``."""
    config: NPUConfig
    clock_mhz: float
    layers: list[LayerEstimate]
    energy: Energy
    total: Traffic = field(default_factory=Traffic)

    @property
    def cycles(self) -> float:
        return sum(layer.cycles for layer in self.layers)

    @property
    def latency_s(self) -> float:
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def real_macs(self) -> int:
        return sum(layer.real_macs for layer in self.layers)

    @property
    def utilization(self) -> float:
        """Real MACs per MAC unit and cycle."""
        return self.real_macs / (self.cycles * self.config.macs) if self.cycles else 0.0

    @property
    def slot_utilization(self) -> float:
        """MAC slots per MAC unit and cycle (what ``device.stats["utilization"]`` gives)."""
        return self.total.mac_slots / (self.cycles * self.config.macs) if self.cycles else 0.0


class _Counter:
    """Instruction costs and traffic of one layer as it is counted."""

    def __init__(self, config: NPUConfig, timing: Timing, beat_cycles: float) -> None:
        self.cfg, self.tm = config, timing
        self.traffic = Traffic()
        self.R, self.C, self.B = config.rows, config.cols, config.dma_bytes
        self.beat = beat_cycles         # cycles per bus beat (above 1 when DRAM is slower)

    def insn(self, opcode: Opcode, n: int = 1) -> None:
        self.traffic.instructions += n
        self.traffic.insn_bytes += n * isa.INSN_BYTES

    def load(self, mem: str, vectors: int, nbytes: int, rows: int, offset: int = 0,
             stride: int = 0, n: int = 1) -> float:
        """``n`` LOADs of ``vectors`` data vectors of ``nbytes`` each (at ``offset`` plus
        multiples of ``stride`` from an aligned address) writing ``rows`` rows; returns
        their cycles."""
        t = self.traffic
        self.insn(Opcode.LOAD, n)
        t.dram_read_bytes += n * vectors * nbytes
        row_bits = 8 * self.R if mem == "spad" else 32 * self.C
        t.memories[mem].write_rows += n * rows
        t.memories[mem].write_bits += n * rows * row_bits
        return n * (self.tm.load_latency + rows - vectors
                    + vectors * self.beat * _beats(nbytes, self.B, offset, stride))

    def gemms(self, m: int, n: int, n_first: int) -> float:
        """``n`` GEMMs of ``m`` rows, the first ``n_first`` overwriting; returns their cycles."""
        t = self.traffic
        self.insn(Opcode.GEMM, n)
        t.mac_slots += n * m * self.R * self.C
        t.memories["spad"].read_rows += n * (m + self.C)
        t.memories["spad"].read_bits += n * (m + self.C) * 8 * self.R
        acc_bits = 32 * self.C
        t.memories["acc"].read_rows += (n - n_first) * m
        t.memories["acc"].read_bits += (n - n_first) * m * acc_bits
        t.memories["acc"].write_rows += n * m
        t.memories["acc"].write_bits += n * m * acc_bits
        return n * (max(m, self.C) + self.tm.gemm_overhead)

    def store(self, rows: int, length: int, offset: int = 0, stride: int = 0) -> float:
        t = self.traffic
        self.insn(Opcode.STORE)
        t.dram_write_bytes += rows * length
        t.memories["acc"].read_rows += rows
        t.memories["acc"].read_bits += rows * 32 * self.C
        t.memories["param"].read_rows += isa.PARAM_GROUP_ROWS
        t.memories["param"].read_bits += isa.PARAM_GROUP_ROWS * 32 * self.C
        t.requant_lanes += rows * self.C
        return rows * _store_row(self.tm, self.cfg, self.beat * _beats(length, self.B, offset, stride))


def _store_row(tm, cfg: NPUConfig, beat_cycles: float) -> float:
    """A stored row's cycles: the writer's, or the requantizer's passes when they are more
    (``requant_lanes``)."""
    return max(tm.store_row + beat_cycles, cfg.requant_passes)


def _border(o0: int, n: int, stride: int, d: int, pad: int, size: int) -> tuple[int, int]:
    """Of outputs ``[o0, o0 + n)`` at tap ``d``, how many read before and after the input
    (``i = o * stride + d - pad`` below 0, at or over ``size``)."""
    first_in = _ceil(pad - d, stride)           # first output whose input is >= 0
    first_out = _ceil(size + pad - d, stride)   # first output whose input is >= size
    before = min(n, max(0, first_in - o0))
    after = min(n, max(0, o0 + n - first_out))
    return before, after


def _gemm_layer(c: Compiler, cnt: _Counter, node, geometry, cout, kh, kw, stride, pad,
                groups, packed, out_geometry) -> tuple[float, float, float]:
    """Count one conv or linear layer as :meth:`GemmSchedule.gemm_layer` emits it; returns
    (cycles, compute cycles, memory cycles)."""
    cfg, R, C, tm = c.cfg, c.R, c.C, cnt.tm
    cin, h, w = geometry
    _, oh_n, ow_n = out_geometry
    sh, sw = stride
    ph, pw = pad
    c.check_gemm(node, geometry, ow_n, stride, pad, oh_n=oh_n)
    keys = reduction_tiles(cin, cout, kh, kw, groups, packed, R, C)
    nt = len(keys)
    chunk_keys = sorted({k for tk in keys for k in tk})
    chunk_pos = {k: i for i, k in enumerate(chunk_keys)}
    tile_chunks = [[chunk_pos[k] for k in tk] for tk in keys]
    rows_per_block, ng, kg = c.plan_gemm(oh_n, ow_n, nt, len(chunk_keys), [len(t) for t in keys])
    # Columns of border per kernel column (the same for every block).
    horiz = {}
    for dy, dx, c0 in chunk_keys:
        if dx >= 0 and dx not in horiz:
            left, right = _border(0, ow_n, sw, dx, pw, w)
            horiz[dx] = ow_n - left - right

    def a_load(key, oh0, nrows) -> float:
        dy, dx, c0 = key
        top, bottom = _border(oh0, nrows, sh, dy, ph, h)
        vy = nrows - top - bottom
        vx = ow_n if dx < 0 else horiz[dx]
        rows = nrows * ow_n
        if vy <= 0 or vx <= 0:       # all border: a vector of zero points, read with strides 0
            return cnt.load("spad", rows, R, rows)
        length = min(R, (kw * cin if dx < 0 else cin) - c0)
        row = (w + 2 * pw if dx < 0 else w) * cin
        return cnt.load("spad", vy * vx, length, rows, c0, math.gcd(sw * cin, sh * row))

    w_load_bytes = R
    fetch = tm.fetch_share * cnt.beat * isa.INSN_BYTES / cnt.B
    compute = loads = stores = 0.0
    span = 0.0
    for j0 in range(0, nt, cfg.param_groups):
        j1 = min(nt, j0 + cfg.param_groups)
        cnt.insn(Opcode.SYNC)
        pass_loads = sum(cnt.load("param", isa.PARAM_GROUP_ROWS,
                                  isa.PARAM_ELEM_BYTES * C, isa.PARAM_GROUP_ROWS)
                         for _ in range(j0, j1))
        if j0 == 0:
            cnt.insn(Opcode.CONFIG)
        # The activation groups in order, each with its GEMM and activation-load cycles.
        plan = []
        stored = gemms = 0
        counts: dict[int, list[tuple[int, int]]] = {}   # per group: (GEMMs, first GEMMs) per k-group
        for oh0, nrows, group, k_groups in tile_groups(tile_chunks, j0, j1, oh_n,
                                                       rows_per_block, ng, kg):
            m = nrows * ow_n
            per_k = counts.get(group[0])
            if per_k is None:
                per_k, seen = [], set()
                for kgrp in k_groups:
                    in_group = set(kgrp)
                    n = n_first = 0
                    for j in group:
                        k = sum(1 for ci in tile_chunks[j] if ci in in_group)
                        if k and j not in seen:
                            seen.add(j)
                            n_first += 1
                        n += k
                    per_k.append((n, n_first))
                counts[group[0]] = per_k
            for q, (kgrp, (n, n_first)) in enumerate(zip(k_groups, per_k)):
                g_cycles = cnt.gemms(m, n, n_first)
                w_cycles = cnt.load("spad", C, w_load_bytes, C, n=n)
                gemms += n
                a_cycles = sum(a_load(chunk_keys[ci], oh0, nrows) for ci in kgrp)
                s_cycles = 0.0
                last = q == len(k_groups) - 1
                if last:
                    s_cycles = sum(cnt.store(m, min(C, cout - j * C), j * C, cout) for j in group)
                    stored += len(group)
                # The instruction fetch shares the DMA's read port with the loads.
                w_cycles += fetch * (2 * n + len(kgrp) + (len(group) if last else 0))
                plan.append((g_cycles, w_cycles, a_cycles, s_cycles))
        # SYNCs: the pops of accumulator slots and the drain (one per tile stored), the C2L
        # drain (up to two).
        n_sync = stored + min(gemms, 2)
        cnt.insn(Opcode.SYNC, n_sync)
        # The pipeline: a group's activations load during the previous group's weight
        # loads; its stores drain during the next group. The ramp: the parameters, the first
        # group's activations and the first weights.
        if plan:
            ramp = pass_loads + plan[0][2] + tm.load_latency + C * _ceil(w_load_bytes, cnt.B)
            span += ramp
            loads += ramp
            prev_store = 0.0
            for k, (g, wl, _, st) in enumerate(plan):
                nxt = plan[k + 1][2] if k + 1 < len(plan) else 0.0
                span += max(g, wl + nxt, prev_store)
                prev_store = st
                compute += g
                loads += wl + nxt
                stores += st
            span += prev_store + R + C
        compute += n_sync * tm.sync_cycles
    return span + tm.layer_overhead, compute, max(loads, stores)


@dataclass
class _AluSummary:
    """What prices an ALU layer's instructions: its traffic and, with their multiplicity,
    its loads ``(vectors, bytes, padding rows, address mod 64, stride)``, its stores
    ``(rows, bytes, address mod 64, stride, activation table load cycles)``, its ALU cycles before overheads, and the
    counts of ALU and other compute instructions."""
    traffic: Traffic
    loads: collections.Counter
    stores: collections.Counter
    alu_rows: int
    n_alu: int
    n_other: int


# Summaries of lowered ALU layers per model, by (node, cols, acc_depth, acc_banks,
# param_depth): what their lowering reads of the configuration (not rows: they use no
# scratchpad), so a sweep lowers each once per distinct value.
_ALU_CACHE: "weakref.WeakKeyDictionary[QuantizedModel, dict]" = weakref.WeakKeyDictionary()


def _alu_summary(c: Compiler, op, node, layer_id, args, out) -> _AluSummary:
    cfg = c.cfg
    key = (node.name, cfg.cols, cfg.acc_depth, cfg.acc_banks, cfg.param_depth)
    per_model = _ALU_CACHE.setdefault(c.model, {})
    if key in per_model:
        return per_model[key]
    banks = cfg.acc_banks
    start = len(c.insns)
    op.lower(c, node, layer_id, args, out)
    sm = _AluSummary(Traffic(), collections.Counter(), collections.Counter(), 0, 0, 0)
    for insn in c.insns[start:]:
        count_instruction(sm.traffic, insn, cfg)
        opc = insn.opcode
        if opc is Opcode.LOAD:
            ny, nx = isa.load_grid(insn)
            vectors = insn.y_size * insn.x_size
            stride = math.gcd(insn.x_stride if insn.x_size > 1 else 0,
                              insn.y_stride if insn.y_size > 1 else 0)
            sm.loads[(vectors, insn.length * DRAM_ELEM_BYTES[insn.mem], ny * nx - vectors,
                      insn.dram % 64, stride)] += 1
        elif opc is Opcode.STORE:
            table = cfg.table_load_cycles if insn.lut else 0   # its table-load cycles
            sm.stores[(insn.rows, insn.length, insn.dram % 64, insn.stride, table)] += 1
        elif opc is Opcode.ALU:
            rows = insn.count
            if not insn.use_imm:
                # Rows whose destination and source are in one bank take a second cycle.
                step = insn.dst_stride - insn.src_stride
                meet = [(insn.dst - insn.src + i * step) % banks == 0 for i in range(banks)]
                full, rest = divmod(rows, banks)
                rows += full * sum(meet) + sum(meet[:rest])
            if isa.AluOp(insn.op) in (isa.AluOp.MUL, isa.AluOp.MULH):
                rows += insn.count * (cfg.alu_mul_cycles - 1)   # a sequential multiplier
            sm.alu_rows += rows
            sm.n_alu += 1
        else:
            sm.n_other += 1
    del c.insns[start:]
    per_model[key] = sm
    return sm


def _alu_layer(c: Compiler, cnt: _Counter, op, node, layer_id, args, out) -> tuple[float, float, float]:
    """Lower an ALU layer (once per distinct configuration, :data:`_ALU_CACHE`) and price
    its instructions (its steps are serialized, so their cycles add)."""
    tm, B, beat = cnt.tm, cnt.B, cnt.beat
    sm = _alu_summary(c, op, node, layer_id, args, out)
    cnt.traffic.add(sm.traffic)
    memory = sum(n * (tm.load_latency + pad + vectors * beat * _beats(nbytes, B, offset, stride))
                 for (vectors, nbytes, pad, offset, stride), n in sm.loads.items())
    memory += sum(n * (table + rows * _store_row(tm, cnt.cfg, beat * _beats(nbytes, B, offset, stride)))
                  for (rows, nbytes, offset, stride, table), n in sm.stores.items())
    compute = sm.alu_rows + sm.n_alu * tm.alu_overhead + sm.n_other * tm.sync_cycles
    return compute + memory + tm.layer_overhead, compute, memory


def _matmul_layer(c: Compiler, cnt: _Counter, node, layer_id, args, dst) -> tuple[float, float, float]:
    """Count a matmul of two activations as :class:`sw.ops.matmul.MatmulOp` lowers it: a
    GEMM layer per batch index (heads), after the transpose of a row-major stationary
    operand (GEMM layers of an identity, or a DMA copy priced as an ALU layer)."""
    from ..ops import matmul as mm
    a, b = args
    *batch, m, k = a.shape
    n = b.shape[-1]
    count = math.prod(batch)
    total = [0.0, 0.0, 0.0]

    def add(parts):
        for i in range(3):
            total[i] += parts[i]
    if b.elem_strides[-2] != 1:
        mode = mm.chosen_transpose(k, n, c.R, c.C, b.elem_strides[-2], c.MAX_X_STRIDE)
        if mode == "dma" or b.elem_strides[-1] != 1:
            sb = b.elem_strides
            view = Tensor(b.name, (*batch, n, k), b.q, 0, flat=True,
                          strides=(*sb[:-2], sb[-1], sb[-2]))
            copy = dataclasses.replace(node, name=f"{node.name}/transpose", op="copy")
            add(_alu_layer(c, cnt, ops.get("copy"), copy, layer_id, [view],
                           Tensor(copy.name, view.shape, b.q, 0, flat=True)))
        else:
            for _ in range(count):         # each call counts its traffic as well
                for n0 in range(0, n, c.R):
                    rn = min(c.R, n - n0)
                    add(_gemm_layer(c, cnt, node, (rn, rn, 1), k, 1, 1, (1, 1), (0, 0), 1, False,
                                    (k, rn, 1)))
    for _ in range(count):
        add(_gemm_layer(c, cnt, node, (k, m, 1), n, 1, 1, (1, 1), (0, 0), 1, False, (n, m, 1)))
    return total[0], total[1], total[2]


def _layers(qmodel: QuantizedModel, config: NPUConfig, timing: Timing,
            beat_cycles: float) -> list[LayerEstimate]:
    c = Compiler(config, qmodel)
    qmodel = c.model                # what the compiler lowers (channel shuffles folded)
    nodes = qmodel.nodes
    inp = nodes[0]
    tensors = {inp.name: c.input_tensor(0)}
    out: list[LayerEstimate] = []
    layer_id = 0
    # Operands stored in their slice of a concatenation, as the compiler decides it.
    from ..ops.cat import stored_in_place
    folded = stored_in_place(qmodel)
    for node in nodes[1:]:
        op = ops.get(node.op)
        args = [tensors[name] for name in node.inputs]
        if op.view:
            tensors[node.name] = op.lower_view(c, node, args)
            continue
        dst = Tensor(node.name, node.shape, node.out, 0,
                     flat=op.flat_output or any(a.flat for a in args if a.shape == node.shape))
        dst.in_place = node.name in folded
        tensors[node.name] = dst
        if node.op == "cat" and all(a.in_place for a in args):
            continue                            # nothing to copy: no instructions
        cnt = _Counter(config, timing, beat_cycles)
        if op.host:
            out.append(LayerEstimate(0, node.name, node.op, 0.0, 0, cnt.traffic, 0.0, 0.0, True))
            continue
        layer_id += 1
        src = args[0]
        if node.op == "conv":
            wt, geometry, stride, padding, groups, packed = op.gemm_form(c, node, src)
            cycles, comp, mem = _gemm_layer(c, cnt, node, geometry, wt.shape[0], wt.shape[1],
                                            wt.shape[2], stride, padding, groups, packed,
                                            dst.geometry)
        elif node.op == "linear":
            cin = node.attrs.w_q.shape[1]
            rows = src.shape[0] if len(src.shape) == 2 else 1     # token-shaped [T, F]
            cycles, comp, mem = _gemm_layer(c, cnt, node, (cin, rows, 1), node.attrs.w_q.shape[0],
                                            1, 1, (1, 1), (0, 0), 1, False, dst.geometry)
        elif node.op == "matmul":
            cycles, comp, mem = _matmul_layer(c, cnt, node, layer_id, args, dst)
        else:
            cycles, comp, mem = _alu_layer(c, cnt, op, node, layer_id, args, dst)
        out.append(LayerEstimate(layer_id, node.name, node.op, cycles,
                                 op.macs(node), cnt.traffic, comp, mem))
    return out


def estimate_layers(qmodel: QuantizedModel, config: NPUConfig, *, clock_mhz: float = 200.0,
                    dram_gbs: float | None = None, table: EnergyTable | None = None,
                    timing: Timing = TIMING) -> ModelEstimate:
    """Estimate every layer of ``qmodel`` (from :func:`sw.quantize`) on ``config``.

    ``clock_mhz`` converts cycles to seconds; ``dram_gbs``: the DRAM bandwidth in GB/s
    when it is below the AXI port's (one beat per cycle, the default): every bus beat
    then takes ``dma_bytes * clock / bandwidth`` cycles; ``table`` prices the traffic
    (default: the Horowitz 45 nm table); ``timing`` the instruction costs. Host operators
    appear as layers with ``host=True`` and no cycles.

    Raises ``TypeError`` for arguments of the wrong type, ``ValueError`` for a
    non-positive clock and :class:`sw.compiler.CompileError` naming the layer when the
    model does not fit the configuration (as :func:`sw.compile` would).
    """
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"estimate_layers expects a QuantizedModel from sw.quantize, "
                        f"not {type(qmodel).__name__}")
    require_config(config)
    if not (isinstance(clock_mhz, (int, float)) and clock_mhz > 0):
        raise ValueError(f"clock_mhz must be a positive number, not {clock_mhz!r}")
    beat_cycles = 1.0
    if dram_gbs is not None:
        if not (isinstance(dram_gbs, (int, float)) and dram_gbs > 0):
            raise ValueError(f"dram_gbs must be a positive number, not {dram_gbs!r}")
        beat_cycles = max(1.0, config.dma_bytes * clock_mhz * 1e6 / (dram_gbs * 1e9))
    layers = _layers(qmodel, config, timing, beat_cycles)
    total = Traffic()
    for layer in layers:
        total.add(layer.traffic)
    table = table or EnergyTable.load()
    return ModelEstimate(config, float(clock_mhz), layers, price(total, config, table), total)


def layer_cycles(qmodel: QuantizedModel, config: NPUConfig,
                 timing: Timing = TIMING) -> dict[int, float]:
    """The estimated cycles of each NPU layer, keyed by the layer ids of
    ``sw.compile(qmodel, config).layers`` (the ``CONFIG layer`` tags; names are in
    :func:`estimate_layers`' layers). Raises as :func:`estimate_layers`."""
    est = estimate_layers(qmodel, config, timing=timing)
    return {layer.id: layer.cycles for layer in est.layers if not layer.host}

