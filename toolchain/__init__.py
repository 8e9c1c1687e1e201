"""Finding and setting up the external tools of the flow, for ``hw``, ``sim`` and ``fpga``.

Tool discovery is not simulation: this package sits below ``hw`` and ``sim`` (it
imports neither). One module per tool family: :mod:`toolchain.verilator`,
:mod:`toolchain.yosys`, :mod:`toolchain.fpga` (the FPGA flows' Yosys, nextpnr and
packers), each raising :class:`ToolchainError` with what to install.

``eval $(python -m toolchain)`` prints the shell exports for Verilator.
"""

from .errors import ToolchainError
from .fpga import find_tool, fpga_tool_env
from .verilator import setup_verilator, verilator_root
from .yosys import cell_model, find_yosys, yosys_share_dir

__all__ = ["ToolchainError", "cell_model", "find_tool", "find_yosys", "fpga_tool_env",
           "setup_verilator", "verilator_root", "yosys_share_dir"]
