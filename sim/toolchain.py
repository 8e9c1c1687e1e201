"""Moved to the :mod:`toolchain` package (tool discovery sits below ``hw`` and ``sim``).

Kept so that ``from sim.toolchain import setup_verilator`` and
``python -m sim.toolchain`` keep working.
"""

from toolchain import ToolchainError, setup_verilator, verilator_root
from toolchain.verilator import main

__all__ = ["ToolchainError", "setup_verilator", "verilator_root", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
