"""The performance model against the RTL and SCALE-Sim v3: ResNet-18 on the 16x16 NPU.

    python bench/perf_model.py [--size 224] [--repeat 3]

Compiles ResNet-18 (random weights, batch 1) for the default 16x16 config, predicts
its cycles with :func:`sw.analysis.perf.estimate`, runs it on the RTL (Verilator, the
C++ harness: about a minute) and prints per layer: the RTL's cycles (attributed as the
harness does), the model's and its error, and SCALE-Sim v3's two figures (total with
stalls, and compute only) from its cached results (bench/scalesim_ref.py,
``sw.analysis.scalesim.load_cached("resnet18")``) with their errors against the same
RTL cycles; then the totals, both wall times and whether the model is the closer one on
every layer SCALE-Sim covers (its convolutions and fc). Exits 1 when it is not.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import sw
from hw import NPUConfig
from sw import zoo
from sw.analysis import scalesim
from sw.analysis.perf import estimate


def _err(value: float, ref: float) -> float:
    return 100.0 * (value - ref) / ref if ref else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeat", type=int, default=3,
                        help="model runs to time (the best is reported)")
    args = parser.parse_args(argv)
    if args.size < 32 or args.repeat < 1:
        parser.error("--size must be at least 32 and --repeat at least 1")
    cfg = NPUConfig()
    model, _ = zoo.build("resnet18")
    shape = (3, args.size, args.size)
    gen = torch.Generator().manual_seed(0)
    print(f"ResNet-18 {shape} on {cfg.describe()}: quantizing and compiling", file=sys.stderr)
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)

    times, cpu = [], []
    for i in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        est = estimate(program)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"model run {i + 1}/{args.repeat}: {times[-1]:.2f} s", file=sys.stderr)
    t_model = min(times)

    print("RTL run (Verilator, about a minute)", file=sys.stderr)
    x = torch.randn(1, *shape, generator=gen)
    with sw.Device(cfg, "rtl", progress=True) as dev:
        t0 = time.perf_counter()
        dev.run(program, x)
        t_rtl = time.perf_counter() - t0
        stats = dev.stats

    try:
        ss = scalesim.load_cached("resnet18", cfg.rows, cfg.cols) if args.size == 224 else None
    except FileNotFoundError as exc:
        print(f"no SCALE-Sim results: {exc}", file=sys.stderr)
        ss = None
    ss_layers = {layer.name: layer for layer in ss.layers} if ss else {}

    print(f"\nResNet-18 {shape}, {program.insn_count:,} instructions, on {cfg.describe()}")
    head = (f"{'layer':18s} {'RTL':>10s} {'model':>10s} {'err%':>7s} {'SCALE-Sim':>11s} "
            f"{'err%':>7s} {'SS compute':>11s} {'err%':>7s}  closer")
    print(head)
    print("-" * len(head))
    worst = 0.0
    closer_all = True
    tot = {"rtl": 0, "model": 0, "ss_rtl": 0, "ss_model": 0, "ss": 0, "ssc": 0}
    for layer, mine in zip(stats["layers"], est.layers):
        rtl = int(layer["cycles"])
        err = _err(mine.cycles, rtl)
        worst = max(worst, abs(err))
        tot["rtl"] += rtl
        tot["model"] += mine.cycles
        line = f"{layer['name']:18s} {rtl:10,d} {mine.cycles:10,d} {err:+7.2f}"
        s = ss_layers.get(layer["name"])
        if s is not None:
            e_total = _err(s.total_cycles, rtl)
            e_comp = _err(s.compute_cycles, rtl)
            closer = abs(err) < min(abs(e_total), abs(e_comp))
            closer_all &= closer
            tot["ss_rtl"] += rtl
            tot["ss_model"] += mine.cycles
            tot["ss"] += s.total_cycles
            tot["ssc"] += s.compute_cycles
            line += (f" {s.total_cycles:11,d} {e_total:+7.1f} {s.compute_cycles:11,d} "
                     f"{e_comp:+7.1f}  {'model' if closer else 'SCALE-Sim'}")
        print(line)
    print("-" * len(head))
    other = int(stats["other_cycles"] or 0)
    print(f"{'(no layer)':18s} {other:10,d} {est.other_cycles:10,d}")
    print(f"{'total':18s} {stats['cycles']:10,d} {est.cycles:10,d} "
          f"{_err(est.cycles, stats['cycles']):+7.2f}")
    if ss_layers:
        print(f"{'conv + fc layers':18s} {tot['ss_rtl']:10,d} {tot['ss_model']:10,d} "
              f"{_err(tot['ss_model'], tot['ss_rtl']):+7.2f} {tot['ss']:11,d} "
              f"{_err(tot['ss'], tot['ss_rtl']):+7.1f} {tot['ssc']:11,d} "
              f"{_err(tot['ssc'], tot['ss_rtl']):+7.1f}")
    for key, name in (("array_busy_cycles", "ARRAY_BUSY"), ("stall_load_cycles", "STALL_LOAD"),
                      ("stall_compute_cycles", "STALL_COMPUTE"),
                      ("stall_store_cycles", "STALL_STORE")):
        print(f"{name:18s} {stats[key]:10,d} {getattr(est, key):10,d} "
              f"{_err(getattr(est, key), stats[key]):+7.2f}")
    print(f"\nworst layer error of the model: {worst:.2f} %")
    print(f"wall time: model {t_model:.2f} s (best of {args.repeat}; CPU {min(cpu):.2f} s), "
          f"RTL {t_rtl:.1f} s ({t_rtl / t_model:.0f}x)")
    if ss_layers:
        print(f"the model is closer to the RTL than SCALE-Sim (both figures) on every layer: "
              f"{'yes' if closer_all else 'NO'}")
    return 0 if closer_all else 1


if __name__ == "__main__":
    sys.exit(main())
