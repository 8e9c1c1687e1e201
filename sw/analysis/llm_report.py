"""The report of an LLM proxy: ``python -m sw.analyze llama2-7b|opt-13b|bert-base``.

:func:`analyze_llm` gives, for a proxy at the batches asked for, its weight and KV-cache
bytes (per token and in total), its footprint, how a device memory divides between
weights and KV cache, and each phase's step on the NPU (cycles, tokens per second, MBU,
the per-operator breakdown with the host operators listed) beside the same step on a
reference GPU at its roofline. :func:`write_llm_report` writes ``llm.json``,
``llm_steps.csv``, the plots ``footprint`` (against sequence length and batch),
``roofline`` (prefill and decode on the NPU's and the GPU's roofs) and ``llm_ops`` (a
layer's cycles per operator), and ``report.html``.
"""

from __future__ import annotations

import csv
import html
import json
import pathlib
from dataclasses import dataclass

from hw.config import NPUConfig

from . import llm
from .llm_npu import GPUStep, NPUStep, gpu_step, npu_step
from .roofline import Point, Roof, npu_roof, plot_roofline, save_figure

__all__ = ["LLMAnalysis", "analyze_llm", "format_llm", "write_llm_report"]


@dataclass(frozen=True)
class LLMAnalysis:
    """A proxy's memory figures and its steps on the NPU and the reference GPU."""
    cfg: llm.LLMConfig
    config: NPUConfig
    clock_mhz: float
    seq: int
    device_gb: float
    steps: list[tuple[NPUStep, GPUStep]]
    roof: Roof
    gpu_roof: Roof

    def memory(self) -> dict:
        cfg = self.cfg
        out = {"params": cfg.params(), "weight_bytes_fp16": cfg.weight_bytes(2),
               "weight_bytes_int8": cfg.weight_bytes(1),
               "kv_bytes_per_token_fp16": cfg.kv_bytes_per_token(2),
               "kv_bytes_fp16_at_seq": cfg.kv_bytes_per_token(2) * self.seq,
               "footprint_fp16_batch1": llm.footprint(cfg, batch=1, seq=self.seq)}
        try:
            out["memory_split_fp16"] = llm.memory_split(cfg, int(self.device_gb * 1e9))
        except ValueError as exc:
            out["memory_split_fp16"] = str(exc)
        return out

    def as_dict(self) -> dict:
        return {"model": self.cfg.name, "source": self.cfg.source, "clock_mhz": self.clock_mhz,
                "config": self.config.describe(), "seq": self.seq, "device_gb": self.device_gb,
                "memory": self.memory(),
                "steps": [{"npu": n.as_dict(),
                           "gpu": {"name": g.gpu, "seconds": g.seconds, "tokens_per_s": g.tokens_per_s,
                                   "mbu": g.mbu, "bound": g.bound, "intensity": g.cost.intensity}}
                          for n, g in self.steps]}


def analyze_llm(name: str, config: NPUConfig, *, batches=(1,), seq: int = 2048,
                phases=("prefill", "decode"), clock_mhz: float = 200.0,
                dram_gbs: float | None = None, gpu: str = "H200", device_gb: float = 40.0,
                progress=None) -> LLMAnalysis:
    """The analysis of the proxy ``name`` (:data:`sw.analysis.llm.MODELS`) on ``config``.

    Phases the model has not (decode of an encoder) are left out. Raises KeyError for an
    unknown proxy and ValueError for bad sizes.
    """
    cfg = llm.get(name)
    if seq < 1 or not batches or min(batches) < 1:
        raise ValueError(f"seq ({seq}) and every batch ({list(batches)}) must be at least 1")
    if cfg.positions and seq > cfg.positions:
        raise ValueError(f"{cfg.name} has {cfg.positions} positions; seq {seq} is longer")
    say = progress or (lambda line: None)
    steps = []
    for phase in phases:
        if phase == "decode" and not cfg.causal:
            continue
        for b in batches:
            say(f"{cfg.name} {phase} batch {b} seq {seq}")
            steps.append((npu_step(cfg, config, phase=phase, batch=b, seq=seq,
                                   clock_mhz=clock_mhz, dram_gbs=dram_gbs),
                          gpu_step(cfg, gpu, phase=phase, batch=b, seq=seq)))
    if not steps:
        raise ValueError(f"{cfg.name}: none of the phases {', '.join(phases)} applies")
    g = steps[0][1]
    from .gpu import find_peaks
    peaks = find_peaks(gpu)
    gpu_roof = Roof(f"{g.gpu} fp16", peaks.flops_fp16, peaks.bytes_s)
    return LLMAnalysis(cfg, config, clock_mhz, seq, device_gb, steps,
                       npu_roof(config, clock_mhz=clock_mhz, dram_gbs=dram_gbs), gpu_roof)


def format_llm(a: LLMAnalysis) -> str:
    """The memory figures, the steps and one layer's operators as text."""
    m = a.memory()
    cfg = a.cfg
    lines = [f"{cfg.name}: {m['params'] / 1e9:.2f} B parameters ({cfg.source})",
             f"weights {m['weight_bytes_fp16'] / 1e9:.2f} GB fp16, {m['weight_bytes_int8'] / 1e9:.2f} GB int8 "
             f"(the NPU's)"]
    if cfg.causal:
        lines.append(f"KV cache {m['kv_bytes_per_token_fp16'] / 1e3:,.0f} KB per token fp16, "
                     f"{m['kv_bytes_fp16_at_seq'] / 1e9:.2f} GB for {a.seq:,} tokens")
        split = m["memory_split_fp16"]
        if isinstance(split, dict):
            lines.append(f"a {a.device_gb:g} GB device: {split['weights']:.0%} weights, "
                         f"{split['kv_cache']:.0%} KV cache ({split['kv_tokens']:,} tokens), "
                         f"{split['reserve']:.0%} reserved")
        else:
            lines.append(f"a {a.device_gb:g} GB device: {split}")
    lines.append("")
    lines.append(f"{'phase':<8} {'batch':>5} {'op/B':>7} {'NPU ms':>10} {'tok/s':>10} "
                 f"{'util':>6} {'MBU':>6} | {'GPU ms':>8} {'tok/s':>10} {'MBU':>6} bound")
    for n, g in a.steps:
        lines.append(f"{n.phase:<8} {n.batch:>5} {n.cost.intensity:>7.1f} {n.seconds * 1e3:>10,.2f} "
                     f"{n.tokens_per_s:>10,.1f} {n.utilization:>6.1%} {n.mbu:>6.1%} | "
                     f"{g.seconds * 1e3:>8,.3f} {g.tokens_per_s:>10,.0f} {g.mbu:>6.1%} {g.bound}")
    lines.append(f"(NPU: {a.config.describe()} at {a.clock_mhz:g} MHz, {a.roof.bytes_s / 1e9:.2f} GB/s, "
                 f"int8; GPU: {a.steps[0][1].gpu} fp16 at its roofline)")
    n = a.steps[-1][0]
    total = sum(c.cycles for c in n.ops) or 1
    lines.append("")
    lines.append(f"one layer, {n.phase} batch {n.batch}: {'operator':<16} {'kind':<9} "
                 f"{'M x K x N':>22} {'count':>6} {'cycles':>14} {'share':>6}")
    for c in n.ops:
        if c.op.kind in ("vector", "host") and c.op.m:
            shape = f"{c.op.m} rows x {c.op.k}"          # a softmax or LayerNorm
        elif c.op.m:
            shape = f"{c.op.m} x {c.op.k} x {c.op.n}"
        else:
            shape = f"{c.op.elements:,} elements"
        lines.append(f"{'':<33}{c.op.name:<16} {c.op.kind:<9} {shape:>22} {c.op.count:>6} "
                     f"{c.cycles:>14,.0f} {c.cycles / total:>6.1%}")
    lines.append(f"host operators (not run on the NPU, not in its time): "
                 f"{', '.join(op.name for op in n.host_ops)}")
    return "\n".join(lines)


def _plots(a: LLMAnalysis, out: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = a.cfg
    plots = {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    limit = cfg.positions or 32768
    seqs = [s for s in (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768) if s <= limit]
    for b in (1, 8, 32):
        ax1.plot(seqs, [llm.footprint(cfg, batch=b, seq=s)["total"] / 1e9 for s in seqs],
                 marker="o", label=f"batch {b}")
    ax1.axhline(cfg.weight_bytes(2) / 1e9, color="k", ls="--", lw=1, label="weights alone")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("sequence length (tokens)")
    ax1.set_ylabel("footprint, fp16 (GB)")
    ax1.set_title("against sequence length")
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    batches = [1, 2, 4, 8, 16, 32, 64]
    seq = min(a.seq, limit)
    parts = [llm.footprint(cfg, batch=b, seq=seq) for b in batches]
    bottom = [0.0] * len(batches)
    for key in ("weights", "kv_cache", "activations"):
        vals = [p[key] / 1e9 for p in parts]
        ax2.bar([str(b) for b in batches], vals, bottom=bottom, label=key.replace("_", " "))
        bottom = [x + v for x, v in zip(bottom, vals)]
    ax2.set_xlabel("batch (sequences)")
    ax2.set_ylabel("footprint, fp16 (GB)")
    ax2.set_title(f"against batch at {seq:,} tokens")
    ax2.legend(fontsize=8)
    ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{cfg.name}: weights, KV cache and activations in device memory")
    fig.tight_layout()
    plots["footprint"] = save_figure(fig, out / "footprint")

    points = []
    for n, g in a.steps:
        label = f"{n.phase} b{n.batch}"
        points.append((a.roof, Point(f"NPU {label}", n.cost.intensity, n.cost.flops / n.seconds)))
        points.append((a.gpu_roof, Point(f"GPU {label}", g.cost.intensity)))
    plots["roofline"] = plot_roofline([a.roof, a.gpu_roof], points, out / "roofline",
                                      title=f"{cfg.name}: prefill and decode on the roofline "
                                            f"(GPU points at their bound)")

    n = a.steps[-1][0]
    timed = [c for c in n.ops if c.op.kind != "host"]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    ax.bar([c.op.name for c in timed], [c.cycles / 1e6 for c in timed])
    ax.set_ylabel("NPU cycles per layer (millions)")
    ax.set_title(f"{cfg.name} {n.phase}, batch {n.batch}, {a.seq:,} tokens: one layer's operators "
                 f"(host: {', '.join(op.name for op in n.host_ops)})", fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    plots["llm_ops"] = save_figure(fig, out / "llm_ops")
    return plots


def write_llm_report(a: LLMAnalysis, out: str | pathlib.Path) -> dict:
    """Write ``llm.json``, ``llm_steps.csv``, the plots and ``report.html`` into ``out``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    (out / "llm.json").write_text(json.dumps(a.as_dict(), indent=1))
    files["json"] = out / "llm.json"
    with open(out / "llm_steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phase", "batch", "seq", "intensity", "npu_cycles", "npu_seconds",
                    "npu_tokens_per_s", "npu_utilization", "npu_mbu", "gpu", "gpu_seconds",
                    "gpu_tokens_per_s", "gpu_mbu", "gpu_bound"])
        for n, g in a.steps:
            w.writerow([n.phase, n.batch, n.seq, n.cost.intensity, n.cycles, n.seconds,
                        n.tokens_per_s, n.utilization, n.mbu, g.gpu, g.seconds, g.tokens_per_s,
                        g.mbu, g.bound])
    files["csv"] = out / "llm_steps.csv"
    plots = _plots(a, out)
    files.update(plots)
    figures = "".join(
        f"<figure><figcaption>{k}</figcaption>{p[1].read_text()[p[1].read_text().find('<svg'):]}</figure>"
        for k, p in plots.items())
    (out / "report.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{a.cfg.name}</title>"
        f"<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em}}"
        f"svg{{max-width:100%;height:auto}}</style></head><body><h1>{html.escape(a.cfg.name)}"
        f" on the NPU</h1><pre>{html.escape(format_llm(a))}</pre>{figures}</body></html>")
    files["html"] = out / "report.html"
    return files
