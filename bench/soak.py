"""Soak the RTL with random programs: as many as asked, against the functional model.

    python bench/soak.py --programs 10000
    python bench/soak.py --programs 2000 --configs tiny,4x6 --memory fast,axi --kind both

Each configuration is built once (cached); on the ``fast`` memory (the RAM inside the
design, the C++ harness) every program of a configuration runs in one harness process,
with the bus monitor checking every access against the DMA window; on the ``axi`` memory
(cocotbext-axi's AxiRam, random back-pressure on every channel) the programs run in
cocotb launches of ``--batch`` programs. The cases are tests/sim/fuzz.py's: ``valid``
random race-free programs, compared on every DRAM byte and counter, and ``malformed``
ones, which must stop with the model's error code and index. Prints progress, then per
configuration and memory: programs run, instructions executed, mismatches, programs per
second; each mismatch with the command that replays it. Exit status 1 on a mismatch.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from hw import driver  # noqa: E402
from hw.isa import Opcode  # noqa: E402
from tests.sim import fuzz  # noqa: E402

MEMORIES = ("fast", "axi")


def _split(text: str, allowed, what: str) -> list[str]:
    items = [t for t in text.split(",") if t]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise SystemExit(f"soak: unknown {what} {', '.join(unknown) or repr(text)}; "
                         f"choose from {', '.join(allowed)}")
    return items


def soak_fast(config: str, kind: str, seeds: range, length: int, report) -> list:
    """Run the cases on the C++ harness (one process); returns their outcomes."""
    t0 = time.perf_counter()

    def progress(done, total):
        if done % report == 0 or done == total:
            rate = done / (time.perf_counter() - t0)
            print(f"  {config}/fast/{kind}: {done}/{total} ({rate:.0f} programs/s)", flush=True)
    return fuzz.run_batch(config, kind, seeds, length=length, progress=progress)


def soak_axi(config: str, kind: str, seeds: range, length: int, batch: int) -> list:
    """Run the cases on the cocotb AXI RAM with back-pressure, ``batch`` per launch."""
    from sim.rtl import Job, RTLSimulator

    cfg = fuzz.CONFIGS[config]
    sim = RTLSimulator(cfg)
    outcomes = []
    seeds = list(seeds)
    t0 = time.perf_counter()
    no_monitor = {"reads": 0, "writes": 0, "outside": 0, "kind": 0, "addr": 0}
    for start in range(0, len(seeds), batch):
        cases = [fuzz.make_case(cfg, kind, s, length) for s in seeds[start:start + batch]]
        jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, window=c.window, memory="axi",
                    backpressure=True, seed=s, max_cycles=4 * c.extra.get("max_cycles", 200_000),
                    name=c.name) for c, s in zip(cases, seeds[start:start + batch])]
        for case, res in zip(cases, sim.run(jobs)):
            r = driver.RunResult(status=res.status, error=res.error, error_index=res.error_index,
                                 registers=res.csr)
            # Timing differs with back-pressure; the watchdog is the job's own limit.
            outcomes.append(fuzz.Outcome(
                case=case, status=r.status, error=r.error, error_index=r.error_index,
                cycles=res.cycles, instructions=sum(res.csr[f"INSNS_{op.name}"] for op in Opcode),
                bus=no_monitor, problems=fuzz.check(case, r, res.dram[:len(case.dram)], no_monitor)))
        done = len(outcomes)
        print(f"  {config}/axi/{kind}: {done}/{len(seeds)} "
              f"({done / (time.perf_counter() - t0):.1f} programs/s)", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--programs", type=int, default=1000,
                    help="programs per configuration, memory and kind (default 1000)")
    ap.add_argument("--configs", default=",".join(fuzz.CONFIGS),
                    help=f"comma-separated, from {', '.join(fuzz.CONFIGS)} (default: all)")
    ap.add_argument("--memory", default="fast",
                    help="fast, axi or fast,axi (default fast; axi is about 50x slower)")
    ap.add_argument("--kind", choices=("valid", "malformed", "both"), default="valid")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--length", type=int, default=fuzz.VALID_LENGTH,
                    help=f"random instructions per valid program (default {fuzz.VALID_LENGTH})")
    ap.add_argument("--batch", type=int, default=50, help="programs per cocotb launch (axi)")
    ap.add_argument("--report", type=int, default=200, help="progress every N programs (fast)")
    args = ap.parse_args(argv)
    if args.programs < 1:
        ap.error("--programs must be at least 1")
    configs = _split(args.configs, fuzz.CONFIGS, "config")
    memories = _split(args.memory, MEMORIES, "memory")
    kinds = ["valid", "malformed"] if args.kind == "both" else [args.kind]
    seeds = range(args.seed, args.seed + args.programs)

    rows = []
    failures = []
    for config in configs:
        for memory in memories:
            for kind in kinds:
                t0 = time.perf_counter()
                if memory == "fast":
                    outs = soak_fast(config, kind, seeds, args.length, args.report)
                else:
                    outs = soak_axi(config, kind, seeds, args.length, args.batch)
                seconds = time.perf_counter() - t0
                bad = [o for o in outs if o.problems]
                rows.append((config, memory, kind, len(outs), sum(o.instructions for o in outs),
                             sum(o.cycles for o in outs), len(bad), seconds))
                if bad:
                    failures.append(fuzz.describe_failures(config, kind, outs, args.length))
    print()
    print(f"{'config':10} {'memory':6} {'kind':9} {'programs':>8} {'instructions':>12} "
          f"{'cycles':>11} {'mismatches':>10} {'programs/s':>10}")
    for config, memory, kind, n, insns, cycles, bad, seconds in rows:
        print(f"{config:10} {memory:6} {kind:9} {n:8d} {insns:12d} {cycles:11d} {bad:10d} "
              f"{n / seconds:10.1f}")
    total = sum(r[3] for r in rows)
    total_s = sum(r[7] for r in rows)
    print(f"total: {total} programs, {sum(r[4] for r in rows)} instructions, "
          f"{sum(r[6] for r in rows)} mismatches, {total / total_s:.1f} programs/s "
          f"({total_s:.1f} s, builds included)")
    for text in failures:
        print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
