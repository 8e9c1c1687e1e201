"""Simulation speed and build cost of the RTL.

    python bench/rtl_speed.py [--configs 4 16 32] [--cycles-config 16]

Prints, per square configuration: Verilog emission time, Verilator build time (in a
fresh folder, so nothing is cached) and the Verilog size; then simulated cycles per
second of a GEMM program on the 16x16 NPU: under cocotb with the fast in-design RAM
and with cocotbext-axi's AxiRam (Python on every cycle), and with the C++ driver of the
fast harness (what the rtl backend uses).
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

ROOT = tempfile.mkdtemp(prefix="npu_bench_")
os.environ["NPU_SIM_ROOT"] = ROOT

import numpy as np  # noqa: E402

from hw import NPUConfig  # noqa: E402
from hw.build import emit  # noqa: E402
from sim.rtl import FastRTLSimulator, Job, RTLSimulator  # noqa: E402
from sw import golden  # noqa: E402

# The GEMM program generator is the regression's (tests/sim/gemm_kernel.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.sim.gemm_kernel import gemm_kernel  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--gemm", type=int, default=256, help="N of the N^3 GEMM timed")
    args = parser.parse_args()
    print(f"{'config':>8} {'emit s':>8} {'Verilog KiB':>12} {'Verilator build s':>18}")
    sims = {}
    for n in args.configs:
        cfg = NPUConfig.preset({4: "tiny", 8: "small", 16: "default", 32: "large"}.get(n, "default"),
                               rows=n, cols=n)
        t0 = time.perf_counter()
        paths = emit(cfg, pathlib.Path(ROOT) / f"emit{n}")
        t_emit = time.perf_counter() - t0
        size = paths["verilog"].stat().st_size // 1024
        t0 = time.perf_counter()
        sims[n] = RTLSimulator(cfg)
        t_build = time.perf_counter() - t0
        print(f"{n:>4}x{n:<3} {t_emit:>8.1f} {size:>12} {t_build:>18.1f}", flush=True)
    if 16 in sims:
        cfg = sims[16].config
        rng = np.random.default_rng(0)
        n = args.gemm
        a = rng.integers(-128, 128, (n, n), dtype=np.int8)
        w = rng.integers(-128, 128, (n, n), dtype=np.int8)
        ones = np.ones(n, np.int32)
        m, s = golden.quantize_multiplier(1e-3)
        kern = gemm_kernel(cfg, a, w, 0 * ones, m * ones, s * ones)
        print(f"\nsimulation speed, GEMM {n}^3 on 16x16:")
        for memory in ("fast", "axi"):
            r = sims[16].run([Job(kern.dram.copy(), kern.insn_base, kern.insn_count,
                                  memory=memory, max_cycles=10_000_000)])[0]
            assert r.status == "done"
            run_s = r.extra["run_wall_seconds"]
            print(f"  cocotb, {memory:>4} memory: {r.cycles} cycles in {run_s:.2f} s = "
                  f"{r.cycles / run_s:,.0f} cycles/s")
        t0 = time.perf_counter()
        fast = FastRTLSimulator(cfg)
        print(f"  (C++ driver built in {time.perf_counter() - t0:.1f} s)")
        r = fast.run([Job(kern.dram.copy(), kern.insn_base, kern.insn_count,
                          max_cycles=10_000_000)])[0]
        assert r.status == "done"
        run_s = r.extra["run_wall_seconds"]
        print(f"  C++ driver, fast memory: {r.cycles} cycles in {run_s:.2f} s = "
              f"{r.cycles / run_s:,.0f} cycles/s")


if __name__ == "__main__":
    main()
