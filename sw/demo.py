"""The main job of the quick start (``make demo``).

Builds a 16x16 configuration, quantizes a small float layer, lowers it to an NPU
program through the assembler, runs it on the functional model, checks it bit for
bit against the PyTorch integer golden and prints the counts.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from hw import NPUConfig
from sim.functional import FunctionalModel
from sw import golden
from sw.kernels import gemm_kernel


def _quantize_layer(rng: np.random.Generator, m: int, k: int, n: int):
    """A float Linear layer and input, quantized by the rules of docs/numerics.md."""
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    w = torch.from_numpy((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32))
    b = torch.from_numpy((0.1 * rng.standard_normal(n)).astype(np.float32))
    y_float = x @ w.T + b
    # Symmetric per-tensor input (zero point 0 keeps the GEMM demo self-contained),
    # symmetric per-channel weights, asymmetric per-tensor output.
    s_x = float(x.abs().max()) / 127
    s_w = w.abs().amax(dim=1) / 127
    lo, hi = float(y_float.min()), float(y_float.max())
    s_y = (hi - lo) / 255
    zp_y = int(round(-128 - lo / s_y))
    xq = torch.clamp(torch.round(x / s_x), -128, 127).to(torch.int8)
    wq = torch.clamp(torch.round(w / s_w[:, None]), -128, 127).to(torch.int8)
    bq = torch.round(b / (s_x * s_w)).to(torch.int32)
    qm = [golden.quantize_multiplier(float(s_x * sw / s_y)) for sw in s_w]
    mult = torch.tensor([q[0] for q in qm], dtype=torch.int32)
    shift = torch.tensor([q[1] for q in qm], dtype=torch.int32)
    return x, y_float, xq, wq, bq, mult, shift, s_y, zp_y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16, help="array rows (default 16)")
    parser.add_argument("--cols", type=int, default=16, help="array columns (default 16)")
    parser.add_argument("--shape", default="64,96,48", help="M,K,N of the demo layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rtl", action="store_true", help="skip the Verilator run")
    args = parser.parse_args(argv)
    try:
        m, k, n = (int(v) for v in args.shape.split(","))
        config = NPUConfig(rows=args.rows, cols=args.cols)
    except ValueError as exc:
        parser.error(str(exc))

    steps = 3 if args.no_rtl else 4
    print(f"[1/{steps}] config: {config.describe()}")
    if not args.no_rtl:
        from hw.build import default_output_dir, emit
        t0 = time.perf_counter()
        paths = emit(config, default_output_dir(config))
        print(f"      emitted {paths['verilog']} ({paths['verilog'].stat().st_size // 1024} KiB), "
              f"{paths['manifest'].name}, {paths['header'].name} in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(args.seed)
    x, y_float, xq, wq, bq, mult, shift, s_y, zp_y = _quantize_layer(rng, m, k, n)

    t0 = time.perf_counter()
    kern = gemm_kernel(config, xq.numpy(), wq.numpy(), bq.numpy(), mult.numpy(), shift.numpy(),
                       out_zp=zp_y)
    print(f"[2/{steps}] program: Linear {m}x{k} -> {n}: {kern.insn_count} instructions "
          f"(m_tile {kern.m_tile}), DRAM image {len(kern.dram)} bytes, "
          f"{1e3 * (time.perf_counter() - t0):.1f} ms")
    for line in kern.text.splitlines()[:6]:
        print(f"      {line}")
    print("      ...")

    dram = kern.dram.copy()
    t0 = time.perf_counter()
    counts = FunctionalModel(config).run(dram, kern.insn_base, kern.insn_count)
    elapsed = time.perf_counter() - t0
    y_npu = torch.from_numpy(kern.read_output(dram))
    y_gold = golden.requantize(golden.gemm(xq, wq), bq, mult, shift, zp_y)
    exact = torch.equal(y_npu, y_gold)
    mismatches = int((y_npu != y_gold).sum())
    y_deq = (y_npu.float() - zp_y) * s_y
    err = float((y_deq - y_float).abs().max())
    rel = err / float(y_float.abs().max())
    print(f"[3/{steps}] functional model: {elapsed * 1e3:.1f} ms")
    print(f"      MACs {counts.macs}, instructions {counts.insns}")
    print(f"      DRAM read {counts.dram_read_bytes} B, written {counts.dram_write_bytes} B, "
          f"instructions fetched {counts.insn_read_bytes} B")
    print(f"      float agreement: max |error| {err:.4f} ({100 * rel:.2f} % of range)")
    if not exact:
        print(f"FAIL: functional model: {mismatches} of {y_gold.numel()} outputs differ from the golden")
        return 1
    if not args.no_rtl:
        from sim.rtl import Job, RTLSimulator
        print(f"[4/{steps}] RTL in Verilator (first build of a configuration takes a minute) ...")
        t0 = time.perf_counter()
        sim = RTLSimulator(config)
        built = time.perf_counter() - t0
        result = sim.run([Job(kern.dram.copy(), kern.insn_base, kern.insn_count)])[0]
        if result.status != "done":
            print(f"FAIL: the RTL stopped with {result.error.name} at instruction {result.error_index}")
            return 1
        y_rtl = torch.from_numpy(kern.read_output(result.dram))
        csr = result.csr
        util = csr["MACS"] / (csr["CYCLES"] * config.macs)
        print(f"      build {built:.1f} s, run {result.wall_seconds:.2f} s: {csr['CYCLES']} cycles, "
              f"array busy {csr['ARRAY_BUSY']}, utilization {100 * util:.1f} %")
        print(f"      DMA read {csr['DMA_RD_BYTES']} B, written {csr['DMA_WR_BYTES']} B; "
              f"stalls load/compute/store {csr['STALL_LOAD']}/{csr['STALL_COMPUTE']}/{csr['STALL_STORE']}")
        if not torch.equal(y_rtl, y_gold):
            print(f"FAIL: RTL: {int((y_rtl != y_gold).sum())} outputs differ from the golden")
            return 1
        if csr["MACS"] != counts.macs:
            print(f"FAIL: RTL counted {csr['MACS']} MACs, the functional model {counts.macs}")
            return 1
    where = "functional model" + ("" if args.no_rtl else " and RTL")
    print(f"PASS: {where} output equals the PyTorch integer golden bit for bit ({y_gold.numel()} values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
