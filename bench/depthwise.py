"""Where MobileNetV2's cycles go on the NPU, and the limit of depthwise convolutions.

    python bench/depthwise.py [--model mobilenetv2] [--size 64] [--rows 16 --cols 16] [--top 12]

For every layer of the compiled model, from the performance model (which gives the RTL's
cycle counts exactly, tests/sim/test_performance.py): cycles, real MACs, MAC slots its GEMMs
occupy, and utilization counting real MACs (``macs / (cycles * rows * cols)``), grouped by
kind (depthwise, pointwise and other convolutions, linear, ALU layers). Then the bound:
on a weight-stationary array, a row of the input enters every column at once, and in a
depthwise convolution each output channel reads only its own input channel, so one input
row can feed at most one useful product per column: ``cols`` of the ``rows * cols`` MACs a
cycle (1/16 on 16x16), whatever the tiling. The block-diagonal tiles the compiler emits
reach that bound in their MAC slots; the table says how close the cycles come.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import sw  # noqa: E402
from hw import NPUConfig  # noqa: E402
from sw import zoo  # noqa: E402
from sw.analysis import perf  # noqa: E402


def kind(qmodel, layer) -> str:
    if layer["op"] == "conv":
        a = qmodel.node(layer["name"]).attrs
        cin_g = a.w_q.shape[1]
        if a.groups > 1 and cin_g == 1:
            return "depthwise conv"
        if a.w_q.shape[2] * a.w_q.shape[3] == 1:
            return "pointwise conv"
        return "other conv"
    return layer["op"] if layer["op"] in ("linear", "matmul") else "ALU and other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2", choices=list(zoo.ZOO))
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--top", type=int, default=12, help="layers listed, by cycles")
    args = parser.parse_args()
    cfg = NPUConfig(rows=args.rows, cols=args.cols)
    model, shape = zoo.build(args.model)
    shape = (shape[0], args.size, args.size) if len(shape) == 3 else shape
    gen = torch.Generator().manual_seed(0)
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)
    est = perf.estimate(program, cfg)
    cycles = {layer.id: layer.cycles for layer in est.layers}
    rows = []
    for layer in program.layers:
        rows.append(dict(name=layer["name"], kind=kind(qmodel, layer), macs=layer["macs"],
                         slots=layer["mac_slots"], cycles=cycles.get(layer["id"], 0)))
    total_c = est.cycles
    total_m = sum(r["macs"] for r in rows)
    print(f"{args.model} {shape} on {cfg.describe()}: {total_c:,} cycles, "
          f"{total_m / 1e6:.1f} M MACs in {sum(r['slots'] for r in rows) / 1e6:.1f} M MAC slots; "
          f"utilization counting real MACs {total_m / (total_c * cfg.macs):.1%}, "
          f"of MAC slots {est.utilization(cfg):.1%}")
    print(f"\n{'kind':16s} {'layers':>6s} {'cycles':>11s} {'share':>6s} {'MACs':>11s} "
          f"{'real util':>9s} {'slot eff':>8s}")
    for k in ("depthwise conv", "pointwise conv", "other conv", "linear", "matmul", "ALU and other"):
        sel = [r for r in rows if r["kind"] == k]
        if not sel:
            continue
        c = sum(r["cycles"] for r in sel)
        m = sum(r["macs"] for r in sel)
        s = sum(r["slots"] for r in sel)
        util = m / (c * cfg.macs) if c else 0.0
        eff = f"{m / s:.1%}" if s else "-"
        print(f"{k:16s} {len(sel):6d} {c:11,} {c / total_c:6.1%} {m:11,} {util:9.1%} {eff:>8s}")
    print(f"\nlongest {args.top} layers:")
    print(f"{'layer':28s} {'kind':16s} {'cycles':>10s} {'MACs':>11s} {'real util':>9s}")
    for r in sorted(rows, key=lambda r: -r["cycles"])[:args.top]:
        util = r["macs"] / (r["cycles"] * cfg.macs) if r["cycles"] else 0.0
        print(f"{r['name'][:28]:28s} {r['kind']:16s} {r['cycles']:10,} {r['macs']:11,} {util:9.1%}")
    bound = 1 / cfg.rows
    dw = [r for r in rows if r["kind"] == "depthwise conv"]
    if dw:
        c = sum(r["cycles"] for r in dw)
        m = sum(r["macs"] for r in dw)
        print(f"\ndepthwise bound: {cfg.cols} useful MACs a cycle of {cfg.macs} ({bound:.2%}); "
              f"the depthwise layers reach {m / (c * cfg.macs):.2%} ({m / (c * cfg.cols):.0%} of "
              f"the bound); at the bound they would take {m / cfg.cols:,.0f} cycles, "
              f"the whole network {total_c - c + m / cfg.cols:,.0f} "
              f"({total_m / ((total_c - c + m / cfg.cols) * cfg.macs):.1%} counting real MACs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
