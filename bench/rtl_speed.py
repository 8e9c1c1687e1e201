"""Simulation speed and build cost of the RTL.

    python bench/rtl_speed.py [--configs 4 16 32] [--gemm 256]
    python bench/rtl_speed.py --baseline REV [--resnet 224] [--repeat 2]

The first form prints, per square configuration: Verilog emission time, Verilator build
time (in a fresh folder, so nothing is cached) and the Verilog size; then simulated
cycles per second of a GEMM program on the 16x16 NPU: under cocotb with the fast
in-design RAM and with cocotbext-axi's AxiRam (Python on every cycle), and with the C++
driver of the fast harness (what the rtl backend uses).

The second form compares the C++ harness of this tree with the one of git revision REV
(e.g. ``main``), back to back on the same machine: ResNet-18 (random weights, batch 1,
the program this tree compiles) on 16x16, run alternately ``--repeat`` times in each
build, so that both see the same load. Each build is made once and cached (REV's source
tree and builds under ``build/bench/rtl_speed/``). It prints per build the cycles, the
best simulation time (launch to stop, as the driver waits) and the harness process's CPU
time (a steadier figure on a loaded machine), cycles per second, whether the output is
bit-exact against the golden, and the speed-ups over REV.
"""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def children_cpu() -> float:
    """User and system seconds of this process's ended children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker(spec: dict) -> None:
    """Run one program image in the C++ harness of the tree this process imports: build
    (cached), load, run through the driver, dump the output; prints one JSON line."""
    import numpy as np

    from hw import NPUConfig, driver
    from sim.rtl import FastRTLSimulator, build_fast

    cfg = NPUConfig.from_json(pathlib.Path(spec["config"]).read_text())
    t0 = time.perf_counter()
    build_fast(cfg, dram_bytes=spec["dram_bytes"])
    t_build = time.perf_counter() - t0
    reply = {"build_seconds": t_build}
    if spec.get("image"):
        image = np.fromfile(spec["image"], dtype=np.uint8)
        cpu0 = children_cpu()
        with FastRTLSimulator(cfg, dram_bytes=spec["dram_bytes"]).session() as bus:
            bus.reset()
            bus.clear()
            bus.load(0, image)
            t0 = time.perf_counter()
            r = driver.execute(driver.run(spec["insn_base"], spec["insn_count"], (0, len(image)),
                                          max_cycles=spec["max_cycles"]), bus)
            reply["seconds"] = time.perf_counter() - t0
            bus.dump(spec["out_addr"], spec["out_bytes"]).tofile(spec["out"])
        # The harness's own CPU time (it has ended): what the load of others leaves alone.
        reply["cpu_seconds"] = children_cpu() - cpu0
        reply.update(status=r.status, cycles=r.registers["CYCLES"])
    print(json.dumps(reply), flush=True)


def baseline_tree(rev: str) -> pathlib.Path:
    """The source tree of git revision ``rev``, exported once under build/bench/rtl_speed/."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode != 0:
        raise SystemExit(f"--baseline {rev}: not a git revision of {REPO}")
    tree = REPO / "build" / "bench" / "rtl_speed" / sha.stdout.strip()[:12]
    if not (tree / "sim" / "rtl.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", sha.stdout.strip()],
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        archive.wait()
    return tree


def run_worker(tree: pathlib.Path, spec: dict) -> dict:
    """:func:`worker` in a fresh process that imports ``tree``'s packages (its own build
    cache under ``tree/build/sim``)."""
    env = dict(os.environ, PYTHONPATH=str(tree), NPU_SIM_ROOT=str(tree / "build" / "sim"),
               OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
                           json.dumps(spec)], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the worker in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args) -> None:
    """This tree's C++ harness against REV's, alternately, on ResNet-18."""
    import numpy as np
    import torch

    import sw
    from hw import NPUConfig
    from sw import zoo

    builds = {f"{args.baseline} (baseline)": baseline_tree(args.baseline), "this tree": REPO}
    cfg = NPUConfig()
    model, _ = zoo.build("resnet18")
    shape = (3, args.resnet, args.resnet)
    gen = torch.Generator().manual_seed(0)
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)
    x = torch.randn(1, *shape, generator=gen)
    golden = qmodel(x)[0]
    work = pathlib.Path(tempfile.mkdtemp(prefix="npu_rtl_speed_"))
    image = program.image(program.input.quantize(x[0]))
    image.tofile(work / "image.bin")
    (work / "config.json").write_text(cfg.to_json())
    dram_bytes = 1 << 25    # the RAM of this tree's rtl backend, so its build is the cached one
    if len(image) > dram_bytes:
        raise SystemExit(f"the DRAM image of {len(image)} bytes exceeds the {dram_bytes} bytes "
                         "simulated")
    spec = {"config": str(work / "config.json"), "dram_bytes": dram_bytes,
            "insn_base": program.insn_base, "insn_count": program.insn_count,
            "out_addr": program.output.addr, "out_bytes": program.output.nbytes,
            "max_cycles": 100_000_000}
    print(f"ResNet-18 {shape} on {cfg.describe()}: {program.insn_count:,} instructions, "
          f"DRAM image {len(image) / 2**20:.1f} MiB, {dram_bytes >> 20} MiB simulated RAM")
    for name, tree in builds.items():
        r = run_worker(tree, {**spec, "image": None})
        print(f"  {name}: harness ready in {r['build_seconds']:.1f} s ({tree})", flush=True)
    runs = {name: [] for name in builds}
    for i in range(args.repeat):
        for name, tree in builds.items():
            out = work / "out.bin"
            r = run_worker(tree, {**spec, "image": str(work / "image.bin"), "out": str(out)})
            raw = np.fromfile(out, dtype=np.uint8)
            y = program.output.dequantize(program.output.from_device(raw))
            r["exact"] = r["status"] == "done" and torch.equal(y, golden)
            runs[name].append(r)
            print(f"  run {i + 1}, {name}: {r['cycles']:,} cycles in {r['seconds']:.2f} s "
                  f"({r['cycles'] / r['seconds'] / 1e3:,.0f}k cycles/s; harness CPU "
                  f"{r['cpu_seconds']:.2f} s), bit-exact: {r['exact']}", flush=True)
    first = runs[next(iter(builds))]
    base, base_cpu = min(r["seconds"] for r in first), min(r["cpu_seconds"] for r in first)
    print(f"\nbest of {args.repeat} (wall; the harness's CPU time, which others' load on the "
          "machine leaves about alone):")
    for name, rs in runs.items():
        best, cpu = min(r["seconds"] for r in rs), min(r["cpu_seconds"] for r in rs)
        cycles = "/".join(f"{c:,}" for c in sorted({r["cycles"] for r in rs}))
        print(f"  {name:>24}: {best:6.2f} s ({base / best:.2f}x), CPU {cpu:6.2f} s "
              f"({base_cpu / cpu:.2f}x), {rs[0]['cycles'] / best / 1e3:,.0f}k cycles/s, "
              f"bit-exact: {all(r['exact'] for r in rs)}, cycles {cycles}")


def build_costs(args) -> None:
    """Emission and build times per configuration, and the simulators' speed on a GEMM."""
    os.environ["NPU_SIM_ROOT"] = tempfile.mkdtemp(prefix="npu_bench_")   # nothing cached
    import numpy as np

    from hw import NPUConfig
    from hw.build import emit
    from sim.rtl import FastRTLSimulator, Job, RTLSimulator
    from sw import golden
    # The GEMM program generator is the regression's (tests/sim/gemm_kernel.py).
    from tests.sim.gemm_kernel import gemm_kernel

    root = pathlib.Path(os.environ["NPU_SIM_ROOT"])
    print(f"{'config':>8} {'emit s':>8} {'Verilog KiB':>12} {'Verilator build s':>18}")
    sims = {}
    for n in args.configs:
        cfg = NPUConfig.preset({4: "tiny", 8: "small", 16: "default", 32: "large"}.get(n, "default"),
                               rows=n, cols=n)
        t0 = time.perf_counter()
        paths = emit(cfg, root / f"emit{n}")
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


def main():
    if sys.argv[1:2] == ["--worker"]:
        worker(json.loads(sys.argv[2]))
        return
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--gemm", type=int, default=256, help="N of the N^3 GEMM timed")
    parser.add_argument("--baseline", metavar="REV",
                        help="compare the C++ harness with git revision REV's on ResNet-18")
    parser.add_argument("--resnet", type=int, default=224, metavar="SIZE",
                        help="ResNet-18's input size for --baseline (default 224)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per build for --baseline")
    args = parser.parse_args()
    if args.baseline:
        compare(args)
    else:
        build_costs(args)


if __name__ == "__main__":
    main()
