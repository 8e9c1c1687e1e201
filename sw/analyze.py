"""Co-design analysis of a model on an NPU configuration: ``python -m sw.analyze MODEL``.

MODEL is a zoo name (``lenet5``, ``resnet18``, ...), ``module:attr`` naming an
``nn.Module`` (give ``--input-shape``), or an LLM proxy (``bert-base``, ``llama2-7b``,
``opt-13b``: prefill and decode at ``--seq`` and ``--batch``, weights, KV cache,
footprint, the NPU against a reference GPU). Prints the per-layer table (real MACs and MAC
slots, bytes, arithmetic intensity, cycles, utilization, bandwidth and MBU, bound,
energy), the totals, the hotspots and the share of time per operator class, and
writes ``layers.csv``, ``analysis.json``, plots (PNG and SVG) and ``report.html`` into
``--out``. Cycles come from the performance model (``--backend model``, the default),
or are measured in Verilator (``--backend rtl``); ``--backend func`` also runs the
functional model and checks it bit-exact. ``--profile-gpu`` measures the float model on
a CUDA GPU instead (torch profiler), and fails when there is none.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from hw import ConfigError, NPUConfig, PRESETS


def _config(args, parser) -> NPUConfig:
    try:
        if args.config:
            try:
                data = json.loads(pathlib.Path(args.config).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                parser.error(f"--config {args.config}: {exc}")
            base = NPUConfig.from_dict(data)
        else:
            base = NPUConfig.preset(args.preset)
        overrides = {k: getattr(args, k) for k in ("rows", "cols", "spad_depth", "acc_depth",
                                                   "dma_data_width") if getattr(args, k) is not None}
        return NPUConfig.from_dict({**base.to_dict(), **overrides}) if overrides else base
    except (ConfigError, TypeError, ValueError) as exc:
        parser.error(f"bad configuration: {exc}")


def _profile_gpu(args, parser) -> int:
    """The float model (a zoo model or an LLM proxy's layer) on a CUDA GPU, per module."""
    from sw.analysis import gpu, llm
    if args.model not in llm.MODELS and ":" in args.model:
        parser.error("--profile-gpu takes a zoo name or an LLM proxy")
    if args.input_shape:
        parser.error("--profile-gpu runs a zoo model at its own input shape: drop --input-shape")
    phase = "decode" if args.phase == "both" else args.phase
    seq = args.seq or 2048
    profiles = []
    for batch in args.batches:
        try:
            model, inputs = gpu.workload(args.model, batch=batch, phase=phase, seq=seq)
        except (KeyError, ValueError) as exc:
            parser.error(str(exc).strip("'\""))
        try:
            profiles.append(gpu.profile(model, inputs, name=args.model, dtype=args.gpu_dtype))
        except gpu.NoGPUError as exc:
            print(f"python -m sw.analyze: error: {exc}", file=sys.stderr)
            return 2
        gpu.print_profile(profiles[-1], args.top)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_profile.json").write_text(json.dumps([p.to_dict() for p in profiles], indent=1))
        print(f"wrote {out / 'gpu_profile.json'}")
    return 0


def _llm(args, parser) -> int:
    from sw.analysis import llm, llm_report
    config = _config(args, parser)
    cfg = llm.get(args.model)
    seq = args.seq or min(2048, cfg.positions or 2048)
    phases = ("prefill", "decode") if args.phase == "both" else (args.phase,)
    t0 = time.perf_counter()

    def say(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:6.1f} s] {line}", file=sys.stderr, flush=True)

    import sw
    try:
        a = llm_report.analyze_llm(args.model, config, batches=args.batches, seq=seq,
                                   phases=phases, clock_mhz=args.clock_mhz,
                                   dram_gbs=args.dram_gbs, gpu=args.gpu,
                                   device_gb=args.device_gb, progress=say)
    except (ValueError, sw.CompileError) as exc:
        print(f"python -m sw.analyze: error: {exc}", file=sys.stderr)
        return 1
    print(llm_report.format_llm(a))
    if args.out:
        files = llm_report.write_llm_report(a, args.out)
        print(f"wrote {', '.join(sorted(p.name for v in files.values() for p in (v if isinstance(v, list) else [v])))} "
              f"in {args.out}")
    return 0


def _shape(args, parser):
    if not args.input_shape:
        return None
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        parser.error(f"--input-shape {args.input_shape!r} is not a comma-separated list of ints")
    if not shape or min(shape) < 1:
        parser.error(f"--input-shape {args.input_shape!r} needs positive sizes")
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.analyze", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("model", help="zoo name or module:attr")
    hwg = parser.add_argument_group("the NPU (a preset or a JSON config, then overrides)")
    hwg.add_argument("--preset", choices=sorted(PRESETS), default="default")
    hwg.add_argument("--config", metavar="FILE", help="an NPUConfig as JSON (hw.build writes one)")
    for flag, help_ in (("--rows", "array rows"), ("--cols", "array columns"),
                        ("--spad-depth", "scratchpad rows"), ("--acc-depth", "accumulator rows"),
                        ("--dma-data-width", "AXI data width in bits")):
        hwg.add_argument(flag, type=int, help=help_)
    parser.add_argument("--clock-mhz", type=float, default=200.0, help="clock (default 200 MHz)")
    parser.add_argument("--dram-gbs", type=float,
                        help="DRAM bandwidth in GB/s for the model (default: one bus beat a cycle)")
    parser.add_argument("--energy-table", metavar="FILE",
                        help="per-operation energies as JSON (default: Horowitz, ISSCC 2014, 45 nm)")
    parser.add_argument("--backend", choices=("model", "func", "rtl"), default="model",
                        help="where the cycles come from (default: the performance model)")
    parser.add_argument("--input-shape", help="one sample's shape, e.g. 3,32,32")
    parser.add_argument("--out", metavar="DIR", help="write CSV, JSON, plots and report.html here")
    parser.add_argument("--trace", metavar="FILE",
                        help="write the instruction timeline (the model's, or the RTL's with "
                             "--backend rtl) as Chrome trace JSON for Perfetto")
    parser.add_argument("--top", type=int, default=5, help="hotspots to list (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--profile-gpu", action="store_true",
                        help="profile the float model on a CUDA GPU (torch profiler) instead")
    parser.add_argument("--batch", default="1",
                        help="batch for --profile-gpu, batches (comma-separated) for an LLM proxy")
    llmg = parser.add_argument_group("LLM proxies")
    llmg.add_argument("--seq", type=int, default=None,
                      help="prefill length / decode cache length (default 2048, BERT 512)")
    llmg.add_argument("--phase", choices=("prefill", "decode", "both"), default="both")
    llmg.add_argument("--device-gb", type=float, default=40.0,
                      help="device memory to divide between weights and KV cache (default 40)")
    llmg.add_argument("--gpu", default="H200", help="reference GPU (default H200)")
    parser.add_argument("--gpu-dtype", choices=("fp16", "bf16", "fp32"), default="fp16",
                        help="dtype for --profile-gpu (default fp16)")
    args = parser.parse_args(argv)
    try:
        args.batches = [int(v) for v in args.batch.split(",")]
    except ValueError:
        parser.error(f"--batch {args.batch!r} is not a comma-separated list of ints")
    args.batch = args.batches[0]
    if args.top < 1 or min(args.batches) < 1:
        parser.error("--top and --batch must be at least 1")
    if args.profile_gpu:
        return _profile_gpu(args, parser)
    from sw.analysis import llm
    if args.model in llm.MODELS:
        return _llm(args, parser)

    from sw import zoo
    from sw.analysis import energy, metrics, report
    config = _config(args, parser)
    if args.model not in zoo.ZOO and ":" not in args.model:   # fail before any work
        parser.error(f"model {args.model!r} is neither a zoo name ({', '.join(zoo.ZOO)}), "
                     f"an LLM proxy ({', '.join(llm.MODELS)}) nor module:attr")
    table = None
    if args.energy_table:
        try:
            table = energy.EnergyTable.load(args.energy_table)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--energy-table {args.energy_table}: {exc}")
    t0 = time.perf_counter()

    def say(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:6.1f} s] {line}", file=sys.stderr, flush=True)

    import sw
    try:
        a = metrics.analyze(args.model, config, backend=args.backend,
                            input_shape=_shape(args, parser), clock_mhz=args.clock_mhz,
                            dram_gbs=args.dram_gbs, energy_table=table, seed=args.seed,
                            progress=say, trace=bool(args.trace))
    except (ValueError, sw.UnsupportedOpError, sw.CompileError, sw.DeviceError,
            RuntimeError) as exc:
        print(f"python -m sw.analyze: error: {exc}", file=sys.stderr)
        return 1
    print(report.format_table(a))
    print()
    print(report.format_summary(a, args.top))
    if args.trace:
        from sw.analysis import trace
        trace.write_chrome_trace(args.trace, a.spans, layers=a.program_layers,
                                 clock_mhz=args.clock_mhz)
        print(f"wrote the {a.timing_source} timeline ({len(a.spans):,} instructions) to "
              f"{args.trace}: open it in https://ui.perfetto.dev")
    if args.out:
        say(f"writing {args.out}")
        files = report.write_report(a, args.out)
        print(f"wrote {', '.join(sorted(str(p.name) for v in files.values() for p in (v if isinstance(v, list) else [v])))} "
              f"in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
