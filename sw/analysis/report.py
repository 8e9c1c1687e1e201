"""Reports of an :class:`~sw.analysis.metrics.Analysis`: text tables, CSV, JSON, plots, HTML.

:func:`write_report` writes into one folder:

* ``layers.csv``: one row per layer (and the total), every figure of
  :class:`~sw.analysis.metrics.LayerMetrics`, energy per component;
* ``analysis.json``: everything (config, roof, totals, layers, operator-class shares,
  hotspots, host operators);
* plots, each as PNG and SVG: ``roofline`` (the config's roofline, every NPU layer on
  it at its achieved performance), ``utilization`` (per-layer real and slot
  utilization), ``time_share`` (per-layer share of cycles and per-class shares of
  cycles, MACs and DRAM bytes), ``energy`` (per-layer energy by component);
* ``report.html``: the tables and the SVG plots in one self-contained page.
"""

from __future__ import annotations

import csv
import html
import json
import math
import pathlib

from .metrics import Analysis, LayerMetrics
from .roofline import Point, plot_roofline, save_figure

__all__ = ["format_table", "format_summary", "write_report", "CSV_COLUMNS"]

#: The CSV's columns (then one ``energy_<component>_pj`` column per energy component).
CSV_COLUMNS = ("id", "name", "op", "op_class", "where", "macs", "mac_slots", "flops",
               "param_bytes", "activation_bytes", "footprint_bytes", "dram_read_bytes",
               "dram_write_bytes", "intensity", "cycles", "seconds", "utilization",
               "slot_utilization", "achieved_gbs", "mbu", "bound", "host_seconds")

_ENERGY_PARTS = ("mac", "alu", "requant", "sram_spad", "sram_acc", "sram_param", "dram")


def _fmt(value, spec: str = ",") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def format_table(a: Analysis) -> str:
    """The per-layer table and the total as text."""
    head = (f"{'layer':<24} {'op':<8} {'class':<11} {'MACs':>12} {'MAC slots':>12} "
            f"{'param B':>9} {'DRAM B':>10} {'op/B':>7} {'cycles':>11} {'util':>6} "
            f"{'slots':>6} {'GB/s':>6} {'MBU':>6} {'bound':<7} {'energy nJ':>9}")
    lines = [head, "-" * len(head)]
    for m in [*a.layers, a.total]:
        if m is a.total:
            lines.append("-" * len(head))
        lines.append(
            f"{m.name[:24]:<24} {m.op:<8} {m.op_class:<11} {m.macs:>12,} {m.mac_slots:>12,} "
            f"{m.param_bytes:>9,} {m.dram_bytes:>10,} {_fmt(m.intensity, '.1f'):>7} "
            f"{_fmt(m.cycles, ',.0f'):>11} {_fmt(m.utilization, '.1%'):>6} "
            f"{_fmt(m.slot_utilization, '.1%'):>6} {_fmt(m.achieved_gbs, '.2f'):>6} "
            f"{_fmt(m.mbu, '.1%'):>6} {m.bound:<7} {m.energy_pj['total'] / 1e3:>9,.1f}")
    return "\n".join(lines)


def format_summary(a: Analysis, top: int = 5) -> str:
    """Totals, hotspots, operator-class shares and host operators as text."""
    t = a.total
    out = [f"{a.model} on {a.config.describe()} at {a.clock_mhz:g} MHz "
           f"(cycles: {a.timing_source}; energy: {a.energy_table})",
           f"roof: {a.roof.ops_s / 1e9:,.1f} GOP/s peak, {a.roof.bytes_s / 1e9:,.2f} GB/s DRAM, "
           f"ridge {a.roof.ridge:.1f} op/B"]
    if t.cycles is not None:
        out.append(f"latency {t.seconds * 1e3:,.3f} ms ({t.cycles:,.0f} cycles), "
                   f"{a.throughput:,.1f} samples/s; utilization {t.utilization:.1%} of real MACs, "
                   f"{t.slot_utilization:.1%} of MAC slots; DRAM {t.achieved_gbs:.2f} GB/s = "
                   f"MBU {t.mbu:.1%}")
    out.append(f"work: {t.macs:,} MACs ({t.mac_slots:,} MAC slots), {t.flops:,} FLOPs; "
               f"{t.param_bytes:,} parameter bytes, footprint {t.footprint_bytes:,} B; DRAM "
               f"{t.dram_read_bytes:,} B read, {t.dram_write_bytes:,} B written, "
               f"{_fmt(t.intensity, '.1f')} op/B ({t.bound}-bound)")
    e = t.energy_pj
    out.append(f"energy {e['total'] / 1e6:,.3f} uJ per sample: " + ", ".join(
        f"{k} {100 * e[k] / e['total']:.1f} %" for k in _ENERGY_PARTS if e.get(k)))
    hot = a.hotspots(top)
    if hot:
        out.append("hotspots: " + ", ".join(
            f"{m.name} {m.cycles / t.cycles:.1%}" for m in hot))
    shares = a.class_shares()
    out.append("time per operator class: " + ", ".join(
        f"{cls} {s['cycles']:.1%} of cycles for {s['macs']:.1%} of MACs" for cls, s in shares.items()))
    if a.host_ops:
        out.append(f"host operators (not run on the NPU): {', '.join(a.host_ops)}")
    return "\n".join(out)


def _row(m: LayerMetrics) -> dict:
    d = {k: getattr(m, k) for k in CSV_COLUMNS}
    d.update({f"energy_{k}_pj": m.energy_pj.get(k, 0.0) for k in (*_ENERGY_PARTS, "total")})
    return d


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _plots(a: Analysis, out: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    npu = [m for m in a.layers if m.where == "npu"]
    names = [m.name for m in npu]
    x = range(len(npu))
    width = max(8.0, 0.28 * len(npu) + 2)
    plots = {}

    # Roofline: each layer at its achieved op/s (or its bound when untimed).
    placed = [m for m in npu if m.dram_bytes and m.flops]
    points = [(a.roof, Point(m.name, m.intensity, m.flops / m.seconds if m.seconds else None))
              for m in placed]
    plots["roofline"] = plot_roofline(
        [a.roof], points, out / "roofline",
        title=f"{a.model}: layers on the roofline of {a.roof.name}",
        groups=[m.op_class for m in placed] if len(placed) > 10 else None)

    if any(m.cycles is not None for m in npu):
        fig, ax = plt.subplots(figsize=(width, 4.5), dpi=120)
        ax.bar([i - 0.2 for i in x], [100 * (m.utilization or 0) for m in npu], 0.4,
               label="real MACs")
        ax.bar([i + 0.2 for i in x], [100 * (m.slot_utilization or 0) for m in npu], 0.4,
               label="MAC slots")
        ax.set_xticks(list(x), names, rotation=75, fontsize=7)
        ax.set_ylabel("utilization of the array (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"{a.model}: per-layer utilization, {a.config.rows}x{a.config.cols} array "
                     f"(cycles: {a.timing_source})")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        plots["utilization"] = save_figure(fig, out / "utilization")

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width + 5.5, 4.5), dpi=120,
                                       gridspec_kw={"width_ratios": [width, 4.5]})
        total = sum(m.cycles or 0 for m in npu) or 1
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        classes = list(a.class_shares())
        colour_of = {c: colours[k % len(colours)] for k, c in enumerate(classes)}
        ax1.bar(list(x), [100 * (m.cycles or 0) / total for m in npu],
                color=[colour_of[m.op_class] for m in npu])
        ax1.set_xticks(list(x), names, rotation=75, fontsize=7)
        ax1.set_ylabel("share of NPU cycles (%)")
        ax1.set_title("time per layer (colour: operator class)")
        ax1.grid(True, axis="y", alpha=0.3)
        shares = a.class_shares()
        keys = ("cycles", "macs", "dram_bytes")
        bottom = [0.0] * len(keys)
        for cls in classes:
            vals = [100 * shares[cls][k] for k in keys]
            ax2.bar(["cycles", "real MACs", "DRAM bytes"], vals, bottom=bottom,
                    color=colour_of[cls], label=cls)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax2.set_ylabel("share (%)")
        ax2.set_title("per operator class")
        ax2.legend(fontsize=8)
        fig.suptitle(f"{a.model}: where the time goes")
        fig.tight_layout()
        plots["time_share"] = save_figure(fig, out / "time_share")

    fig, ax = plt.subplots(figsize=(width, 4.5), dpi=120)
    bottom = [0.0] * len(npu)
    for part in _ENERGY_PARTS:
        vals = [m.energy_pj.get(part, 0.0) / 1e6 for m in npu]
        if any(vals):
            ax.bar(list(x), vals, bottom=bottom, label=part.replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(list(x), names, rotation=75, fontsize=7)
    ax.set_ylabel("energy per sample (µJ)")
    ax.set_title(f"{a.model}: energy per layer ({a.energy_table})")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    plots["energy"] = save_figure(fig, out / "energy")
    return plots


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}td:nth-child(-n+4){text-align:left}pre{background:#f6f6f6;padding:1em}
figure{margin:1em 0}svg{max-width:100%;height:auto}"""


def _html(a: Analysis, plots: dict[str, list[pathlib.Path]]) -> str:
    cols = ("name", "op", "op_class", "where", "macs", "mac_slots", "flops", "param_bytes",
            "footprint_bytes", "dram_read_bytes", "dram_write_bytes", "intensity", "cycles",
            "utilization", "slot_utilization", "achieved_gbs", "mbu", "bound")
    pct = {"utilization", "slot_utilization", "mbu"}

    def cell(m, c):
        v = getattr(m, c)
        if c in pct:
            return _fmt(v, ".1%")
        if isinstance(v, float):
            return _fmt(v, ",.2f")
        return html.escape(_fmt(v) if isinstance(v, int) else str(v))

    rows = "\n".join("<tr>" + "".join(f"<td>{cell(m, c)}</td>" for c in cols) + "</tr>"
                     for m in [*a.layers, a.total])
    figures = []
    for name, paths in plots.items():
        svg = next(p for p in paths if p.suffix == ".svg").read_text()
        svg = svg[svg.find("<svg"):]          # drop the XML prolog: inline in HTML
        figures.append(f"<figure><figcaption>{html.escape(name)}</figcaption>{svg}</figure>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(a.model)}"
            f" on the NPU</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(a.model)}: co-design analysis</h1>"
            f"<pre>{html.escape(format_summary(a))}</pre>"
            f"<h2>Per layer (one sample)</h2><table><tr>"
            + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{rows}</table>"
            f"<h2>Plots</h2>{''.join(figures)}</body></html>")


def write_report(a: Analysis, out: str | pathlib.Path) -> dict[str, pathlib.Path | list[pathlib.Path]]:
    """Write ``layers.csv``, ``analysis.json``, the plots and ``report.html`` into ``out``
    (created if missing); returns the paths by name."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    with open(out / "layers.csv", "w", newline="") as f:
        rows = [_row(m) for m in [*a.layers, a.total]]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    files["csv"] = out / "layers.csv"
    (out / "analysis.json").write_text(json.dumps(_json_safe(a.as_dict()), indent=1))
    files["json"] = out / "analysis.json"
    plots = _plots(a, out)
    files.update(plots)
    (out / "report.html").write_text(_html(a, plots))
    files["html"] = out / "report.html"
    return files
