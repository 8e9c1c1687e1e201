"""Compile and functional-model speed against a baseline revision, and proof that the
programs are the same bytes (issue 14).

    python bench/speed.py [--baseline REV] [--rounds 3] [--runs 3] [--size 224]

ResNet-18 (random weights, batch 1) on the 16x16 ``NPUConfig()``: ``sw.compile`` time, the
functional model's first run (a fresh ``sw.Device``: decode and plan) and its replay,
medians of ``rounds x runs`` measurements, for this tree and for the code at git revision
``REV`` (default: ``main`` as it was when the speed work began), checked out in a
temporary ``git worktree``. Each tree runs in its own subprocess, the two alternating
round by round, so that both see the same load on a shared machine; the ratios are the
figures to compare. Goals: compile <= 1 s, first run <= 1 s, replay <= 0.2 s.

Every tree also compiles a few zoo models on two configurations and prints a digest of
each program (the DRAM image with instructions and weights, the tensor map, layers,
regions and segments: :func:`sw.program.file_digest` over what ``Program.save`` writes),
and checks the functional model's outputs bit for bit against the golden. The command
fails (exit status 1) if an output is not exact, and with ``--same-programs`` if a digest
differs from the baseline's (the speed work kept every program's bytes; later schedule
changes, the im2col input and equal activation groups, change them on purpose).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: ``main`` when the speed work began (issue 14).
BASELINE = "0795eb3488a1bd93be79904095de6dff46874d4e"
#: (zoo model, preset) whose programs must be identical; ResNet-18 224x224 on 16x16 is
#: always checked (it is the one timed).
DIGEST_MODELS = [("resnet8", "tiny"), ("resnet8", "default"), ("lenet5", "tiny"),
                 ("mobilenetv2_small", "default"), ("shufflenet_v2_x0_5", "default"),
                 ("bert_encoder", "default"), ("gpt2_decoder", "tiny")]

# Runs inside a tree (its directory the working directory, so its code is imported) with
# only the public API of every revision; prints one JSON line.
_CHILD = r"""
import json, sys, time
from dataclasses import asdict
import torch
import sw
from hw import NPUConfig
from sw import zoo
from sw.program import file_digest

args = json.loads(sys.argv[1])

def digest(p):
    meta = {"config": p.config.to_dict(), "insn_base": p.insn_base, "insn_count": p.insn_count,
            "input": asdict(p.input), "output": asdict(p.output), "layers": p.layers,
            "host_ops": p.host_ops, "regions": [asdict(r) for r in p.regions],
            "segments": [s.to_dict() for s in p.segments]}
    return file_digest(p.dram, meta)

def prepare(name, shape):
    model, default = zoo.build(name)
    shape = shape or default
    gen = torch.Generator().manual_seed(0)
    calib = torch.randn(2, *shape, generator=gen)
    x = torch.randn(1, *shape, generator=gen)
    if name.startswith(("bert", "gpt2")):
        calib, x = calib * 0.5, x * 0.5
    return sw.quantize(model, [calib]), x

def exact(qmodel, program, cfg, x):
    dev = sw.Device(cfg, backend="func")
    golden = qmodel(x)
    return bool(torch.equal(dev.run(program, x), golden) and torch.equal(dev.run(program, x), golden))

out = {"digests": {}, "exact": {}}
presets = {"default": NPUConfig(), "tiny": NPUConfig.preset("tiny")}
size = args["size"]
qmodel, x = prepare("resnet18", (3, size, size))
cfg = presets["default"]
compile_s, first_s, replay_s = [], [], []
for _ in range(args["runs"]):
    t = time.perf_counter(); program = sw.compile(qmodel, cfg); compile_s.append(time.perf_counter() - t)
golden = qmodel(x)
ok = True
for _ in range(args["runs"]):
    dev = sw.Device(cfg, backend="func")
    t = time.perf_counter(); y = dev.run(program, x); first_s.append(time.perf_counter() - t)
    ok &= bool(torch.equal(y, golden))
for _ in range(args["runs"]):
    t = time.perf_counter(); y = dev.run(program, x); replay_s.append(time.perf_counter() - t)
    ok &= bool(torch.equal(y, golden))
key = f"resnet18@{size}/default"
out["digests"][key], out["exact"][key] = digest(program), ok
out.update(compile=compile_s, first=first_s, replay=replay_s, insns=program.insn_count)
if args["digests"]:
    for name, preset in args["models"]:
        qm, xm = prepare(name, None)
        p = sw.compile(qm, presets[preset])
        key = f"{name}/{preset}"
        out["digests"][key], out["exact"][key] = digest(p), exact(qm, p, presets[preset], xm)
print("RESULT " + json.dumps(out))
"""


def run_tree(tree: pathlib.Path, args, digests: bool) -> dict:
    """Run the measurements in ``tree`` (a subprocess importing that tree's code)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    spec = json.dumps({"size": args.size, "runs": args.runs, "digests": digests,
                       "models": DIGEST_MODELS})
    proc = subprocess.run([sys.executable, "-c", _CHILD, spec], cwd=tree, env=env,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"the measurement in {tree} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=BASELINE,
                    help="git revision to compare against (default: main when issue 14 began)")
    ap.add_argument("--rounds", type=int, default=3, help="subprocesses per tree, alternating")
    ap.add_argument("--runs", type=int, default=3, help="measurements of each figure per round")
    ap.add_argument("--size", type=int, default=224, help="ResNet-18 input height and width")
    ap.add_argument("--same-programs", action="store_true",
                    help="fail if a program differs from the baseline's (for a change that "
                         "must not touch schedules; since the baseline, the im2col input and "
                         "equal activation groups changed them)")
    args = ap.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    results: dict[str, list[dict]] = {"baseline": [], "this tree": []}
    with tempfile.TemporaryDirectory(prefix="npu-baseline-") as tmp:
        base = pathlib.Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), args.baseline],
                       cwd=ROOT, check=True)
        try:
            for r in range(args.rounds):
                for name, tree in (("baseline", base), ("this tree", ROOT)):
                    results[name].append(run_tree(tree, args, digests=r == 0))
                    print(f"  round {r + 1}/{args.rounds}: {name} measured", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)

    def median(name, key):
        return statistics.median(v for res in results[name] for v in res[key])

    n = args.rounds * args.runs
    print(f"ResNet-18 (3, {args.size}, {args.size}) on the 16x16 NPUConfig(), "
          f"{results['this tree'][0]['insns']:,} instructions; medians of {n} runs, "
          f"baseline {rev}")
    print(f"  {'':24s} {'baseline':>10s} {'this tree':>10s} {'ratio':>7s}")
    for key, label in (("compile", "sw.compile"), ("first", "func first run"),
                       ("replay", "func replay")):
        b, t = median("baseline", key), median("this tree", key)
        print(f"  {label:24s} {b:9.3f}s {t:9.3f}s {b / t:6.2f}x")
    ok = True
    base_d, new = results["baseline"][0], results["this tree"][0]
    print("  program digests (sha256 of image and description) and bit-exactness:")
    for key, d in new["digests"].items():
        same = base_d["digests"].get(key) == d
        exact = all(res["exact"].get(key, True) for res in results["this tree"])
        ok &= exact and (same or not args.same_programs)
        print(f"    {key:32s} {d[:16]}  {'identical' if same else 'DIFFERENT'}, "
              f"{'bit-exact' if exact else 'NOT EXACT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
