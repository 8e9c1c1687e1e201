"""How a matmul's row-major stationary operand (attention's V) is transposed: measured.

    python bench/attention_matmul.py [--rtl] [-o bench/results/attention_matmul]

For each configuration (tiny 4x4, small 8x8, the default 16x16) and head shape (tokens T, head
width D), one ``P @ V`` layer (P [T, T], V [T, D], one head) is compiled three ways and
its cycles predicted by the performance model (:func:`sw.analysis.perf.estimate`,
checked against the RTL's counters in tests/sw/analysis): V transposed on the array
(identity GEMMs, ``sw.ops.matmul.TRANSPOSE = "array"``), by DMA (one-byte element
copies through the accumulator, ``"dma"``), and, as the floor, the same product with K
already in weight-tile order (``Q @ K^T``, no transpose). It prints the matmul layer's
cycles, the transpose's share, what ``"auto"`` picks and whether that is the cheaper;
``--rtl`` also runs the tiny cases on the RTL (Verilator), checks the outputs against
the golden and reports how far the model's cycles are from the RTL's. Writes ``<out>.json`` and ``<out>.txt``; exits 1 when "auto" misses the
cheaper option by more than 10 % anywhere.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw.analysis.perf import estimate
from sw.ops import matmul as mm

SHAPES = [(4, 4), (8, 4), (4, 8), (8, 8), (16, 8), (16, 16), (32, 8), (24, 20), (32, 32),
          (64, 16), (64, 64), (100, 36), (128, 64)]


class PV(nn.Module):
    def __init__(self, t: int, d: int):
        super().__init__()
        self.p, self.v = nn.Linear(d, t), nn.Linear(d, d)

    def forward(self, x):
        return torch.matmul(self.p(x), self.v(x))


def _layer_cycles(program) -> tuple[int, int]:
    est = estimate(program)
    mat = [la for la, meta in zip(est.layers, program.layers) if meta["op"] == "matmul"]
    return mat[0].cycles, est.cycles


def measure(cfg: NPUConfig, t: int, d: int, rtl: bool) -> dict:
    torch.manual_seed(0)
    x = torch.randn(2, t, d)
    row = {"config": cfg.describe(), "rows": cfg.rows, "cols": cfg.cols, "T": t, "D": d}
    qm = sw.quantize(PV(t, d).eval(), [x])
    for mode in ("array", "dma", "auto"):
        with mm.transposing(mode):
            program = sw.compile(qm, cfg)
        row[mode], total = _layer_cycles(program)
        if rtl and mode != "auto":
            dev = sw.Device(cfg, backend="rtl")
            y = dev.run(program, x[0])
            assert torch.equal(y, qm(x[0])), (cfg.describe(), t, d, mode)
            row[f"rtl_{mode}"] = dev.stats["cycles"]
            row[f"model_{mode}"] = total
    # The same product with the stationary operand already in tile order.
    q = sw.quantize(_Floor(t, d).eval(), [x])
    row["no_transpose"] = _layer_cycles(sw.compile(q, cfg))[0]
    row["auto_picks"] = mm.transpose_mode(t, d, cfg.rows, cfg.cols)
    row["best"] = "array" if row["array"] <= row["dma"] else "dma"
    return row


class _Floor(nn.Module):
    """P [T, T] @ W^T with W [D, T] row-major (a reshape of a [T, D] linear output): the
    same product shape, W's rows already weight-tile rows, no transpose."""

    def __init__(self, t: int, d: int):
        super().__init__()
        self.p, self.w = nn.Linear(d, t), nn.Linear(d, d)
        self.d = d

    def forward(self, x):
        b, t, _ = x.shape
        return self.p(x) @ self.w(x).reshape(b, self.d, t).transpose(-2, -1)


def agreement() -> str:
    """Float agreement of a two-head attention block (no softmax: tests/sw/ops/
    test_matmul.py's ``Attention``, F = 64, T = 32), calibrated on 8 samples and
    measured on 8 others: a reported figure, not a pass criterion."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from tests.sw.ops.test_matmul import Attention
    torch.manual_seed(0)
    model = Attention(64, 2).eval()
    qm = sw.quantize(model, [torch.randn(8, 32, 64)])
    x = torch.randn(8, 32, 64)
    with torch.no_grad():
        want = model(x)
    err = qm(x) - want
    sqnr = 10 * torch.log10(want.pow(2).mean() / err.pow(2).mean())
    return (f"float agreement, attention block F=64 T=32 (symmetric matmul operands): SQNR "
            f"{float(sqnr):.1f} dB, max |error| {float(err.abs().max()):.4f} "
            f"({100 * float(err.abs().max() / (want.max() - want.min())):.2f} % of the output range)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtl", action="store_true", help="also run the tiny cases on the RTL")
    parser.add_argument("-o", "--out", default="bench/results/attention_matmul")
    args = parser.parse_args(argv)
    rows = []
    for cfg in (NPUConfig.preset("tiny"), NPUConfig.preset("small"), NPUConfig.preset("default")):
        for t, d in SHAPES:
            rows.append(measure(cfg, t, d, args.rtl and cfg.rows == 4 and t <= 32))
    lines = [f"{'config':<8} {'T':>4} {'D':>4} {'array':>8} {'dma':>8} {'floor':>8} "
             f"{'transpose %':>11} {'auto':>6} {'best':>6}"]
    bad = []
    for r in rows:
        best = min(r["array"], r["dma"])
        share = 100.0 * (best - r["no_transpose"]) / best
        lines.append(f"{str(r['rows']) + 'x' + str(r['cols']):<8} {r['T']:>4} {r['D']:>4} {r['array']:>8} {r['dma']:>8} "
                     f"{r['no_transpose']:>8} {share:>10.1f}% {r['auto_picks']:>6} {r['best']:>6}")
        if r["auto"] > 1.1 * best:
            bad.append(r)
    rtl_rows = [r for r in rows if "rtl_array" in r]
    if rtl_rows:
        errs = [abs(r[f"model_{m}"] - r[f"rtl_{m}"]) / r[f"rtl_{m}"] for r in rtl_rows
                for m in ("array", "dma")]
        lines.append(f"RTL (Verilator) on {len(rtl_rows)} tiny cases, both transposes, bit-exact: "
                     f"the model's program cycles within {100 * max(errs):.2f} % of the RTL's")
    lines.append(agreement())
    text = "\n".join(lines)
    print(text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    out.with_suffix(".txt").write_text(
        "python bench/attention_matmul.py" + (" --rtl" if args.rtl else "") + "\n\n" + text + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
