"""The functional model's BLAS threads: ResNet-18 (224x224, batch 1, 16x16) on ``func``,
first run and replays, with one BLAS thread (``NPU_BLAS_THREADS=1``, the default) against
the BLAS library's own default (``NPU_BLAS_THREADS=0``, the baseline), in one run.

The replay's chain products are many small matrix products, where BLAS threads cost more
than they give, the more so when the other core is busy (as under a test run or a sweep).

    python bench/func_threads.py [--model resnet18] [--replays 5]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import sim.plan
import sw
from hw import NPUConfig
from sw import zoo


def measure(program, x, threads: int, replays: int) -> tuple[float, float]:
    sim.plan.BLAS_THREADS = threads
    device = sw.Device(program.config)
    t = time.perf_counter()
    device.run(program, x)
    first = time.perf_counter() - t
    times = []
    for _ in range(replays):
        t = time.perf_counter()
        device.run(program, x)
        times.append(time.perf_counter() - t)
    return first, sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", help="zoo name (default resnet18)")
    ap.add_argument("--replays", type=int, default=5, help="replays per setting (default 5)")
    args = ap.parse_args(argv)
    if args.replays < 1:
        ap.error("--replays must be at least 1")
    model, shape = zoo.build(args.model)
    qmodel = sw.quantize(model, [torch.randn(1, *shape)])
    program = sw.compile(qmodel, NPUConfig())
    x = torch.randn(1, *shape)
    print(f"{args.model} {'x'.join(map(str, shape))} on func, 16x16; median of {args.replays} "
          f"replays", flush=True)
    rows = {}
    for threads, label in ((0, "BLAS default (baseline)"), (1, "one BLAS thread")):
        rows[threads] = measure(program, x, threads, args.replays)
        print(f"  {label:<24} first run {rows[threads][0]:6.2f} s   replay "
              f"{rows[threads][1]:6.3f} s", flush=True)
    print(f"  one thread: first run {rows[0][0] / rows[1][0]:.2f}x, replay "
          f"{rows[0][1] / rows[1][1]:.2f}x faster than the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
