"""The main job of the quick start (``make demo``).

Emits a 16x16 NPU (Verilog, manifest, C header), trains a small CNN on
scikit-learn's bundled digits, quantizes and compiles it, runs the test set on
the functional model and a few images on the RTL in Verilator, checks every
output bit for bit against the PyTorch integer golden and prints the statistics.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from hw import ConfigError, NPUConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.demo",
                                     description=__doc__.splitlines()[0] + " " + __doc__.splitlines()[2])
    parser.add_argument("--rows", type=int, default=16, help="array rows (default 16)")
    parser.add_argument("--cols", type=int, default=16, help="array columns (default 16)")
    parser.add_argument("--rtl-images", type=int, default=8, metavar="N",
                        help="test images to run on the RTL (default 8)")
    parser.add_argument("--no-rtl", action="store_true", help="skip Verilog and Verilator")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = NPUConfig(rows=args.rows, cols=args.cols)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.rtl_images < 1:
        parser.error("--rtl-images must be at least 1")

    import sw
    from sw import digits

    steps = 5 if args.no_rtl else 6
    step = 0

    def head(text):
        nonlocal step
        step += 1
        print(f"[{step}/{steps}] {text}", flush=True)

    head(f"config: {config.describe()}")
    if not args.no_rtl:
        from hw.build import default_output_dir, emit
        t0 = time.perf_counter()
        paths = emit(config, default_output_dir(config))
        print(f"      emitted {paths['verilog']} ({paths['verilog'].stat().st_size // 1024} KiB), "
              f"{paths['manifest'].name}, {paths['header'].name} in {time.perf_counter() - t0:.1f} s")

    head("train a small CNN on scikit-learn's digits, quantize it")
    t0 = time.perf_counter()
    model, data = digits.train_digits_cnn(seed=args.seed)
    with torch.no_grad():
        float_acc = digits.accuracy(model(data.x_test), data.y_test)
    qmodel = sw.quantize(model, [data.x_train[i:i + 128] for i in range(0, 512, 128)])
    int8_acc = digits.accuracy(qmodel(data.x_test), data.y_test)
    print(f"      trained and quantized in {time.perf_counter() - t0:.1f} s; test accuracy: "
          f"float {100 * float_acc:.2f} %, int8 {100 * int8_acc:.2f} % ({len(data.x_test)} images)")

    t0 = time.perf_counter()
    program = sw.compile(qmodel, config)
    print(f"      compiled: {len(program.layers)} layers, {program.insn_count} instructions, "
          f"DRAM image {len(program.dram) // 1024} KiB, {1e3 * (time.perf_counter() - t0):.0f} ms")

    head("functional model: the whole test set")
    device = sw.Device(config, backend="func")
    t0 = time.perf_counter()
    y = device.run(program, data.x_test)
    golden = qmodel(data.x_test)
    exact = torch.equal(y, golden)
    print(f"      {len(data.x_test)} images in {time.perf_counter() - t0:.2f} s; NPU accuracy "
          f"{100 * digits.accuracy(y, data.y_test):.2f} %; equals the golden: {exact}")
    if not exact:
        print("FAIL: the functional model differs from the golden")
        return 1
    per = device.stats
    print(f"      per image: {per['macs'] // per['runs']:,} MAC slots, DRAM read "
          f"{per['dram_read_bytes'] // per['runs']:,} B, written {per['dram_write_bytes'] // per['runs']:,} B")

    if not args.no_rtl:
        n = min(args.rtl_images, len(data.x_test))
        head(f"RTL in Verilator: {n} images (the first build of a configuration takes a minute or two)")
        rtl = sw.Device(config, backend="rtl", progress=True)
        t0 = time.perf_counter()
        y_rtl = rtl.run(program, data.x_test[:n])
        st = rtl.stats
        exact_rtl = torch.equal(y_rtl, golden[:n])
        print(f"      {time.perf_counter() - t0:.1f} s; {st['cycles_per_run']:,.0f} cycles per image, "
              f"array utilization {100 * st['utilization']:.1f} %, DMA read "
              f"{st['dram_read_bytes'] // n:,} B and written {st['dram_write_bytes'] // n:,} B per image")
        print(f"      equals the golden: {exact_rtl}; MACs agree with the functional model: "
              f"{st['macs'] == n * per['macs'] // per['runs']}")
        if not exact_rtl:
            print("FAIL: the RTL differs from the golden")
            return 1

    rtl_layers = [] if args.no_rtl else st["layers"]
    head("per-layer statistics, per image (DRAM bytes: functional model"
         + ("" if args.no_rtl else "; cycles and utilization: RTL") + ")")
    print(f"      {'layer':<24} {'op':<8} {'MACs':>10} {'DRAM rd':>9} {'DRAM wr':>9}"
          + ("" if args.no_rtl else f" {'cycles':>8} {'util':>6}"))
    for i, layer in enumerate(per["layers"]):
        line = (f"      {layer['name']:<24} {layer['op']:<8} {layer['macs']:>10,} "
                f"{layer.get('dram_read_bytes', 0):>9,} {layer.get('dram_write_bytes', 0):>9,}")
        if rtl_layers:
            line += f" {rtl_layers[i]['cycles']:>8,.0f} {rtl_layers[i]['utilization']:>6.1%}"
        print(line)
    head("co-design analysis: where the cycles, bytes and energy go")
    _analysis(qmodel, program, config, None if args.no_rtl else st)
    where = "functional model" + ("" if args.no_rtl else " and RTL")
    print(f"PASS: {where} outputs equal the PyTorch integer golden bit for bit")
    return 0


def _analysis(qmodel, program, config: NPUConfig, rtl_stats: dict | None,
              clock_mhz: float = 200.0) -> None:
    """The co-design analysis of one image (``sw.analysis.metrics``) at an assumed clock
    of ``clock_mhz``: cycles measured on the RTL (or from the performance model without
    it), the model against the RTL, and the report written under build/demo/analysis."""
    import pathlib

    from sw.analysis import metrics, report
    model = metrics.model_timing(program, clock_mhz=clock_mhz)
    timing = model
    if rtl_stats is not None:
        timing = metrics.Timing("rtl", rtl_stats["cycles_per_run"],
                                {layer["id"]: layer["cycles"] for layer in rtl_stats["layers"]})
    a = metrics.analyze_program(qmodel, program, timing, name="digits CNN", clock_mhz=clock_mhz)
    for line in report.format_summary(a, top=3).splitlines():
        print(f"      {line}")
    if rtl_stats is not None:
        worst = max(abs(model.layers[k] - c) / c for k, c in timing.layers.items() if c)
        print(f"      performance model: {model.cycles:,} cycles against the RTL's "
              f"{timing.cycles:,.0f} ({100 * (model.cycles - timing.cycles) / timing.cycles:+.2f} %; "
              f"worst layer {100 * worst:.2f} %)")
    out = pathlib.Path("build") / "demo" / "analysis"
    report.write_report(a, out)
    print(f"      tables and plots: {out / 'report.html'} (and CSV, JSON, PNG, SVG beside it)")


if __name__ == "__main__":
    sys.exit(main())
