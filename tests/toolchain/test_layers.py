"""The package layers: toolchain below hw, hw below sim (no imports upwards)."""
import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (anywhere in the file)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("toolchain", {"hw", "sim", "sw", "fpga"}),
    ("hw", {"sim", "sw", "fpga"}),
])
def test_no_imports_upwards(package, forbidden):
    bad = {path: sorted(names & forbidden) for path, names in imported_packages(package).items()
           if names & forbidden}
    assert not bad, f"{package} imports packages above it: {bad}"


def test_the_scan_sees_function_level_imports():
    # hw/build.py imports the toolchain inside a function: the scan must find it.
    assert "toolchain" in imported_packages("hw")["hw/build.py"]


BLOCK_SIM = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sim" or name.startswith("sim."):
            raise ImportError(f"hw imported {name}")
sys.meta_path.insert(0, Block())
import pkgutil, hw, hw.build
for mod in pkgutil.iter_modules(hw.__path__):
    __import__(f"hw.{mod.name}")
from toolchain import setup_verilator
setup_verilator({"PATH": ""})
print("ok")
"""


def test_hw_imports_and_finds_verilator_with_sim_blocked():
    out = subprocess.run([sys.executable, "-c", BLOCK_SIM], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_sim_toolchain_is_the_toolchain_package():
    import sim.toolchain
    import toolchain
    assert sim.toolchain.setup_verilator is toolchain.setup_verilator
    assert sim.toolchain.ToolchainError is toolchain.ToolchainError
    out = subprocess.run([sys.executable, "-m", "toolchain"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "export VERILATOR_ROOT=" in out.stdout
