"""ResNet-18 (random weights, 224x224, batch 1) on the 16x16 NPU.

    python bench/resnet18.py [--no-rtl] [--size 224]

Prints compile time, functional-model time, RTL simulation time, cycles and
whole-network utilization from the hardware counters, and checks both backends
against the golden. Goals: utilization >= 80 %, RTL <= 60 s, functional model <= 0.5 s.
"""
import argparse
import time

import torch

import sw
from hw import NPUConfig
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
    macs = sum(layer["macs"] for layer in program.layers)
    print(f"ResNet-18 {shape} on {cfg.describe()}")
    print(f"  quantize {t_quant:.2f} s, compile {t_compile:.2f} s: {program.insn_count:,} "
          f"instructions, DRAM image {len(program.dram) / 2**20:.1f} MiB, "
          f"{macs / 1e9:.2f} G MAC slots")
    x = torch.randn(1, *shape, generator=gen)
    golden = qmodel(x)
    func = sw.Device(cfg, backend="func")
    func.run(program, x)          # warm the decode cache the way a served model would
    t0 = time.perf_counter()
    y = func.run(program, x)
    t_func = time.perf_counter() - t0
    print(f"  functional model: {t_func:.2f} s per image (second run), bit-exact: "
          f"{torch.equal(y, golden)}")
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
          f"{st['cycles']:,} cycles, utilization {100 * st['utilization']:.1f} %, "
          f"bit-exact: {torch.equal(y, golden)}")
    print(f"  DMA read {st['dram_read_bytes'] / 2**20:.1f} MiB, written "
          f"{st['dram_write_bytes'] / 2**20:.2f} MiB; stalls {st.get('stall_cycles')}")


if __name__ == "__main__":
    main()
