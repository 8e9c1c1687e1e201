"""``python -m toolchain``: print the shell exports for the tools (Verilator)."""

from .verilator import main

raise SystemExit(main())
