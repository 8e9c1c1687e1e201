"""Design-space sweep: a model on every point of a grid of NPU configurations.

    python -m sw.sweep MODEL --rows 8,16,32 --cols 8,16,32 --spad-kib 32,64 --acc-kib 16,64
        --bus-bytes 8,16 [--clock-mhz 200] [--dram-gbs 3.2] [--executor local|dask]
        [--workers N] [--scheduler ADDR] [--area config|yosys] [--out DIR]

MODEL is a zoo name (``resnet18``, ...) or ``module:attr`` as for ``python -m sw.run``.
Each axis takes a comma-separated list; a missing one keeps the default configuration's
value. Every point is evaluated with the layer-level model (:mod:`sw.analysis.layers`);
points NPUConfig rejects or the model does not fit are written as invalid, with the
reason. Writes ``sweep.csv`` and ``pareto.png``/``pareto.svg`` into ``--out`` and prints
the Pareto points. The API is :mod:`sw.analysis.sweep`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

from hw import NPUConfig

_DEFAULT = NPUConfig()


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ints") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be positive")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be positive")
    return values


def parser() -> argparse.ArgumentParser:
    d = _DEFAULT
    p = argparse.ArgumentParser(prog="python -m sw.sweep", description=__doc__.splitlines()[0])
    p.add_argument("model", help="zoo name or module:attr")
    p.add_argument("--rows", type=_ints, default=[d.rows], help="array rows (default 16)")
    p.add_argument("--cols", type=_ints, default=[d.cols], help="array columns (default 16)")
    p.add_argument("--spad-kib", type=_ints, default=[d.spad_depth * d.rows // 1024],
                   help="scratchpad KiB (default 64)")
    p.add_argument("--acc-kib", type=_ints, default=[d.acc_depth * d.cols * 4 // 1024],
                   help="accumulator KiB (default 64)")
    p.add_argument("--bus-bytes", type=_ints, default=[d.dma_bytes],
                   help="AXI data bytes per beat (default 16)")
    p.add_argument("--clock-mhz", type=_floats, default=[200.0], help="clock (default 200 MHz)")
    p.add_argument("--dram-gbs", type=_floats, default=None,
                   help="DRAM bandwidth in GB/s (default: one bus beat per cycle)")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    p.add_argument("--scheduler", help="a running Dask scheduler, e.g. tcp://host:8786 "
                                       "(default: a LocalCluster for the sweep)")
    p.add_argument("--area", choices=["config", "yosys"], default="config",
                   help="area from the configuration, or Yosys cell counts too")
    p.add_argument("--input-shape", help="one sample's shape for a model outside the zoo")
    p.add_argument("--calib", type=int, default=4, help="calibration batches of 8 (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sweep", help="output directory (default ./sweep)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    import sw
    from sw.analysis import sweep as sweeps
    from sw.zoo import load

    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be at least 1")
    if args.scheduler and args.executor != "dask":
        ap.error("--scheduler needs --executor dask")
    if args.calib < 1:
        ap.error("--calib must be at least 1")
    try:
        model, shape = load(args.model, args.seed)
    except ValueError as exc:
        ap.error(str(exc))
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            ap.error(f"--input-shape {args.input_shape!r} is not a comma-separated list of ints")
    if shape is None:
        ap.error("give --input-shape for a model outside the zoo")
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    try:
        qmodel = sw.quantize(model, [torch.randn(8, *shape, generator=gen) for _ in range(args.calib)])
    except (sw.UnsupportedOpError, ValueError) as exc:
        print(f"python -m sw.sweep: error: {exc}", file=sys.stderr)
        return 1
    points = sweeps.grid(rows=args.rows, cols=args.cols, spad_kib=args.spad_kib,
                         acc_kib=args.acc_kib, bus_bytes=args.bus_bytes, clock_mhz=args.clock_mhz,
                         dram_gbs=args.dram_gbs or [None])
    print(f"{args.model}: quantized in {time.perf_counter() - t0:.1f} s; {len(points)} points "
          f"on {args.executor}")
    t0 = time.perf_counter()
    results = sweeps.sweep(qmodel, points, executor=args.executor, workers=args.workers,
                           scheduler=args.scheduler, area=args.area, progress=not args.quiet)
    wall = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = sweeps.write_csv(results, out / "sweep.csv")
    valid = [r for r in results if r.valid]
    print(f"{len(valid)} valid, {len(results) - len(valid)} invalid points in {wall:.1f} s "
          f"({wall / max(1, len(results)) * 1e3:.1f} ms a point)")
    for r in results:
        if not r.valid:
            print(f"  invalid {_describe(r.point)}: {r.error}")
    if valid:
        plots = sweeps.plot_pareto(results, out / "pareto", title=f"{args.model} sweep")
        area_key = "yosys_cells" if args.area == "yosys" else "area_mm2"
        print(f"Pareto front, latency against {area_key}:")
        for r in sweeps.pareto_front(results, area_key, "latency_ms"):
            print(f"  {_describe(r.point)}: {r.latency_ms:.3f} ms, {getattr(r, area_key):.4g}, "
                  f"{r.energy_uj:.1f} uJ, utilization {100 * r.utilization:.1f} %")
        print(f"wrote {csv_path}, {', '.join(str(p) for p in plots)}")
    else:
        print(f"wrote {csv_path} (no valid point, no plot)")
    return 0


def _describe(p) -> str:
    dram = f", {p.dram_gbs:g} GB/s" if p.dram_gbs else ""
    return (f"{p.rows}x{p.cols} spad {p.spad_kib} KiB acc {p.acc_kib} KiB bus {p.bus_bytes} B "
            f"@ {p.clock_mhz:g} MHz{dram}")


if __name__ == "__main__":
    sys.exit(main())
