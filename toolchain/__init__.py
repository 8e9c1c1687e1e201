"""Finding and setting up the external tools of the flow, for ``hw``, ``sim`` and ``fpga``.

Tool discovery is not simulation: this package sits below ``hw`` and ``sim`` (it
imports neither). One module per tool family: :mod:`toolchain.verilator`,
:mod:`toolchain.yosys`; nextpnr and the programmers (openFPGALoader, iceprog) get
modules of their own beside them, each raising :class:`ToolchainError` with what to install.

``eval $(python -m toolchain)`` prints the shell exports for Verilator.
"""

from .errors import ToolchainError
from .verilator import setup_verilator, verilator_root
from .yosys import find_yosys

__all__ = ["ToolchainError", "find_yosys", "setup_verilator", "verilator_root"]
