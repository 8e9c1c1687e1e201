"""Per-layer co-design metrics of a compiled model: the analysis ``python -m sw.analyze`` prints.

:func:`analyze_program` takes a quantized model, its program and the NPU's cycles
(from the performance model or measured on the ``rtl`` backend) and gives, per layer
and in total (:class:`LayerMetrics`, :class:`Analysis`):

* work: the model's real MACs and the array's MAC slots (what the layer's tiles
  occupy: depthwise convolutions run as block-diagonal tiles), FLOPs (2 per real MAC
  plus the operator's other arithmetic, :meth:`sw.ops.Op.vector_ops`);
* bytes: parameter bytes (:meth:`sw.ops.Op.param_bytes`), activation bytes (int8
  operands and output of one sample), the memory footprint (the layer's parameters
  and every activation live while it runs), DRAM bytes read and written (counted
  from the program, :mod:`sw.analysis.traffic`), arithmetic intensity (FLOPs per DRAM
  byte);
* time: cycles, real and slot utilization (MACs per cycle over the array's), latency
  at the clock, achieved DRAM bandwidth and MBU (achieved over peak bandwidth), and
  whether the layer is compute- or memory-bound: compute-bound when the array and
  vector work it gives the NPU (MAC slots over the array, ALU lanes over its columns)
  takes longer at peak than its DRAM bytes at peak bandwidth;
* energy (pJ): MACs, vector ALU and requantization lanes, each SRAM, DRAM
  (:mod:`sw.analysis.energy`, a cited per-operation table).

Host operators (run between NPU segments) are listed with their work and bytes and no
NPU cycles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from hw.config import NPUConfig, require_config

from .. import ops
from ..program import NpuSegment, Program
from ..quant import QuantizedModel
from . import energy as energy_mod
from .roofline import Roof, npu_roof
from .traffic import Traffic, count_traffic

__all__ = ["Timing", "LayerMetrics", "Analysis", "analyze", "analyze_program", "model_timing",
           "BACKENDS", "OP_CLASSES"]

OP_CLASSES = ops.OP_CLASSES


@dataclass(frozen=True)
class Timing:
    """NPU cycles of one sample: in total and per layer id, and where they come from."""
    source: str                    #: "model" (the performance model) or "rtl" (measured)
    cycles: int | float            #: the whole program (the CYCLES counter)
    layers: Mapping[int, int | float]   #: per layer id, as the RTL attributes them
    #: wall seconds of each host operator, when the model was run (func or rtl)
    host_seconds: Mapping[str, float] = field(default_factory=dict)
    #: the instruction timeline (:class:`sw.analysis.trace.Span`), when asked for
    spans: tuple = ()


@dataclass(frozen=True)
class LayerMetrics:
    """One layer's (or the total's) figures; see the module docstring for definitions."""
    name: str
    op: str
    op_class: str
    where: str                     #: "npu" or "host"
    macs: int                      #: real MACs
    mac_slots: int                 #: array MAC slots
    flops: int
    param_bytes: int
    activation_bytes: int
    footprint_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    intensity: float               #: FLOPs per DRAM byte (inf without DRAM traffic)
    cycles: float | None
    seconds: float | None
    utilization: float | None      #: real MACs per cycle over the array's MACs
    slot_utilization: float | None  #: MAC slots per cycle over the array's MACs
    achieved_gbs: float | None     #: DRAM bytes per second, 1e9
    mbu: float | None              #: achieved over peak DRAM bandwidth
    bound: str                     #: "compute", "memory" or "host"
    energy_pj: dict[str, float]    #: mac, alu, requant, sram_<memory>, dram, total
    host_seconds: float | None = None
    id: int | None = None          #: the program's layer id (None: host operator, total)

    @property
    def dram_bytes(self) -> int:
        return self.dram_read_bytes + self.dram_write_bytes

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dram_bytes"] = self.dram_bytes
        return d


@dataclass(frozen=True)
class Analysis:
    """The analysis of one model on one configuration (one sample)."""
    model: str
    config: NPUConfig
    clock_mhz: float
    roof: Roof
    timing_source: str
    energy_table: str
    layers: list[LayerMetrics]
    total: LayerMetrics
    host_ops: list[str]
    program_layers: list[dict] = field(default_factory=list)   #: Program.layers
    spans: tuple = ()              #: the timeline, when the timing carried one

    @property
    def latency_s(self) -> float | None:
        return self.total.seconds

    @property
    def throughput(self) -> float | None:
        """Samples per second (one after the other)."""
        return 1.0 / self.total.seconds if self.total.seconds else None

    def hotspots(self, n: int = 5) -> list[LayerMetrics]:
        """The ``n`` NPU layers with the most cycles."""
        timed = [m for m in self.layers if m.cycles is not None]
        return sorted(timed, key=lambda m: -m.cycles)[:n]

    def class_shares(self) -> dict[str, dict[str, float]]:
        """Per operator class: its share of NPU cycles, of real MACs and of DRAM bytes."""
        npu = [m for m in self.layers if m.where == "npu"]
        totals = {"cycles": sum(m.cycles or 0 for m in npu), "macs": sum(m.macs for m in npu),
                  "dram_bytes": sum(m.dram_bytes for m in npu)}
        out = {}
        for cls in OP_CLASSES:
            mine = [m for m in npu if m.op_class == cls]
            if not mine:
                continue
            sums = {"cycles": sum(m.cycles or 0 for m in mine), "macs": sum(m.macs for m in mine),
                    "dram_bytes": sum(m.dram_bytes for m in mine)}
            out[cls] = {k: (sums[k] / totals[k] if totals[k] else 0.0) for k in sums}
            out[cls]["layers"] = len(mine)
        return out

    def as_dict(self) -> dict:
        return {"model": self.model, "config": self.config.to_dict(),
                "clock_mhz": self.clock_mhz,
                "roof": {"name": self.roof.name, "ops_s": self.roof.ops_s,
                         "bytes_s": self.roof.bytes_s, "ridge": self.roof.ridge},
                "timing_source": self.timing_source, "energy_table": self.energy_table,
                "latency_s": self.latency_s, "throughput_per_s": self.throughput,
                "total": self.total.as_dict(), "layers": [m.as_dict() for m in self.layers],
                "class_shares": self.class_shares(),
                "hotspots": [m.name for m in self.hotspots()], "host_ops": self.host_ops}


def _numel(shape) -> int:
    return math.prod(shape)


def _live_bytes(qmodel: QuantizedModel) -> dict[str, int]:
    """For each node: bytes of the activations alive while it runs (its operands, its
    output and every tensor produced before and read after it), views sharing their base."""
    nodes = qmodel.nodes
    index = {n.name: i for i, n in enumerate(nodes)}
    base = {}
    for n in nodes:
        if ops.get(n.op).view:
            base[n.name] = base.get(n.inputs[0], n.inputs[0])
    last = {n.name: index[n.name] for n in nodes}
    last[qmodel.output] = len(nodes)
    for i, n in enumerate(nodes):
        for name in n.inputs:
            b = base.get(name, name)
            last[b] = max(last[b], i)
    size = {n.name: _numel(n.shape) for n in nodes if n.name not in base}
    return {n.name: sum(s for t, s in size.items() if index[t] <= i <= last[t])
            for i, n in enumerate(nodes)}


def _energy(traffic: Traffic | None, config: NPUConfig, table) -> dict[str, float]:
    if traffic is None:
        return {k: 0.0 for k in energy_mod.Energy().as_dict()}
    return energy_mod.estimate(traffic, config, table).as_dict()


def analyze_program(qmodel: QuantizedModel, program: Program, timing: Timing | None, *,
                    name: str = "model", clock_mhz: float = 200.0, dram_gbs: float | None = None,
                    energy_table: energy_mod.EnergyTable | None = None) -> Analysis:
    """The metrics of ``program`` (compiled from ``qmodel``) with ``timing``'s cycles.

    ``timing`` may be ``None`` (no cycles: the time figures are ``None``). ``dram_gbs``:
    the DRAM's peak bandwidth (default: one bus beat a cycle, :func:`npu_roof`).
    Raises TypeError/ValueError for arguments of the wrong kind or out of range.
    """
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"analyze_program expects a QuantizedModel, not {type(qmodel).__name__}")
    if not isinstance(program, Program):
        raise TypeError(f"analyze_program expects a Program, not {type(program).__name__}")
    config = require_config(program.config)
    roof = npu_roof(config, clock_mhz=clock_mhz, dram_gbs=dram_gbs)
    table = energy_table or energy_mod.EnergyTable.load()
    hz = clock_mhz * 1e6
    bytes_per_cycle = roof.bytes_s / hz

    words = program.words
    traffic: dict[int, Traffic] = {}
    total_traffic = Traffic()
    for seg in program.segments or [NpuSegment(0, program.insn_count)]:
        if isinstance(seg, NpuSegment):
            seg_total, per = count_traffic(words[seg.start:seg.start + seg.count], config)
            total_traffic.add(seg_total)
            for k, t in per.items():
                traffic.setdefault(k, Traffic()).add(t)

    live = _live_bytes(qmodel)
    by_name = {n.name: n for n in qmodel.nodes}
    layer_of = {layer["name"]: layer for layer in program.layers}
    host = set(program.host_ops)

    def timed(cycles, macs, slots, dram):
        if cycles is None:
            return dict(cycles=None, seconds=None, utilization=None, slot_utilization=None,
                        achieved_gbs=None, mbu=None)
        seconds = cycles / hz
        return dict(cycles=cycles, seconds=seconds,
                    utilization=macs / (cycles * config.macs) if cycles else 0.0,
                    slot_utilization=slots / (cycles * config.macs) if cycles else 0.0,
                    achieved_gbs=dram / seconds / 1e9 if seconds else 0.0,
                    mbu=dram / seconds / roof.bytes_s if seconds else 0.0)

    rows = []
    for node in qmodel.nodes:
        op = ops.get(node.op)
        if node.name not in layer_of and node.name not in host:
            continue                     # the input, views: no work of their own
        in_shapes = [by_name[i].shape for i in node.inputs]
        act = sum(_numel(s) for s in in_shapes) + _numel(node.shape)
        params = op.param_bytes(node)
        layer = layer_of.get(node.name)
        macs = layer["macs"] if layer else 0
        flops = 2 * macs + op.vector_ops(node, in_shapes)
        if layer is None:                # a host operator
            seconds = timing.host_seconds.get(node.name) if timing else None
            rows.append(LayerMetrics(
                name=node.name, op=node.op, op_class=op.op_class, where="host", macs=macs,
                mac_slots=0, flops=flops, param_bytes=params, activation_bytes=act,
                footprint_bytes=params + live[node.name], dram_read_bytes=0, dram_write_bytes=0,
                intensity=math.inf, bound="host", energy_pj=_energy(None, config, table),
                host_seconds=seconds, **timed(None, 0, 0, 0)))
            continue
        t = traffic.get(layer["id"], Traffic())
        dram = t.dram_read_bytes + t.dram_write_bytes
        work_cycles = t.mac_slots / config.macs + (t.alu_lanes + t.requant_lanes) / config.cols
        bound = "compute" if work_cycles >= dram / bytes_per_cycle else "memory"
        cycles = timing.layers.get(layer["id"]) if timing else None
        rows.append(LayerMetrics(
            id=layer["id"], name=node.name, op=node.op, op_class=op.op_class, where="npu",
            macs=macs, mac_slots=t.mac_slots, flops=flops, param_bytes=params,
            activation_bytes=act, footprint_bytes=params + live[node.name],
            dram_read_bytes=t.dram_read_bytes, dram_write_bytes=t.dram_write_bytes,
            intensity=flops / dram if dram else math.inf, bound=bound,
            energy_pj=_energy(t, config, table), **timed(cycles, macs, t.mac_slots, dram)))

    macs = sum(m.macs for m in rows)
    flops = sum(m.flops for m in rows)
    dram = total_traffic.dram_read_bytes + total_traffic.dram_write_bytes
    work_cycles = total_traffic.mac_slots / config.macs + \
        (total_traffic.alu_lanes + total_traffic.requant_lanes) / config.cols
    total = LayerMetrics(
        name="total", op="", op_class="", where="npu", macs=macs,
        mac_slots=total_traffic.mac_slots, flops=flops,
        param_bytes=sum(m.param_bytes for m in rows),
        activation_bytes=sum(m.activation_bytes for m in rows),
        footprint_bytes=sum(m.param_bytes for m in rows) + max(live.values()),
        dram_read_bytes=total_traffic.dram_read_bytes,
        dram_write_bytes=total_traffic.dram_write_bytes,
        intensity=flops / dram if dram else math.inf,
        bound="compute" if work_cycles >= dram / bytes_per_cycle else "memory",
        energy_pj=_energy(total_traffic, config, table),
        host_seconds=sum(timing.host_seconds.values()) if timing and timing.host_seconds else None,
        **timed(timing.cycles if timing else None, macs, total_traffic.mac_slots, dram))
    return Analysis(model=name, config=config, clock_mhz=clock_mhz, roof=roof,
                    timing_source=timing.source if timing else "none", energy_table=table.name,
                    layers=rows, total=total, host_ops=list(program.host_ops),
                    program_layers=list(program.layers),
                    spans=tuple(timing.spans) if timing else ())


BACKENDS = ("model", "func", "rtl")


def model_timing(program: Program, *, clock_mhz: float = 200.0,
                 dram_gbs: float | None = None, trace: bool = False) -> Timing:
    """The performance model's cycles of ``program`` (:mod:`sw.analysis.perf`), with the
    DRAM at ``dram_gbs`` (default: the RTL harness's memory) at ``clock_mhz``; with
    ``trace``, its instruction timeline too."""
    from . import perf
    dram = None if dram_gbs is None else perf.DramTiming.from_bandwidth(dram_gbs, clock_mhz)
    est = perf.estimate(program, program.config, dram=dram)
    return Timing("model", est.cycles, {layer.id: layer.cycles for layer in est.layers},
                  spans=tuple(est.spans) if trace else ())


def analyze(model, config: NPUConfig, *, backend: str = "model", input_shape=None,
            clock_mhz: float = 200.0, dram_gbs: float | None = None,
            energy_table: energy_mod.EnergyTable | None = None, calib: int = 4, seed: int = 0,
            name: str | None = None, progress=None, trace: bool = False) -> Analysis:
    """Quantize, compile and analyse ``model`` on ``config``: the Python API of
    ``python -m sw.analyze``.

    ``model``: a zoo name or ``module:attr`` (as the CLIs take it), an ``nn.Module``
    (give ``input_shape``, one sample's) or a :class:`QuantizedModel`. ``backend``:
    ``"model"`` (cycles from the performance model, nothing run), ``"func"`` (also runs
    the functional model on a random sample and checks it bit-exact against the integer
    golden) or ``"rtl"`` (cycles measured in Verilator; ``dram_gbs`` must then be left at
    the harness's). ``progress``: a callable taking one line of text, or None.
    ``trace``: keep the instruction timeline (the model's, or the RTL's) in ``spans``.
    Raises ValueError naming a bad argument and ``RuntimeError`` when a run is not
    bit-exact.
    """
    import torch

    import sw
    from sw import zoo
    say = progress or (lambda line: None)
    require_config(config)
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    if dram_gbs is not None and not dram_gbs > 0:
        raise ValueError(f"dram_gbs must be positive, not {dram_gbs}")
    if backend == "rtl" and dram_gbs is not None:
        raise ValueError("dram_gbs applies to the performance model; the rtl backend "
                         "measures the harness's own memory (leave dram_gbs unset)")
    if isinstance(model, str):
        name = name or model
        model, shape = zoo.load(model, seed)
        input_shape = input_shape or shape
    if isinstance(model, QuantizedModel):
        qmodel = model
    else:
        if input_shape is None:
            raise ValueError("give input_shape (one sample's) for a model outside the zoo")
        gen = torch.Generator().manual_seed(seed)
        say("quantizing")
        qmodel = sw.quantize(model, [torch.randn(8, *input_shape, generator=gen)
                                     for _ in range(calib)])
    name = name or type(model).__name__
    say(f"compiling for {config.describe()}")
    program = sw.compile(qmodel, config)
    timing, host = None, {}
    if backend in ("func", "rtl"):
        x = torch.randn(1, *qmodel.input_shape, generator=torch.Generator().manual_seed(seed + 1))
        say(f"running on the {backend} backend")
        with sw.Device(config, backend, progress=progress is not None,
                       trace=trace and backend == "rtl") as device:
            y = device.run(program, x)
            st = device.stats
            spans = tuple(device.spans or ()) if backend == "rtl" and trace else ()
        if not torch.equal(y, qmodel(x)):
            raise RuntimeError(f"{name}: the {backend} backend's output differs from the "
                               f"integer golden")
        host = {h["name"]: h["seconds"] for h in st.get("host_ops", [])}
        if backend == "rtl":
            timing = Timing("rtl", st["cycles_per_run"],
                            {layer["id"]: layer["cycles"] for layer in st["layers"]}, host,
                            spans)
    if timing is None:
        say("estimating cycles with the performance model")
        t = model_timing(program, clock_mhz=clock_mhz, dram_gbs=dram_gbs, trace=trace)
        timing = Timing(t.source, t.cycles, t.layers, host, t.spans)
    return analyze_program(qmodel, program, timing, name=name, clock_mhz=clock_mhz,
                           dram_gbs=dram_gbs, energy_table=energy_table)
