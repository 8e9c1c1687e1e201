"""Design-space sweeps: every point of a grid of array shapes, SRAM sizes, bus widths,
clocks and DRAM bandwidths, evaluated with the layer-level model (:mod:`.layers`), on a
local process pool or a Dask distributed cluster; a CSV, Pareto fronts and their plots.

The model is quantized once per sweep and shipped to every worker once (the pool's
initializer, Dask's ``scatter``); a point costs one :func:`sw.analysis.layers.estimate_layers`.
A point whose configuration :class:`hw.NPUConfig` rejects, or that the model does not fit
(:class:`sw.CompileError`), is a result with ``valid=False`` and the reason, not a crash.

The area proxy (``area="config"``) is computed from the configuration alone::

    area_mm2 = (rows * cols * MAC_UM2 + sram_bits * SRAM_BIT_UM2) / 1e6

with ``MAC_UM2 = 419`` (Horowitz, ISSCC 2014, 45 nm: an 8-bit multiplier 282 um^2 and a
32-bit adder 137 um^2) and ``SRAM_BIT_UM2 = 0.577`` (Intel's 45 nm 6T cell, 0.346 um^2,
at 60 % array efficiency), ``sram_bits`` the scratchpad, accumulator and parameter
memories' bits. It ranks designs; it is no layout. ``area="yosys"`` adds the cell count of
the generated design after Yosys' generic ``synth`` (memories excluded: they are cells
of their own), cached per configuration under ``build/sweep/yosys/``.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import pathlib
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

from hw.config import ConfigError, NPUConfig

from ..compiler import CompileError
from ..quant import QuantizedModel
from .layers import estimate_layers
from .roofline import save_figure

__all__ = ["SweepPoint", "SweepResult", "grid", "point_config", "area_mm2", "yosys_cells",
           "evaluate", "sweep", "pareto_front", "write_csv", "plot_pareto", "EXECUTORS",
           "MAC_UM2", "SRAM_BIT_UM2"]

#: um^2 of one int8 MAC at 45 nm: an 8-bit multiply and a 32-bit add (Horowitz, ISSCC 2014).
MAC_UM2 = 282.0 + 137.0
#: um^2 of one SRAM bit at 45 nm: a 0.346 um^2 6T cell at 60 % array efficiency.
SRAM_BIT_UM2 = 0.346 / 0.6
#: The ways a sweep can run.
EXECUTORS = ("local", "dask")
AREAS = ("config", "yosys")
_BASE = NPUConfig()


@dataclass(frozen=True)
class SweepPoint:
    """One design point: the array, the SRAM sizes (KiB), the AXI data bus (bytes per
    beat), the clock and, when it limits, the DRAM bandwidth (GB/s)."""
    rows: int
    cols: int
    spad_kib: int
    acc_kib: int
    bus_bytes: int
    clock_mhz: float
    dram_gbs: float | None = None


@dataclass(frozen=True)
class SweepResult:
    """A point's figures per inference, or ``valid=False`` and why."""
    point: SweepPoint
    valid: bool
    error: str = ""
    config_hash: str = ""
    cycles: float = 0.0
    latency_ms: float = 0.0
    energy_uj: float = 0.0
    area_mm2: float = 0.0
    yosys_cells: int | None = None
    real_macs: int = 0
    mac_slots: int = 0
    utilization: float = 0.0       #: real MACs per MAC unit and cycle
    dram_bytes: int = 0
    compute_bound_share: float = 0.0   #: share of the cycles in compute-bound layers

    def row(self) -> dict:
        """The result as one flat CSV row."""
        d = dataclasses.asdict(self.point)
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "point"})
        return d


def grid(*, rows: Sequence[int], cols: Sequence[int], spad_kib: Sequence[int],
         acc_kib: Sequence[int], bus_bytes: Sequence[int], clock_mhz: Sequence[float] = (200.0,),
         dram_gbs: Sequence[float | None] = (None,)) -> list[SweepPoint]:
    """Every combination of the values given, in a fixed order."""
    axes = (rows, cols, spad_kib, acc_kib, bus_bytes, clock_mhz, dram_gbs)
    for name, values in zip(("rows", "cols", "spad_kib", "acc_kib", "bus_bytes", "clock_mhz",
                             "dram_gbs"), axes):
        if not values:
            raise ValueError(f"sweep axis {name} has no values")
    return [SweepPoint(*p) for p in itertools.product(*axes)]


def point_config(point: SweepPoint, base: NPUConfig = _BASE) -> NPUConfig:
    """The configuration of ``point``: ``base`` with its array, ``spad_depth = spad_kib KiB
    / rows`` bytes, ``acc_depth = acc_kib KiB / (4 * cols)`` bytes and an AXI bus of
    ``bus_bytes``. Raises :class:`hw.ConfigError` for what NPUConfig rejects, naming it."""
    for name in ("spad_kib", "acc_kib", "bus_bytes"):
        value = getattr(point, name)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive int, not {value!r}")
    return base.replace(rows=point.rows, cols=point.cols,
                        spad_depth=point.spad_kib * 1024 // point.rows,
                        acc_depth=point.acc_kib * 1024 // (4 * point.cols),
                        dma_data_width=8 * point.bus_bytes)


def area_mm2(config: NPUConfig) -> float:
    """The area proxy of ``config`` in mm^2 at 45 nm (the module's formula)."""
    bits = (config.spad_depth * config.rows * 8 + config.acc_depth * config.cols * 32
            + config.param_depth * config.cols * 32)
    return (config.macs * MAC_UM2 + bits * SRAM_BIT_UM2) / 1e6


def yosys_cells(config: NPUConfig, cache_dir: str | pathlib.Path = "build/sweep/yosys") -> int:
    """Cells of the NPU for ``config`` after Yosys' generic ``synth`` (memories excluded),
    cached in ``cache_dir`` by the configuration's hash. Needs a full Yosys
    (:func:`toolchain.find_yosys`, which raises naming what to install); raises
    ``RuntimeError`` with Yosys' message when it fails."""
    from amaranth.back import rtlil

    from hw.npu import NPU
    from toolchain import find_yosys

    cache = pathlib.Path(cache_dir)
    entry = cache / f"{config.hash:08x}.json"
    if entry.exists():
        return json.loads(entry.read_text())["cells"]
    work = cache / f"{config.hash:08x}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "npu.il").write_text(rtlil.convert(NPU(config), name="top"))
    script = "read_rtlil npu.il; synth -flatten -top top; tee -q -o stat.json stat -json"
    run = subprocess.run([*find_yosys(), "-q", "-p", script], cwd=work, capture_output=True,
                         text=True, timeout=3600)
    if run.returncode != 0:
        raise RuntimeError(f"yosys failed on {config.describe()}: {run.stderr[-2000:]}")
    stat = json.loads((work / "stat.json").read_text())
    types = stat["design"]["num_cells_by_type"]
    cells = sum(n for name, n in types.items() if not name.startswith("$mem"))
    entry.write_text(json.dumps({"cells": cells, "config": config.to_dict(), "by_type": types}))
    return cells


def evaluate(qmodel: QuantizedModel, point: SweepPoint, area: str = "config",
             base: NPUConfig = _BASE) -> SweepResult:
    """One point's result (``valid=False`` with the reason for a configuration NPUConfig
    rejects or a model that does not fit)."""
    try:
        config = point_config(point, base)
        est = estimate_layers(qmodel, config, clock_mhz=point.clock_mhz, dram_gbs=point.dram_gbs)
    except (ConfigError, CompileError) as exc:
        return SweepResult(point, False, f"{type(exc).__name__}: {exc}")
    cells = yosys_cells(config) if area == "yosys" else None
    npu = [layer for layer in est.layers if not layer.host]
    compute = sum(layer.cycles for layer in npu if layer.bound == "compute")
    return SweepResult(
        point, True, "", f"{config.hash:08x}", est.cycles, est.latency_s * 1e3,
        est.energy.total * 1e-6, area_mm2(config), cells, est.real_macs, est.total.mac_slots,
        est.utilization, est.total.dram_read_bytes + est.total.dram_write_bytes,
        compute / est.cycles if est.cycles else 0.0)


# The model each pool worker holds, set once by the pool's initializer.
_worker_model: QuantizedModel | None = None


def _init_worker(qmodel: QuantizedModel) -> None:
    global _worker_model
    _worker_model = qmodel


def _evaluate_in_worker(point: SweepPoint, area: str) -> SweepResult:
    return evaluate(_worker_model, point, area)


def sweep(qmodel: QuantizedModel, points: Iterable[SweepPoint], *, executor: str = "local",
          workers: int | None = None, scheduler: str | None = None, area: str = "config",
          progress: bool = True) -> list[SweepResult]:
    """Evaluate every point, in the order given.

    ``executor``: ``local`` (a process pool of ``workers``, default the CPU count) or
    ``dask`` (the Dask scheduler at ``scheduler``, e.g. ``tcp://host:8786``, or a
    ``distributed.LocalCluster`` of ``workers`` processes started for the sweep);
    ``area``: ``config`` or ``yosys`` (see the module); ``progress``: a tqdm bar.
    Raises ``ValueError`` for an unknown executor or area, or a non-positive worker count.
    """
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"sweep expects a QuantizedModel from sw.quantize, not {type(qmodel).__name__}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if area not in AREAS:
        raise ValueError(f"area {area!r} is not one of {', '.join(AREAS)}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, not {workers!r}")
    if scheduler is not None and executor != "dask":
        raise ValueError("a scheduler address needs executor='dask'")
    points = list(points)
    from tqdm import tqdm
    bar = tqdm(total=len(points), unit="point", disable=not progress, desc="sweep")
    try:
        if executor == "local":
            return _sweep_local(qmodel, points, workers, area, bar)
        return _sweep_dask(qmodel, points, workers, scheduler, area, bar)
    finally:
        bar.close()


def _sweep_local(qmodel, points, workers, area, bar) -> list[SweepResult]:
    import concurrent.futures as cf
    import multiprocessing
    import os

    workers = workers or os.cpu_count() or 1
    results: list[SweepResult | None] = [None] * len(points)
    # spawn: a fork of a process that has run torch's thread pools can hang.
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(qmodel,)) as pool:
        futures = {pool.submit(_evaluate_in_worker, p, area): i for i, p in enumerate(points)}
        for fut in cf.as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update()
    return results


def _sweep_dask(qmodel, points, workers, scheduler, area, bar) -> list[SweepResult]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            model = client.scatter(qmodel, broadcast=True)
            futures = client.map(evaluate, [model] * len(points), points, area=area, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            results: list[SweepResult | None] = [None] * len(points)
            for fut in as_completed(futures):
                results[index[fut.key]] = fut.result()
                bar.update()
            return results
    finally:
        if cluster is not None:
            cluster.close()


def pareto_front(results: Sequence[SweepResult], x: str, y: str) -> list[SweepResult]:
    """The valid results no other valid result beats on both ``x`` and ``y`` (both to
    minimize, names of :class:`SweepResult` fields), in increasing ``x``."""
    valid = sorted((r for r in results if r.valid), key=lambda r: (getattr(r, x), getattr(r, y)))
    front, best = [], float("inf")
    for r in valid:
        if getattr(r, y) < best:
            front.append(r)
            best = getattr(r, y)
    return front


def write_csv(results: Sequence[SweepResult], path: str | pathlib.Path) -> pathlib.Path:
    """One row per point (invalid ones too, with their reason) and a column ``pareto_area``
    and ``pareto_energy`` marking the fronts."""
    path = pathlib.Path(path)
    on_area = {id(r) for r in pareto_front(results, _area_key(results), "latency_ms")}
    on_energy = {id(r) for r in pareto_front(results, "energy_uj", "latency_ms")}
    rows = []
    for r in results:
        row = r.row()
        row.update(pareto_area=id(r) in on_area, pareto_energy=id(r) in on_energy)
        rows.append(row)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["point"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _area_key(results: Sequence[SweepResult]) -> str:
    valid = [r for r in results if r.valid]
    return "yosys_cells" if valid and all(r.yosys_cells is not None for r in valid) else "area_mm2"


def _tick(value: float, _pos) -> str:
    """Log-axis labels at 1, 2 and 5 of each decade, in plain numbers."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    if lead not in (1, 2, 5):
        return ""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def plot_pareto(results: Sequence[SweepResult], path: str | pathlib.Path, *,
                title: str = "Design-space sweep") -> list[pathlib.Path]:
    """Latency against the area proxy and against energy, every valid point and the Pareto
    front marked; writes ``path`` as ``.png`` and ``.svg`` and returns both paths. Raises
    ``ValueError`` when no point is valid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    valid = [r for r in results if r.valid]
    if not valid:
        raise ValueError("no valid point to plot")
    area_key = _area_key(results)
    area_label = ("Yosys cells (generic synth, memories excluded)" if area_key == "yosys_cells"
                  else "area proxy (mm$^2$ at 45 nm: MACs + SRAM bits)")
    macs = sorted({r.point.rows * r.point.cols for r in valid})
    cmap = plt.get_cmap("viridis", max(2, len(macs)))
    colour = {m: cmap(i) for i, m in enumerate(macs)}
    plain = matplotlib.ticker.FuncFormatter(_tick)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), dpi=120)
    for ax, x, xlabel in ((axes[0], area_key, area_label),
                          (axes[1], "energy_uj", "energy per inference (uJ)")):
        for m in macs:
            pts = [r for r in valid if r.point.rows * r.point.cols == m]
            ax.scatter([getattr(r, x) for r in pts], [r.latency_ms for r in pts], s=14,
                       color=colour[m], alpha=0.6, label=f"{m} MACs")
        front = pareto_front(valid, x, "latency_ms")
        ax.plot([getattr(r, x) for r in front], [r.latency_ms for r in front], "-o", color="red",
                ms=6, mfc="none", lw=1.5, label=f"Pareto front ({len(front)} points)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("latency per inference (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    invalid = len(results) - len(valid)
    fig.suptitle(f"{title}: {len(valid)} valid points" + (f", {invalid} invalid" if invalid else ""))
    fig.tight_layout()
    return save_figure(fig, path)
