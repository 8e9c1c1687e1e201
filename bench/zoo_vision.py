"""torchvision's classification CNN families on the NPU: per model, instructions, real MACs,
DRAM bytes, float agreement, compile and run time, and the performance model's cycles and
MAC-slot utilization on the configuration (default 16x16).

Float agreement is a figure, not a pass criterion: the cosine between the NPU's
dequantized output and the float model's, and how often their top-1 classes agree, on
random inputs (BatchNorm statistics randomized so that activations are not degenerate).
Every run is also checked bit-exact against the integer golden.

    python bench/zoo_vision.py [--size 64] [--batch 8] [--models alexnet,vgg11,...] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import sw
from hw import NPUConfig
from sw import zoo
from sw.analysis.metrics import model_timing

MODELS = ["alexnet", "vgg11", "resnet18", "resnet50", "squeezenet1_1", "densenet121",
          "googlenet", "mobilenetv2", "mnasnet0_5", "regnet_x_400mf",
          "shufflenet_v2_x0_5", "efficientnet_b0", "mobilenet_v3_small"]


def run_one(name: str, cfg: NPUConfig, size: int, batch: int) -> dict:
    model, shape = zoo.build(name)
    shape = (shape[0], size, size)
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(batch, *shape, generator=gen) for _ in range(2)]
    x = torch.randn(batch, *shape, generator=gen)
    t0 = time.perf_counter()
    qmodel = sw.quantize(model, calib)
    t1 = time.perf_counter()
    program = sw.compile(qmodel, cfg)
    t2 = time.perf_counter()
    device = sw.Device(cfg)
    y = device.run(program, x)
    t3 = time.perf_counter()
    with torch.no_grad():
        f = model(x)
    cos = torch.nn.functional.cosine_similarity(y.flatten(1), f.flatten(1), 1)
    timing = model_timing(program)
    macs = sum(layer["macs"] for layer in program.layers)
    slots = sum(layer["mac_slots"] for layer in program.layers)
    stats = device.stats
    return {
        "model": name, "input": list(shape), "bit_exact": bool(torch.equal(y, qmodel(x))),
        "instructions": program.insn_count, "macs": macs, "mac_slots": slots,
        "dram_bytes": (stats["dram_read_bytes"] + stats["dram_write_bytes"]) // batch,
        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
        "top1_agreement": float((y.argmax(1) == f.argmax(1)).float().mean()),
        "quantize_s": t1 - t0, "compile_s": t2 - t1, "run_s": (t3 - t2) / batch,
        "cycles": timing.cycles, "utilization": macs / (timing.cycles * cfg.macs),
        "host_ops": list(program.host_ops),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="input height and width (default 64)")
    ap.add_argument("--batch", type=int, default=8, help="random inputs per model (default 8)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated zoo names (default: {','.join(MODELS)})")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in zoo.ZOO]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; the zoo has: {', '.join(zoo.ZOO)}")
    if args.size < 32 or args.batch < 1:
        ap.error("--size must be at least 32 and --batch at least 1")
    cfg = NPUConfig(rows=args.rows, cols=args.cols)
    print(f"{cfg.describe()}, inputs 3x{args.size}x{args.size}, {args.batch} random inputs "
          f"per model; cycles and utilization (real MACs / MAC slots of the run) from the "
          f"performance model", flush=True)
    head = (f"{'model':<14} {'exact':>5} {'insns':>8} {'MMACs':>8} {'DRAM MB':>8} {'cos':>7} "
            f"{'top1':>5} {'compile':>8} {'run':>7} {'Mcycles':>8} {'util':>6}")
    print(head)
    rows = []
    for name in names:
        r = run_one(name, cfg, args.size, args.batch)
        rows.append(r)
        print(f"{name:<14} {'yes' if r['bit_exact'] else 'NO':>5} {r['instructions']:>8,} "
              f"{r['macs'] / 1e6:>8.1f} {r['dram_bytes'] / 1e6:>8.2f} {r['cosine_mean']:>7.4f} "
              f"{r['top1_agreement']:>5.2f} {r['compile_s']:>7.1f}s {r['run_s']:>6.2f}s "
              f"{r['cycles'] / 1e6:>8.2f} {100 * r['utilization']:>5.1f}%", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
