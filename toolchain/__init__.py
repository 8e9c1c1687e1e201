"""Finding and setting up the external tools of the flow, for ``hw``, ``sim`` and ``fpga``.

Tool discovery is not simulation: this package sits below ``hw`` and ``sim`` (it
imports neither). One module per tool family: :mod:`toolchain.verilator` today;
Yosys, nextpnr and the programmers (openFPGALoader, iceprog) get modules of their
own beside it, each raising :class:`ToolchainError` with what to install.

``eval $(python -m toolchain)`` prints the shell exports for Verilator.
"""

from .errors import ToolchainError
from .verilator import setup_verilator, verilator_root

__all__ = ["ToolchainError", "setup_verilator", "verilator_root"]
