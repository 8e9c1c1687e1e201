"""Build a bitstream for a board: ``python -m fpga.build --board ulx3s-85f --rows 8 --cols 8``.

The design (the SoC of :mod:`fpga.soc`, or the array alone, :mod:`fpga.standin`) goes
through amaranth-boards' build plan for the board's platform, run with Yosys and
nextpnr (YoWASP's packages unless the variables ``YOSYS``, ``NEXTPNR_ICE40``, ... name
others; :mod:`toolchain.fpga`). The output folder gets the bitstream, whose name carries
the configuration's hash (``soc_8x8_1a2b3c4d.bit``), the tools' logs, and
``report.json``: the resources used and available (LUT, FF, DSP, block RAM, ...) and
nextpnr's Fmax against the board's clock. A build whose sources, board, design and
configuration are unchanged is not run again.

A design that does not fit raises :class:`FitError` naming the resources over the
chip's count; one whose Fmax is below the board's clock raises :class:`TimingError`
(the bitstream would not work); a missing tool raises :class:`ToolchainError`.
``--program`` flashes with the board's programmer (iceprog, openFPGALoader, dfu-util;
the variables ``ICEPROG``, ``OPENFPGALOADER``, ``DFU_UTIL`` name others) and
``--dry-run`` prints the commands instead of running any tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

from hw.array import MAC_PRESETS, MacOptions
from hw.config import ConfigError, NPUConfig
from toolchain import ToolchainError, fpga_tool_env

from .boards import Board, BoardError, board_names, get_board

__all__ = ["BuildError", "FitError", "TimingError", "ProgramError", "BuildResult", "DESIGNS",
           "design_name", "output_dir", "prepare", "build", "program", "parse_nextpnr_log", "main"]

#: What ``--design`` builds: the SoC (NPU, RAM, UART bridge), or the array alone.
DESIGNS = ("soc", "array")
_REPO = pathlib.Path(__file__).resolve().parent.parent


class BuildError(RuntimeError):
    """The FPGA tools failed; the message names the step and the log to read."""


class FitError(BuildError):
    """The design needs more of a resource than the chip has; ``over`` maps each such
    resource to ``(used, available)``."""

    def __init__(self, message: str, over: dict[str, tuple[int, int]]) -> None:
        super().__init__(message)
        self.over = over


class TimingError(BuildError):
    """nextpnr's Fmax is below the clock the design runs at."""


class ProgramError(RuntimeError):
    """The programmer is missing, or it failed (no board attached, say)."""


@dataclasses.dataclass
class BuildResult:
    """What a build made: the bitstream and its report (``report.json``)."""

    bitstream: pathlib.Path
    report: dict
    cached: bool = False

    @property
    def fmax_mhz(self) -> float | None:
        return self.report.get("fmax_mhz")


def design_name(design: str, config: NPUConfig, mac=None) -> str:
    """The top module's and the bitstream's name: design, array size, configuration hash,
    and the array's implementation when it is not the generic one."""
    name = f"{design}_{config.rows}x{config.cols}_{config.hash:08x}"
    options = MacOptions.cast(mac)
    if options != MacOptions():
        preset = next((k for k, v in MAC_PRESETS.items() if v == options), None)
        name += "_" + (preset or hashlib.sha256(repr(options).encode()).hexdigest()[:6])
    return name


def output_dir(board: Board, name: str) -> pathlib.Path:
    """Where a build goes unless told: ``build/fpga/<board>_<name>``."""
    return _REPO / "build" / "fpga" / f"{board.name}_{name}"


def _check(board: Board, config: NPUConfig | None, design: str) -> NPUConfig:
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    config = config or board.config
    if config is None:
        raise ConfigError(f"the board {board.name} has no NPU configuration of its own: give one "
                          f"(--preset, --config FILE.json or --rows/--cols ...)")
    if not isinstance(config, NPUConfig):
        raise TypeError(f"config must be an NPUConfig, not {type(config).__name__}")
    return config


def _top(board: Board, config: NPUConfig, design: str, ram_bytes: int | None, mac):
    if design == "array":
        from .standin import ArrayStandIn

        return ArrayStandIn(rows=config.rows, cols=config.cols, mac=mac)
    from .soc import SoC

    soc = SoC(config, ram_bytes=ram_bytes or board.ram_bytes, clk_hz=board.sys_clk_hz,
              baud=board.baud, ram=board.ram, mac=mac)
    pll = board.pll()
    if pll is None:
        return soc
    from .clock import PLLTop

    return PLLTop(soc, pll)


def prepare(board: Board, config: NPUConfig | None = None, *, design: str = "soc",
            ram_bytes: int | None = None, mac=None):
    """Elaborate the design for the board: ``(platform, plan, name)``, no tool run.

    The plan (an amaranth ``BuildPlan``) holds the Verilog/RTLIL, the constraints and the
    build script; elaboration errors (a RAM that does not fit, a board without a UART)
    come from here. ``mac`` (default: the board's) is how the array builds its products.
    """
    config = _check(board, config, design)
    mac = MacOptions.cast(board.mac if mac is None else mac)
    name = design_name(design, config, mac)
    platform = board.make_platform()
    top = _top(board, config, design, ram_bytes, mac)
    # router2 routes the large ECP5 designs in minutes where router1 takes hours (the 8x8
    # SoC on the 85F: router1 still had 140k overused wires after 50 minutes).
    options = {"nextpnr_opts": "--timing-allow-fail"
                               + (" --router router2" if board.family == "ecp5" else "")}
    if board.synth_opts:
        options["synth_opts"] = board.synth_opts
    plan = platform.build(top, name=name, do_build=False, **options)
    return platform, plan, name


def _digest(board: Board, config: NPUConfig, design: str, ram_bytes: int | None, mac) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([board.name, board.platform.__name__, board.synth_opts, board.ram,
                         ram_bytes or board.ram_bytes, board.baud, design, repr(mac),
                         config.to_dict()]).encode())
    for path in sorted((_REPO / "hw").rglob("*.py")) + sorted((_REPO / "fpga").rglob("*.py")):
        h.update(path.relative_to(_REPO).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# nextpnr's "Device utilisation" lines: "Info:      ICESTORM_LC:  1234/ 5280    23%".
_UTIL = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)\s*/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")

#: How each family's bels map onto the report's kinds.
_KINDS = {
    "ice40": {"ICESTORM_LC": "logic_cells", "ICESTORM_RAM": "bram", "ICESTORM_DSP": "dsp",
              "ICESTORM_SPRAM": "spram", "SB_IO": "io"},
    "ecp5": {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "TRELLIS_SLICE": "slices",
             "DP16KD": "bram", "MULT18X18D": "dsp", "TRELLIS_IO": "io"},
}


def parse_nextpnr_log(text: str) -> dict:
    """The utilisation and the Fmax from a nextpnr log.

    ``{"utilisation": {bel: [used, available]}, "fmax": {clock: [achieved, target]}}``;
    the last utilisation table and the last Fmax of each clock win (nextpnr prints them
    after packing and again after routing).
    """
    utilisation: dict[str, list[int]] = {}
    # Only the last "Device utilisation" block counts; earlier ones are superseded.
    blocks = text.split("Device utilisation:")
    if len(blocks) > 1:
        for bel, used, avail in _UTIL.findall(blocks[-1].split("\n\n")[0]):
            utilisation[bel] = [int(used), int(avail)]
    fmax = {clk: [float(got), float(want)] for clk, got, _, want in _FMAX.findall(text)}
    return {"utilisation": utilisation, "fmax": fmax}


def _resources(family: str, utilisation: dict[str, list[int]], synth: dict[str, int]) -> dict:
    out: dict[str, list[int]] = {}
    for bel, kind in _KINDS[family].items():
        if bel in utilisation:
            out[kind] = utilisation[bel]
    if family == "ice40":   # a logic cell holds one LUT4 and one flip-flop
        avail = utilisation.get("ICESTORM_LC", [0, 0])[1]
        out["lut"] = [synth.get("lut", 0), avail]
        out["ff"] = [synth.get("ff", 0), avail]
    return out


def _synth_counts(rpt: str) -> dict[str, int]:
    """LUT4 and flip-flop counts from the Yosys log's last ``stat``."""
    tail = rpt[rpt.rfind("Printing statistics"):] if "Printing statistics" in rpt else rpt
    cells = {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+(\S+)$", tail, re.M)}
    lut = sum(n for name, n in cells.items() if name in ("SB_LUT4", "LUT4"))
    ff = sum(n for name, n in cells.items() if re.fullmatch(r"(SB_DFF\w*|TRELLIS_FF)", name))
    return {"lut": lut, "ff": ff}


# The phases worth a line: Yosys' main passes, nextpnr's packing, placing and routing.
_PHASES = re.compile(
    r"^(\d+\.\d+\. Executing (SYNTH_\w+|FLATTEN|MEMORY_LIBMAP|ALUMACC|ABC9?|DFFLEGALIZE) pass"
    r"|Info: (Packing constants|Running main analytical placer|Running simulated annealing"
    r"|Routing\.\.|Routing complete|Max frequency for clock[^(]*|Program finished)[^\n]*)")


class _Progress:
    """Prints each new phase of the tools' logs, with the time since the build began."""

    def __init__(self, paths, out) -> None:
        self.paths = paths
        self.offsets = {p: 0 for p in paths}
        self.out = out
        self.t0 = time.monotonic()
        self.last = ""
        self.said = time.monotonic()

    def poll(self) -> None:
        for path in self.paths:
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[path])
                    chunk = f.read()
            except OSError:
                continue
            end = chunk.rfind(b"\n") + 1
            self.offsets[path] += end
            for line in chunk[:end].decode(errors="replace").splitlines():
                match = _PHASES.match(line.strip())
                if match:
                    phase = re.sub(r"\s+", " ", match.group(0)).removeprefix("Info: ")[:90]
                    if phase != self.last:
                        self.last = phase
                        self._say(f"{'yosys' if path.suffix == '.rpt' else 'nextpnr'}: {phase}")
        if time.monotonic() - self.said > 60:   # a long pass: say that it still runs
            self._say(f"still running ({self.last or 'starting'})")

    def _say(self, text: str) -> None:
        self.said = time.monotonic()
        self.out(f"  [{self.said - self.t0:6.0f} s] {text}")


def _tool_env(board: Board, out_dir: pathlib.Path) -> dict[str, str]:
    env = fpga_tool_env(board.family)
    if "dfu-suffix" in board.make_platform().required_tools and not env.get("DFU_SUFFIX"):
        env["DFU_SUFFIX"] = _dfu_suffix_tool(out_dir)   # the OrangeCrab's DFU bootloader
    return env


def _dfu_suffix_tool(out_dir: pathlib.Path) -> str:
    """``dfu-suffix`` from dfu-util when present, else :mod:`fpga.dfu` behind a script."""
    found = shutil.which("dfu-suffix")
    if found:
        return found
    script = out_dir / "dfu-suffix"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m fpga.dfu \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def build(board: Board, config: NPUConfig | None = None, out_dir=None, *, design: str = "soc",
          ram_bytes: int | None = None, mac=None, progress=print,
          force: bool = False) -> BuildResult:
    """Build the bitstream of ``design`` for ``board`` into ``out_dir``; a
    :class:`BuildResult`. ``progress`` gets one line per phase (None: silent); ``mac`` is
    the array's implementation (default: the board's)."""
    config = _check(board, config, design)
    mac = MacOptions.cast(board.mac if mac is None else mac)
    platform, plan, name = prepare(board, config, design=design, ram_bytes=ram_bytes, mac=mac)
    out = pathlib.Path(out_dir) if out_dir else output_dir(board, name)
    out.mkdir(parents=True, exist_ok=True)
    digest = _digest(board, config, design, ram_bytes, mac)
    bitstream = out / f"{name}.{board.bitstream_ext}"
    report_path = out / "report.json"
    if not force and bitstream.exists() and report_path.exists():
        report = json.loads(report_path.read_text())
        if report.get("digest") == digest:
            return BuildResult(bitstream, report, cached=True)
    env = _tool_env(board, out)
    say = progress or (lambda line: None)
    say(f"building {design} {config.rows}x{config.cols} (config {config.hash:08x}) for "
        f"{board.name} ({board.device}) in {out}")
    plan.extract(out)
    logs = [out / f"{name}.rpt", out / f"{name}.tim"]
    for log in logs:
        log.unlink(missing_ok=True)
    watcher = _Progress(logs, say)
    t0 = time.monotonic()
    with open(out / "build.log", "wb") as log:
        proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=out, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                watcher.poll()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    watcher.poll()
    seconds = time.monotonic() - t0
    tim = logs[1].read_text(errors="replace") if logs[1].exists() else ""
    rpt = logs[0].read_text(errors="replace") if logs[0].exists() else ""
    parsed = parse_nextpnr_log(tim)
    resources = _resources(board.family, parsed["utilisation"], _synth_counts(rpt))
    over = {kind: (used, avail) for kind, (used, avail) in resources.items()
            if avail and used > avail}
    if proc.returncode != 0:
        if over:
            raise FitError(f"{design} {config.rows}x{config.cols} does not fit the "
                           f"{board.device}: " + ", ".join(
                               f"{kind} {used} of {avail}" for kind, (used, avail) in over.items())
                           + f" (log: {logs[1]})", over)
        tail = (out / "build.log").read_text(errors="replace").strip().splitlines()[-15:]
        step = "nextpnr" if tim else "yosys"
        raise BuildError(f"the FPGA build failed in {step} (exit {proc.returncode}); last lines "
                         f"of {out / 'build.log'}:\n" + "\n".join(tail))
    # The slowest clock against its own target (the oscillator's, or a PLL's output).
    clock = min(parsed["fmax"].values(), key=lambda v: v[0] / v[1], default=None)
    fmax, target = clock if clock else (None, board.sys_clk_hz / 1e6)
    report = {
        "board": board.name, "device": board.device, "family": board.family, "design": design,
        "config": config.to_dict(), "config_hash": f"0x{config.hash:08x}", "name": name,
        "mac": dataclasses.asdict(mac),
        "bitstream": bitstream.name, "resources": resources,
        "utilisation": parsed["utilisation"], "fmax_mhz": fmax, "clock_mhz": target,
        "clocks": parsed["fmax"], "pll": board.pll(),
        "seconds": round(seconds, 1), "digest": digest,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if fmax is not None and fmax < target:
        raise TimingError(f"{design} {config.rows}x{config.cols} on the {board.device} reaches "
                          f"{fmax:.1f} MHz, below its {target:.1f} MHz clock "
                          f"(report: {report_path})")
    if not bitstream.exists():
        raise BuildError(f"the build finished without {bitstream}")
    return BuildResult(bitstream, report)


def program(board: Board, bitstream, *, dry_run: bool = False, out=print) -> list[str]:
    """Flash ``bitstream`` with the board's programmer (or print the command with
    ``dry_run``); returns the command. :class:`ProgramError` for a missing programmer or
    one that fails."""
    command = board.programmer_command(str(bitstream))
    if dry_run:
        out(shlex.join(command))
        return command
    if not pathlib.Path(bitstream).exists():
        raise ProgramError(f"no bitstream {bitstream}: build it first")
    tool = shutil.which(command[0])
    if tool is None:
        var = board.programmer[0]
        raise ProgramError(f"the programmer {command[0]} is not on PATH: install it, or set {var} "
                           f"to one")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise ProgramError(f"{shlex.join(command)} failed (exit {result.returncode}); is the "
                           f"{board.name} attached and its USB device accessible?\n{tail}")
    return command


def _summary(report: dict) -> str:
    lines = [f"{report['design']} {report['config']['rows']}x{report['config']['cols']} on "
             f"{report['board']} ({report['device']}), config {report['config_hash']}:"]
    for kind, (used, avail) in report["resources"].items():
        pct = f"{100 * used / avail:5.1f} %" if avail else ""
        lines.append(f"  {kind:12s} {used:7d} of {avail:7d} {pct}")
    if report.get("fmax_mhz") is not None:
        lines.append(f"  Fmax         {report['fmax_mhz']:.1f} MHz (clock {report['clock_mhz']:.1f} "
                     f"MHz)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from hw.build import config_arguments

    parser = argparse.ArgumentParser(
        prog="python -m fpga.build",
        description="Build the NPU's SoC (or the array alone) for an FPGA board with Yosys and "
                    "nextpnr, report its resources and Fmax, and optionally flash it.")
    parser.add_argument("--board", help="a board (see --list-boards)")
    parser.add_argument("--design", choices=DESIGNS, default="soc",
                        help="soc: NPU, RAM and UART bridge (default); array: the array alone")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output folder (default build/fpga/<board>_<design>_<size>_<hash>)")
    parser.add_argument("--ram-bytes", type=int, metavar="N",
                        help="the SoC's RAM (default: the board's)")
    parser.add_argument("--program", action="store_true", help="flash the bitstream after building")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the build's tool commands and the programmer's, run nothing")
    parser.add_argument("--mac", choices=sorted(MAC_PRESETS),
                        help="how the array builds its products (default: the board's; "
                             "ice40_dual: two per iCE40 SB_MAC16; pipelined: a product register)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--list-boards", action="store_true", help="list the boards and exit")
    config_arguments(parser, "configuration (default: the board's; fields alone change the "
                             "board's)")
    return parser


def _dry_run(board: Board, config: NPUConfig | None, args, out) -> None:
    platform, plan, name = prepare(board, config, design=args.design, ram_bytes=args.ram_bytes,
                                   mac=args.mac)
    script = plan.files[f"{plan.script}.sh"]
    script = script.decode() if isinstance(script, bytes) else script
    folder = pathlib.Path(args.output) if args.output else output_dir(board, name)
    out(f"# build of {name} for {board.name} ({board.device}), in {folder}:")
    for line in script.splitlines():
        if line.strip() and not line.startswith(("#", "set ", "[")):
            out(line)
    bitstream = folder / f"{name}.{board.bitstream_ext}"
    if args.program:
        out("# then:")
        program(board, bitstream, dry_run=True, out=out)


def main(argv: list[str] | None = None) -> int:
    from hw.build import config_from_args

    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_boards:
        from .boards import BOARDS

        for name in board_names():
            board = BOARDS.get(name)
            print(f"{name:28s} {board.description}" if board else name)
        return 0
    if not args.board:
        parser.error("--board is required (see --list-boards)")
    try:
        board = get_board(args.board)
        if args.preset or args.config:
            config = config_from_args(args)
        elif _overrides(args):   # the board's configuration with the fields given changed
            config = (board.config or NPUConfig.preset("tiny")).replace(**_overrides(args))
        else:
            config = None
        _check(board, config, args.design)
    except (BoardError, ConfigError) as exc:
        parser.error(str(exc))
    try:
        if args.dry_run:
            _dry_run(board, config, args, print)
            return 0
        result = build(board, config, args.output, design=args.design, ram_bytes=args.ram_bytes,
                       mac=args.mac, force=args.force)
        print(("up to date: " if result.cached else "built: ") + str(result.bitstream))
        print(_summary(result.report))
        if args.program:
            program(board, result.bitstream)
            print(f"flashed {result.bitstream.name} onto the {board.name}")
    except FitError as exc:
        print(f"python -m fpga.build: does not fit: {exc}", file=sys.stderr)
        return 2
    except (BuildError, ProgramError, ToolchainError, ValueError, OSError) as exc:
        print(f"python -m fpga.build: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _overrides(args) -> dict[str, int]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(NPUConfig)
            if getattr(args, f.name) is not None}


if __name__ == "__main__":
    sys.exit(main())
