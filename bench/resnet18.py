"""ResNet-18 (random weights, 224x224, batch 1) on the 16x16 NPU.

    python bench/resnet18.py [--no-rtl] [--size 224]

Prints compile time, functional-model time, RTL simulation time, cycles and
whole-network utilization from the hardware counters, and checks both backends
against the golden, and the performance model's cycles against the stem reading its input
in place (``im2col=False``). Goals (issue 14): 90 % of MAC slots, compile <= 1 s, functional
model first run <= 1 s and replay <= 0.2 s, RTL <= 30 s.
"""
import argparse
import time

import torch

import sw
from hw import NPUConfig
from sim.functional import FunctionalModel
from sw import zoo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-rtl", action="store_true")
    args = parser.parse_args()
    cfg = NPUConfig()
    model, _ = zoo.build("resnet18")
    shape = (3, args.size, args.size)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    t_quant = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = sw.compile(qmodel, cfg)
    t_compile = time.perf_counter() - t0
    macs = sum(layer["mac_slots"] for layer in program.layers)
    real_macs = sum(layer["macs"] for layer in program.layers)
    print(f"ResNet-18 {shape} on {cfg.describe()}")
    print(f"  quantize {t_quant:.2f} s, compile {t_compile:.2f} s: {program.insn_count:,} "
          f"instructions, DRAM image {len(program.dram) / 2**20:.1f} MiB, "
          f"{macs / 1e9:.2f} G MAC slots for {real_macs / 1e9:.2f} G MACs")
    # The performance model gives the RTL's cycle counts exactly (tests/sim/test_performance.py):
    # against it, the stem reading its input in place (the layout before im2col).
    from sw.analysis import perf
    plain = sw.compile(qmodel, cfg, im2col=False)
    e_new, e_old = perf.estimate(program, cfg), perf.estimate(plain, cfg)
    print(f"  performance model: {e_new.cycles:,} cycles, {real_macs / (e_new.cycles * cfg.macs):.1%} "
          f"of the array's MACs real; input read in place (im2col=False, the baseline): "
          f"{e_old.cycles:,} cycles, {real_macs / (e_old.cycles * cfg.macs):.1%} "
          f"({e_old.cycles / e_new.cycles:.3f}x); the stem {e_new.layers[0].cycles:,} against "
          f"{e_old.layers[0].cycles:,} cycles")
    x = torch.randn(1, *shape, generator=gen)
    golden = qmodel(x)
    func = sw.Device(cfg, backend="func")
    t0 = time.perf_counter()
    y0 = func.run(program, x)     # decodes the program and works out its plan (sim/plan.py)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(3):            # later runs replay the plan, as a served model would
        t0 = time.perf_counter()
        y = func.run(program, x)
        times.append(time.perf_counter() - t0)
    t_func = min(times)
    print(f"  functional model: first run {t_first:.2f} s (decode and plan), then "
          f"{t_func:.2f} s per image (best of 3: {', '.join(f'{t:.2f}' for t in times)}), "
          f"bit-exact: {torch.equal(y0, golden) and torch.equal(y, golden)}")
    # The same image through the interpreter, the plans' reference.
    image = program.image(program.input.quantize(x[0]))
    interp = FunctionalModel(cfg)
    interp.run(image.copy(), program.insn_base, program.insn_count)   # decode cache warm
    dram = image.copy()
    t0 = time.perf_counter()
    interp.run(dram, program.insn_base, program.insn_count)
    t_interp = time.perf_counter() - t0
    same = torch.equal(program.output.dequantize(program.read_output(dram)), golden[0])
    print(f"  functional model without plans (instruction by instruction): {t_interp:.2f} s, "
          f"{t_interp / t_func:.1f}x the planned time, bit-exact: {same}")
    if args.no_rtl:
        return
    from sim.rtl import build_fast
    t0 = time.perf_counter()
    build_fast(cfg)          # built (or found in the cache) before the clock starts
    print(f"  RTL simulator ready in {time.perf_counter() - t0:.1f} s")
    rtl = sw.Device(cfg, backend="rtl", progress=True)
    t0 = time.perf_counter()
    y = rtl.run(program, x)
    t_rtl = time.perf_counter() - t0
    st = rtl.stats
    print(f"  RTL: {t_rtl:.1f} s wall ({st['sim_seconds']:.1f} s in the simulator), "
          f"{st['cycles']:,} cycles, utilization {100 * st['utilization']:.1f} % of MAC slots "
          f"(the MACS counter), {real_macs / (st['cycles'] * cfg.macs):.1%} counting real MACs, "
          f"bit-exact: {torch.equal(y, golden)}")
    print(f"  DMA read {st['dram_read_bytes'] / 2**20:.1f} MiB, written "
          f"{st['dram_write_bytes'] / 2**20:.2f} MiB; stall cycles: load {st['stall_load_cycles']:,}, "
          f"compute {st['stall_compute_cycles']:,}, store {st['stall_store_cycles']:,}")


if __name__ == "__main__":
    main()
