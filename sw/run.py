"""Compile a model and run it on a backend: ``python -m sw.run MODEL [options]``.

MODEL is a zoo name (``lenet5``, ``resnet8``, ...), ``module:attr`` naming an
``nn.Module`` instance or a function returning one (give ``--input-shape`` for those),
or an ONNX file (``model.onnx``: a float model is calibrated; a QDQ model from
onnxruntime's static quantization keeps its scales and zero points).
Calibration uses random inputs unless ``--digits`` picks scikit-learn's digits
(then the model must take 1x8x8 images). Prints per-layer and total statistics.
With ``--backend rtl --trace FILE`` it also writes the instruction timeline as Chrome
trace-event JSON (open it in https://ui.perfetto.dev; see docs/analysis.md, "Traces").
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from hw import ConfigError, NPUConfig, PRESETS
from sw.runtime import BACKENDS
from sw.zoo import load as _load_model    # MODEL as every CLI takes it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.run", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name, module:attr, or an .onnx file (float or QDQ; "
                                      "its input shape from the file unless --input-shape)")
    parser.add_argument("--backend", choices=list(BACKENDS),
                        help="where to run (default func; board with --board)")
    parser.add_argument("--board", metavar="NAME",
                        help="run on this FPGA board (fpga.boards: icebreaker, ulx3s-85f, "
                             "orangecrab-r0.2) with its configuration and RAM size; implies "
                             "--backend board")
    parser.add_argument("--port", help="with --backend board: the board's serial port")
    parser.add_argument("--baud", type=int, default=115200,
                        help="with --backend board: the link's baud rate (default 115200)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--rows", type=int, help="override the preset's rows")
    parser.add_argument("--cols", type=int, help="override the preset's cols")
    parser.add_argument("--input-shape", help="one sample's shape, e.g. 3,32,32")
    parser.add_argument("--batch", type=int, default=1, help="inputs to run (default 1)")
    parser.add_argument("--calib", type=int, default=4, help="calibration batches of 8 (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="FILE", help="also save the program (.npuprog)")
    parser.add_argument("--im2col", action=argparse.BooleanOptionalAction, default=None,
                        help="let a first convolution over few channels read the input as its "
                             "im2col matrix, written by the host (sw.compile's im2col; default: "
                             "on, except on a board, whose UART would carry the larger input)")
    parser.add_argument("--disassemble", action="store_true", help="print the program")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--trace", metavar="FILE",
                        help="write the instruction timeline as Chrome trace JSON (Perfetto); "
                             "rtl backend only")
    parser.add_argument("--clock-mhz", type=float,
                        help="with --trace: timestamps in microseconds at this clock "
                             "(default: one cycle per microsecond)")
    args = parser.parse_args(argv)

    import sw
    board = None
    if args.board:
        from fpga.boards import BoardError, get_board
        try:
            board = get_board(args.board)
        except BoardError as exc:
            parser.error(str(exc))
        if board.config is None:
            parser.error(f"the board {board.name} has no configuration of its own; use "
                         f"--backend board with --preset/--rows/--cols")
        if args.backend not in (None, "board"):
            parser.error(f"--board goes with --backend board, not {args.backend}")
        args.backend = "board"
    args.backend = args.backend or "func"
    try:
        overrides = {k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v is not None}
        config = (board.config.replace(**overrides) if board
                  else NPUConfig.preset(args.preset, **overrides))
    except ConfigError as exc:
        parser.error(str(exc))
    if args.batch < 1 or args.calib < 1:
        parser.error("--batch and --calib must be at least 1")
    if args.trace and args.backend != "rtl":
        parser.error(f"--trace needs --backend rtl (the {args.backend} backend has no timing)")
    if args.clock_mhz is not None and not (args.trace and args.clock_mhz > 0):
        parser.error("--clock-mhz goes with --trace and must be positive")
    try:
        if args.model.lower().endswith(".onnx"):
            model = sw.import_onnx(args.model)
            shape = model.input_shape
        else:
            model, shape = _load_model(args.model)
    except (ValueError, OSError) as exc:      # UnsupportedOpError is a ValueError
        parser.error(str(exc))
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            parser.error(f"--input-shape {args.input_shape!r} is not a comma-separated list of ints")
    if shape is None:
        parser.error("give --input-shape for a model outside the zoo")

    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    try:
        qmodel = sw.quantize(model, [torch.randn(8, *shape, generator=gen) for _ in range(args.calib)])
        t_quant = time.perf_counter() - t0
        t0 = time.perf_counter()
        im2col = args.backend != "board" if args.im2col is None else args.im2col
        program = sw.compile(qmodel, config, im2col=im2col)
    except (sw.UnsupportedOpError, sw.CompileError, ValueError) as exc:
        print(f"python -m sw.run: error: {exc}", file=sys.stderr)
        return 1
    t_compile = time.perf_counter() - t0
    print(f"{args.model}: input {shape}, {config.describe()}")
    print(f"quantized in {t_quant:.2f} s, compiled in {t_compile:.2f} s: {len(program.layers)} layers, "
          f"{program.insn_count} instructions, DRAM image {len(program.dram) / 2**20:.2f} MiB")
    if args.save:
        program.save(args.save)
        print(f"saved {args.save}")
    if args.disassemble:
        print(program.disassemble(), end="")
    x = torch.randn(args.batch, *shape, generator=gen)
    if args.port and args.backend != "board":
        parser.error("--port goes with --backend board")
    options = {"port": args.port, "baud": args.baud} if args.backend == "board" else {}
    if board is not None:
        options["mem_bytes"] = board.ram_bytes
    try:
        device = sw.Device(config, backend=args.backend, progress=True, trace=bool(args.trace),
                           **options)
    except sw.runtime.BackendError as exc:
        print(f"python -m sw.run: error: {exc}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    try:
        y = device.run(program, x)
    except sw.DeviceError as exc:
        print(f"python -m sw.run: error: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    exact = torch.equal(y, qmodel(x))
    st = device.stats
    if args.trace:
        from sw.analysis.trace import write_chrome_trace
        write_chrome_trace(args.trace, device.spans, layers=program.layers,
                           clock_mhz=args.clock_mhz)
        print(f"trace of {len(device.spans):,} instructions written to {args.trace} "
              "(open it in https://ui.perfetto.dev)", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({**st, "bit_exact": exact}, indent=1))
    else:
        def cell(layer, key, width, fmt="{:,}"):
            value = layer[key]          # None where the backend does not measure it
            return f"{'-' if value is None else fmt.format(value):>{width}}"

        print(f"{'layer':<28} {'op':<8} {'MACs':>14} {'DRAM rd B':>11} {'DRAM wr B':>11} "
              f"{'cycles':>11} {'util':>6}")
        for layer in st["layers"]:
            print(f"{layer['name']:<28} {layer['op']:<8} {layer['macs']:>14,} "
                  f"{cell(layer, 'dram_read_bytes', 11)} {cell(layer, 'dram_write_bytes', 11)} "
                  f"{cell(layer, 'cycles', 11, '{:,.0f}')} "
                  f"{cell(layer, 'utilization', 6, '{:.1%}')}")
        print(f"total: {st['real_macs']:,} MACs ({st['mac_slots']:,} MAC slots), DRAM read {st['dram_read_bytes']:,} B, written "
              f"{st['dram_write_bytes']:,} B, {wall:.2f} s on {args.backend} for {args.batch} input(s)")
        print(f"host link: {st['host_write_bytes']:,} B to the device, "
              f"{st['host_read_bytes']:,} B back (constants once, then inputs and outputs)")
        if st["cycles"] is not None:
            print(f"cycles {st['cycles']:,} ({st['cycles_per_run']:,.0f} per input), "
                  f"utilization {100 * st['utilization']:.1f} %")
        print(f"bit-exact against the golden: {exact}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
