"""Emit an NPU instance: ``python -m hw.build --rows 16 --cols 16 [-o DIR]``.

Writes ``npu.v`` (Verilog, top module ``npu``), ``npu.json`` (the configuration,
its hash, the ports and the CSR map) and ``npu.h`` (the register map for C
drivers). The configuration comes from ``--preset``, then ``--config FILE.json``,
then one flag per :class:`hw.NPUConfig` field, later ones overriding earlier ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from .array import MAC_PRESETS
from .config import ConfigError, NPUConfig, PRESETS

__all__ = ["emit", "manifest", "default_output_dir", "config_arguments", "config_from_args",
           "main"]

TOP_NAME = "npu"


def default_output_dir(config: NPUConfig) -> pathlib.Path:
    return pathlib.Path("build") / f"npu_{config.rows}x{config.cols}_{config.hash:08x}"


def manifest(config: NPUConfig, component=None) -> dict:
    """The JSON manifest of an instance (``mac``: its array's implementation options)."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    from . import isa
    from .csr import REGISTERS, NPU_ID, NPU_VERSION
    from .npu import NPU

    component = component or NPU(config)
    ports = [{"name": "clk", "dir": "in", "width": 1}, {"name": "rst", "dir": "in", "width": 1}]
    for path, member, _ in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        direction = "in" if member.flow == wiring.In else "out"
        ports.append({"name": name, "dir": direction, "width": Shape.cast(member.shape).width})
    return {
        "top": TOP_NAME,
        "config": config.to_dict(),
        "config_hash": f"0x{config.hash:08x}",
        "mac": dataclasses.asdict(component.mac),
        "id": f"0x{NPU_ID:08x}",
        "version": f"0x{NPU_VERSION:08x}",
        "isa": {"insn_bits": isa.INSN_BITS,
                "opcodes": {op.name: op.value for op in isa.Opcode},
                "error_codes": {e.name: e.value for e in isa.ErrorCode}},
        "ports": ports,
        "csr": [{"name": r.name, "offset": r.offset, "access": r.access, "doc": r.doc}
                for r in REGISTERS],
    }


def emit(config: NPUConfig, out_dir: str | pathlib.Path, *, quiet: bool = True,
         mac=None) -> dict[str, pathlib.Path]:
    """Write ``npu.v``, ``npu.json`` and ``npu.h`` for ``config`` into ``out_dir``.

    ``mac`` is the array's implementation option (:class:`hw.array.MacOptions` or a preset
    name; ``"ice40_dual"`` instantiates ``SB_MAC16`` cells, so its Verilog needs the
    iCE40 cell library to simulate).

    Returns the paths written. Re-emitting an unchanged configuration rewrites
    identical files (the output is deterministic).
    """
    from amaranth.back import verilog

    from .csr import c_header
    from .npu import NPU

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    top = NPU(config, mac=mac)
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)
    paths = {"verilog": out / f"{TOP_NAME}.v", "manifest": out / f"{TOP_NAME}.json",
             "header": out / f"{TOP_NAME}.h"}
    paths["verilog"].write_text(text)
    paths["manifest"].write_text(json.dumps(manifest(config, top), indent=2) + "\n")
    paths["header"].write_text(c_header(config.hash))
    if not quiet:
        print(f"emitted {config.describe()} in {time.perf_counter() - t0:.1f} s -> {out}")
    return paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hw.build",
        description="Emit the Verilog, JSON manifest and C header of an NPU instance.")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output folder (default build/npu_<rows>x<cols>_<hash>)")
    config_arguments(parser)
    parser.add_argument("--mac", choices=sorted(MAC_PRESETS), default="generic",
                        help="how the array builds its products (not part of the configuration; "
                             "default generic)")
    parser.add_argument("--lint", action="store_true",
                        help="also run verilator --lint-only on the result (waivers: hw/lint.vlt)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def config_arguments(parser: argparse.ArgumentParser,
                     title: str = "configuration fields (override preset and file)") -> None:
    """Add ``--preset``, ``--config FILE.json`` and one flag per NPUConfig field (what
    :func:`config_from_args` reads) to ``parser``; shared by the CLIs that take a config."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    parser.add_argument("--config", metavar="FILE.json", help="start from a JSON configuration")
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(NPUConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, metavar="N",
                           help=f"default {f.default}")


def config_from_args(args: argparse.Namespace) -> NPUConfig:
    base = NPUConfig.preset(args.preset) if args.preset else NPUConfig()
    if args.config:
        path = pathlib.Path(args.config)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        base = NPUConfig.from_dict({**base.to_dict(), **_json_object(text, path)})
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(NPUConfig)
                 if getattr(args, f.name) is not None}
    return base.replace(**overrides) if overrides else base


def _json_object(text: str, path: pathlib.Path) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must hold a JSON object of NPUConfig fields")
    return value


def lint(verilog_path: pathlib.Path) -> None:
    """``verilator --lint-only`` with the project's waivers; raises on any warning."""
    import subprocess

    from toolchain import setup_verilator

    env = setup_verilator(dict(__import__("os").environ))
    waivers = pathlib.Path(__file__).with_name("lint.vlt")
    result = subprocess.run(["verilator", "--lint-only", str(waivers), str(verilog_path),
                             "--top-module", TOP_NAME], capture_output=True, text=True, env=env)
    if result.returncode != 0 or "%Warning" in result.stderr or "%Error" in result.stderr:
        raise RuntimeError(f"verilator lint failed for {verilog_path}:\n{result.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    out = pathlib.Path(args.output) if args.output else default_output_dir(config)
    try:
        paths = emit(config, out, quiet=args.quiet, mac=args.mac)
        if args.lint:
            lint(paths["verilog"])
    except (OSError, RuntimeError) as exc:
        print(f"python -m hw.build: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        for kind, path in paths.items():
            print(f"  {kind:8s} {path}")
        if args.lint:
            print("  lint     clean (verilator --lint-only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
