"""Array utilization on int8 GEMMs through the fast harness, from the hardware counters.

    python bench/utilization.py [--sizes 128 256 512] [--rows 16 --cols 16]

Utilization = MACS / (CYCLES x rows x cols): the share of MAC slots doing work over the
whole program, DMA, instruction fetch, weight loads and stores included.
Goal: >= 90 % at 512^3 on 16x16 (the project aims at 95 %).
"""
import argparse
import pathlib
import sys
import time

import numpy as np
import torch

from hw import NPUConfig
from sim.rtl import Job, RTLSimulator
from sw import golden

# The GEMM program generator is the regression's (tests/sim/gemm_kernel.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.sim.gemm_kernel import gemm_kernel  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cols", type=int, default=16)
    args = parser.parse_args()
    cfg = NPUConfig(rows=args.rows, cols=args.cols)
    t0 = time.perf_counter()
    sim = RTLSimulator(cfg)
    print(f"{cfg.describe()}; simulator ready in {time.perf_counter() - t0:.1f} s")
    print(f"{'GEMM':>12} {'cycles':>10} {'MACs':>12} {'util':>7} {'ideal cyc':>10} "
          f"{'sim s':>7} {'cyc/s':>9} {'exact':>6}")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        a = rng.integers(-128, 128, (n, n), dtype=np.int8)
        w = rng.integers(-128, 128, (n, n), dtype=np.int8)
        bias = rng.integers(-1000, 1000, n).astype(np.int32)
        qm = [golden.quantize_multiplier(s) for s in rng.uniform(1e-4, 1e-3, n)]
        mult = np.array([q[0] for q in qm], np.int32)
        shift = np.array([q[1] for q in qm], np.int32)
        kern = gemm_kernel(cfg, a, w, bias, mult, shift)
        result = sim.run([Job(kern.dram.copy(), kern.insn_base, kern.insn_count,
                              max_cycles=50_000_000)])[0]
        assert result.status == "done", result.error
        gold = golden.requantize(golden.gemm(torch.from_numpy(a), torch.from_numpy(w)),
                                 torch.from_numpy(bias), torch.from_numpy(mult),
                                 torch.from_numpy(shift), 0).numpy()
        exact = np.array_equal(kern.read_output(result.dram), gold)
        csr = result.csr
        util = csr["MACS"] / (csr["CYCLES"] * cfg.macs)
        run_s = result.extra["run_wall_seconds"]
        print(f"{n:>4}x{n}x{n} {csr['CYCLES']:>10} {csr['MACS']:>12} {100 * util:>6.1f}% "
              f"{csr['MACS'] // cfg.macs:>10} {run_s:>7.2f} {csr['CYCLES'] / run_s:>9.0f} "
              f"{'yes' if exact else 'NO':>6}")


if __name__ == "__main__":
    main()
