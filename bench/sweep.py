"""The 500-point ResNet-18 design-space sweep, timed against its 5-minute goal.

    python bench/sweep.py [--workers 2] [--executor local|dask] [--out build/bench-sweep]

Rows and columns 4 to 64, scratchpad 32 to 512 KiB, accumulator 32 or 128 KiB, an AXI
bus of 8 or 32 bytes (5 x 5 x 5 x 2 x 2 = 500 points) at 200 MHz, every point with the
layer-level model (sw.analysis.layers) on a local process pool. The model is quantized
once (not counted in the sweep's time, printed apart). Prints the wall time against the
goal, the invalid points and the Pareto points; writes the CSV and plots into --out.
"""
import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sw  # noqa: E402
from sw import zoo  # noqa: E402
from sw.analysis import sweep as sweeps  # noqa: E402

GOAL_S = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", choices=sweeps.EXECUTORS, default="local")
    parser.add_argument("--out", default="build/bench-sweep")
    args = parser.parse_args()

    model, shape = zoo.build("resnet18")
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    qmodel = sw.quantize(model, [torch.randn(8, *shape, generator=gen) for _ in range(2)])
    t_quant = time.perf_counter() - t0
    points = sweeps.grid(rows=[4, 8, 16, 32, 64], cols=[4, 8, 16, 32, 64],
                         spad_kib=[32, 64, 128, 256, 512], acc_kib=[32, 128], bus_bytes=[8, 32])
    t0 = time.perf_counter()
    results = sweeps.sweep(qmodel, points, executor=args.executor, workers=args.workers)
    wall = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps.write_csv(results, out / "sweep.csv")
    plots = sweeps.plot_pareto(results, out / "pareto", title="ResNet-18 (224x224) sweep")
    valid = [r for r in results if r.valid]
    print(f"ResNet-18: quantized once in {t_quant:.1f} s; {len(points)} points on "
          f"{args.executor} with {args.workers} workers in {wall:.1f} s "
          f"({wall / len(points) * 1e3:.0f} ms a point): goal {GOAL_S:.0f} s, "
          f"{'met' if wall <= GOAL_S else 'MISSED'}")
    reasons: dict[str, int] = {}
    for r in results:
        if not r.valid:
            # The exception class and its last clause: the reason without the layer's name.
            reason = r.error.split(":")[0] + ": " + r.error.split(": ")[-1]
            reasons[reason] = reasons.get(reason, 0) + 1
    print(f"{len(valid)} valid, {len(results) - len(valid)} invalid:")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d} x {reason}")
    for x, label in (("area_mm2", "area proxy (mm^2)"), ("energy_uj", "energy (uJ)")):
        print(f"Pareto front, latency against {label}:")
        for r in sweeps.pareto_front(results, x, "latency_ms"):
            p = r.point
            print(f"  {p.rows:2d}x{p.cols:<2d} spad {p.spad_kib:3d} KiB acc {p.acc_kib:3d} KiB "
                  f"bus {p.bus_bytes:2d} B: {r.latency_ms:7.2f} ms, {r.area_mm2:6.3f} mm^2, "
                  f"{r.energy_uj:8.1f} uJ, utilization {100 * r.utilization:5.1f} %")
    print(f"wrote {out / 'sweep.csv'}, {', '.join(map(str, plots))}")
    return 0 if wall <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
