"""Resources and Fmax of the NPU on the boards' FPGAs, from real Yosys + nextpnr builds.

    python bench/fpga.py [--only NAME ...] [--long] [-o bench/results/fpga.json]

``--only`` rebuilds the rows it names and replaces them in the saved table, keeping the rest.

Each row is one build through ``fpga.build`` (cached in build/fpga when unchanged): the
SoC (NPU, RAM, UART bridge) with each board's configuration, and the systolic array
alone (``--design array``) at the sizes the goals name. A build that does not fit is a
row too, with the resources it ran out of. ``--long`` adds the 16x16 array on the
ECP5-85F (tens of minutes). Goals (issue 10): 16 int8 MACs a cycle on the iCE40UP5K;
16x16 at 75 MHz or more on the ECP5-85F.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from fpga import build as fb  # noqa: E402
from fpga.boards import BOARDS  # noqa: E402
from hw.array import MacOptions  # noqa: E402

_ICE = BOARDS["icebreaker"].config
#: The iCEBreaker's NPU without its area options (what it was before them).
_ICE_PLAIN = _ICE.replace(table_write_bytes=0, requant_lanes=0, alu_mul_bits=0,
                          insn_queue_depth=4)
_ULX = BOARDS["ulx3s-85f"].config
#: Pipelined products and partial sums only as wide as their values: the co-design options.
_ICE_FAST = MacOptions(kind="ice40_dual", product_register=True, narrow_sums=True)
_FAST = MacOptions(product_register=True, narrow_sums=True)
#: 16x16 on the ECP5-85F: 144 of the 256 products on its 156 MULT18X18D, the rest in logic;
#: the operands registered too (the buffer select's multiplexer out of the multiplier's cycle).
_HYBRID = MacOptions(product_register=True, narrow_sums=True, dsp_products=144)
_HYBRID_REG = MacOptions(product_register=True, operand_register=True, narrow_sums=True,
                         dsp_products=144)
_REG = MacOptions(product_register=True, operand_register=True, narrow_sums=True)

#: (label, board, config or None for the board's, design, mac or None for the board's)
ROWS = [
    ("up5k-array-2x4", "icebreaker", _ICE, "array", None),
    ("up5k-array-4x4", "icebreaker", _ICE.replace(rows=4), "array", None),
    ("up5k-array-4x4-fast", "icebreaker", _ICE.replace(rows=4), "array", _ICE_FAST),
    ("up5k-array-4x4-generic", "icebreaker", _ICE.replace(rows=4), "array", "generic"),
    # The board's configuration (its area options), then the same NPU without them.
    ("up5k-soc-2x4", "icebreaker", None, "soc", None),
    ("up5k-soc-2x4-no-area-options", "icebreaker", _ICE_PLAIN, "soc", None),
    ("ecp5-25f-soc-2x2", "orangecrab-r0.2", None, "soc", None),
    ("ecp5-85f-array-8x8", "ulx3s-85f", None, "array", None),
    ("ecp5-85f-array-8x8-fast", "ulx3s-85f", None, "array", _FAST),
    ("ecp5-85f-array-8x8-reg", "ulx3s-85f", None, "array", _REG),
]
LONG = [
    ("ecp5-85f-array-16x16", "ulx3s-85f", _ULX.replace(rows=16, cols=16), "array", _HYBRID),
    ("ecp5-85f-array-16x16-reg", "ulx3s-85f", _ULX.replace(rows=16, cols=16), "array",
     _HYBRID_REG),
    ("ecp5-85f-soc-8x8", "ulx3s-85f", None, "soc", None),
]


def run(label, board_name, config, design, mac, out_dir):
    board = BOARDS[board_name]
    t0 = time.monotonic()
    row = {"label": label, "board": board_name, "device": board.device, "design": design}
    try:
        result = fb.build(board, config, out_dir / f"{board_name}_{label}", design=design,
                          mac=mac, progress=lambda line: print(f"    {line}", flush=True))
        report, row["status"] = result.report, "ok"
    except fb.FitError as exc:
        report = json.loads((out_dir / f"{board_name}_{label}" / "report.json").read_text()) \
            if (out_dir / f"{board_name}_{label}" / "report.json").exists() else None
        row["status"] = "does not fit: " + ", ".join(f"{k} {u}/{a}" for k, (u, a) in exc.over.items())
        report = report or {}
        row["utilisation_over"] = exc.over
    except fb.TimingError as exc:
        report = json.loads((out_dir / f"{board_name}_{label}" / "report.json").read_text())
        row["status"] = f"timing: {exc}"
    row.update({k: report.get(k) for k in ("config_hash", "resources", "fmax_mhz", "clock_mhz")})
    cfg = config or board.config
    row["mac"] = mac_label(MacOptions.cast(board.mac if mac is None else mac))
    row["size"] = f"{cfg.rows}x{cfg.cols}"
    row["macs_per_cycle"] = cfg.rows * cfg.cols
    row["seconds"] = report.get("seconds", round(time.monotonic() - t0, 1))
    row["measured"] = time.strftime("%Y-%m-%d")
    return row


def mac_label(mac: MacOptions) -> str:
    """A short name for the MAC options: kind, then +reg, +narrow, /N DSP products."""
    label = mac.kind.replace("generic", "gen").replace("ice40_dual", "dual")
    label += "+reg" if mac.product_register else ""
    label += "+opreg" if mac.operand_register else ""
    label += "+narrow" if mac.narrow_sums else ""
    return label + (f"/{mac.dsp_products}" if mac.dsp_products is not None else "")


def table(rows) -> str:
    head = (f"{'build':22s} {'device':10s} {'MACs':>4s} {'mac':20s} {'LUT/LC':>13s} {'FF':>6s} {'DSP':>8s} "
            f"{'BRAM':>7s} {'Fmax':>6s} {'clock':>5s} {'s':>5s}  status")
    dates = sorted({r.get("measured", "undated") for r in rows})
    lines = [f"# python bench/fpga.py [--only ...]; rows measured on {', '.join(dates)}", head,
             "-" * len(head)]
    for r in rows:
        res = r.get("resources") or {}

        def pair(*kinds):
            for kind in kinds:
                if kind in res:
                    used, avail = res[kind]
                    return f"{used}/{avail}"
            return "-"
        lut = pair("logic_cells", "lut")
        fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
        clock = f"{r['clock_mhz']:.0f}" if r.get("clock_mhz") else "-"
        lines.append(f"{r['label']:22s} {r['device']:10s} {r['macs_per_cycle']:>4d} {r['mac']:20s} {lut:>13s} "
                     f"{pair('ff'):>6s} {pair('dsp'):>8s} {pair('bram'):>7s} {fmax:>6s} "
                     f"{clock:>5s} {r['seconds']:>5.0f}  {r['status']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these rows (labels)")
    parser.add_argument("--long", action="store_true", help="add the 16x16 ECP5 build")
    parser.add_argument("-o", "--output", default="bench/results/fpga.json")
    parser.add_argument("--build-dir", default="build/fpga/bench")
    args = parser.parse_args()
    todo = ROWS + (LONG if args.long else [])
    if args.only:
        unknown = set(args.only) - {r[0] for r in ROWS + LONG}
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; rows: {[r[0] for r in ROWS + LONG]}")
        todo = [r for r in ROWS + LONG if r[0] in args.only]
    rows = []
    for label, board, config, design, mac in todo:
        print(f"== {label}", flush=True)
        rows.append(run(label, board, config, design, mac, pathlib.Path(args.build_dir)))
    out = pathlib.Path(args.output)
    if args.only and out.exists():
        # A partial run replaces its own rows in the saved table and keeps the others.
        fresh = {r["label"]: r for r in rows}
        saved = {r["label"]: r for r in json.loads(out.read_text())}
        saved.update(fresh)
        order = [r[0] for r in ROWS + LONG]
        rows = sorted(saved.values(), key=lambda r: order.index(r["label"])
                      if r["label"] in order else len(order))
    text = table(rows)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out} and {out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
