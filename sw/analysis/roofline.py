"""The roofline of a device, and plots of workloads placed on it.

A device is its peak compute (operations per second; a MAC is 2 operations) and
its peak DRAM bandwidth. A workload with arithmetic intensity ``I`` (operations
per DRAM byte) can reach at most ``min(peak, I * bandwidth)``; the ridge point
``peak / bandwidth`` separates memory-bound from compute-bound work.

:func:`npu_roof` derives the roof of an NPU configuration: ``2 * rows * cols``
int8 operations per cycle at the clock, and by default one AXI data beat per
cycle as its bandwidth (``dma_data_width / 8`` bytes per cycle), or a DRAM
bandwidth the user gives.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Sequence

from hw.config import NPUConfig

__all__ = ["Roof", "Point", "npu_roof", "plot_roofline", "save_figure"]


@dataclass(frozen=True)
class Roof:
    """Peak compute ``ops_s`` and DRAM bandwidth ``bytes_s`` of a device named ``name``."""
    name: str
    ops_s: float
    bytes_s: float

    def __post_init__(self) -> None:
        if not (self.ops_s > 0 and self.bytes_s > 0):
            raise ValueError(f"roof {self.name!r}: peak compute ({self.ops_s}) and bandwidth "
                             f"({self.bytes_s}) must be positive")

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (ops per byte) where the two roofs meet."""
        return self.ops_s / self.bytes_s

    def attainable(self, intensity: float) -> float:
        """The most ops/s a workload of this intensity can reach."""
        return min(self.ops_s, intensity * self.bytes_s)

    def bound(self, intensity: float) -> str:
        return "compute" if intensity >= self.ridge else "memory"


@dataclass(frozen=True)
class Point:
    """A workload on the roofline: its intensity and, when measured, its achieved ops/s."""
    label: str
    intensity: float
    ops_s: float | None = None


def npu_roof(config: NPUConfig, *, clock_mhz: float, dram_gbs: float | None = None) -> Roof:
    """The roof of an NPU configuration at ``clock_mhz``.

    ``dram_gbs``: the DRAM bandwidth in GB/s (1e9 bytes); by default the AXI
    master's, one data beat per cycle. Raises :class:`ValueError` for a
    non-positive clock or bandwidth.
    """
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    hz = clock_mhz * 1e6
    bytes_s = config.dma_bytes * hz if dram_gbs is None else dram_gbs * 1e9
    if not bytes_s > 0:
        raise ValueError(f"dram_gbs must be positive, not {dram_gbs}")
    return Roof(f"NPU {config.rows}x{config.cols} @ {clock_mhz:g} MHz", 2 * config.macs * hz,
                bytes_s)


def plot_roofline(roofs: Sequence[Roof], points: Sequence[tuple[Roof, Point]],
                  path: str | pathlib.Path, *, title: str = "Roofline",
                  groups: Sequence[str] | None = None) -> list[pathlib.Path]:
    """Plot ``roofs`` (log-log) with each ``(roof, point)`` placed on its roof: at its
    achieved ops/s when measured (filled marker), else at the attainable bound (hollow).

    ``groups``: one name per point (e.g. its operator class): points are then coloured
    by group, one legend entry per group, and the labelled legend is left out (for
    plots of many points).

    Writes ``path`` with a ``.png`` and a ``.svg`` suffix; returns both paths.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not roofs:
        raise ValueError("plot_roofline needs at least one roof")
    intensities = [p.intensity for _, p in points] + [r.ridge for r in roofs]
    lo = min(intensities) / 4
    hi = max(intensities) * 4
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour_of = {}
    for k, roof in enumerate(roofs):
        colour = colours[k % len(colours)]
        colour_of[roof] = colour
        xs = [lo, roof.ridge, hi]
        ax.plot(xs, [roof.attainable(x) for x in xs], color=colour, lw=2,
                label=f"{roof.name}: {roof.ops_s / 1e12:.3g} TOP/s, {roof.bytes_s / 1e9:.3g} GB/s, "
                      f"ridge {roof.ridge:.3g} op/B")
    if groups is not None:
        if len(groups) != len(points):
            raise ValueError(f"{len(groups)} groups for {len(points)} points")
        names = list(dict.fromkeys(groups))
        for g_i, name in enumerate(names):
            colour = colours[(len(roofs) + g_i) % len(colours)]
            mine = [(r, p) for (r, p), g in zip(points, groups) if g == name]
            ax.scatter([p.intensity for _, p in mine],
                       [p.ops_s if p.ops_s is not None else r.attainable(p.intensity)
                        for r, p in mine], s=40, color=colour, zorder=3, alpha=0.85,
                       label=f"{name} ({len(mine)})")
        points = []
    markers = "os^Dv<>p*h"
    for k, (roof, p) in enumerate(points):
        y = p.ops_s if p.ops_s is not None else roof.attainable(p.intensity)
        ax.scatter([p.intensity], [y], s=50, marker=markers[k % len(markers)],
                   facecolors=colour_of.get(roof, "k") if p.ops_s is not None else "none",
                   edgecolors=colour_of.get(roof, "k"), zorder=3,
                   label=f"{p.label} ({p.intensity:.3g} op/B)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (operations per DRAM byte)")
    ax.set_ylabel("performance (operations per second)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | pathlib.Path) -> list[pathlib.Path]:
    """Write matplotlib figure ``fig`` as ``path`` with a ``.png`` and a ``.svg`` suffix,
    close it, and return both paths (every plot of the analysis is saved this way)."""
    import matplotlib.pyplot as plt
    base = pathlib.Path(path).with_suffix("")
    out = [base.with_suffix(".png"), base.with_suffix(".svg")]
    for p in out:
        fig.savefig(p)
    plt.close(fig)
    return out
