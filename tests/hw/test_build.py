"""python -m hw.build: files, manifest, header, errors, lint."""
import json
import subprocess
import sys

import pytest

from hw import NPUConfig
from hw.build import emit, lint, main
from hw.csr import REGISTERS


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hw.build", *args], capture_output=True, text=True)


def test_help_lists_every_config_field():
    out = run_cli("--help")
    assert out.returncode == 0
    for flag in ("--rows", "--cols", "--spad-depth", "--dma-data-width", "--token-queue-depth",
                 "--preset", "--config", "-o"):
        assert flag in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--rows", "1"], "NPUConfig.rows is 1; allowed: 2 to 64"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--cols", "x"], "invalid int value: 'x'"),
    (["--config", "/no/such/file.json"], "cannot read /no/such/file.json"),
])
def test_bad_arguments_get_one_line_errors(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("python -m hw.build: error:")


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rows": 4, "cols": 6, "spad_depth": 256, "acc_depth": 128,
                                "param_depth": 24, "dma_data_width": 32}))
    assert main(["--config", str(path), "--cols", "4", "-o", str(tmp_path / "out"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "npu.json").read_text())
    assert manifest["config"]["rows"] == 4 and manifest["config"]["cols"] == 4
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 4, "colz": 4}')
    assert run_cli("--config", str(bad)).returncode == 2


def test_emit_writes_verilog_manifest_header_and_lints(tmp_path):
    cfg = NPUConfig.preset("tiny", cols=6)
    paths = emit(cfg, tmp_path)
    verilog = paths["verilog"].read_text()
    assert "module npu(" in verilog
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["config_hash"] == f"0x{cfg.hash:08x}"
    assert NPUConfig.from_dict(manifest["config"]) == cfg
    names = {p["name"] for p in manifest["ports"]}
    assert {"clk", "rst", "m_axi__arvalid", "m_axi__rdata", "s_axil__awaddr", "irq"} <= names
    rdata = next(p for p in manifest["ports"] if p["name"] == "m_axi__rdata")
    assert rdata == {"name": "m_axi__rdata", "dir": "in", "width": cfg.dma_data_width}
    assert [r["name"] for r in manifest["csr"]] == [r.name for r in REGISTERS]
    header = paths["header"].read_text()
    assert f"#define NPU_CONFIG_HASH_VALUE 0x{cfg.hash:08x}u" in header
    assert "#define NPU_REG_STATUS" in header
    # Deterministic output
    again = emit(cfg, tmp_path / "again")
    assert again["verilog"].read_text() == verilog
    lint(paths["verilog"])


def test_lint_fails_on_broken_verilog(tmp_path):
    bad = tmp_path / "npu.v"
    bad.write_text("module npu(input a, output b); assign b = c; endmodule\n")
    with pytest.raises(RuntimeError, match="lint failed"):
        lint(bad)


@pytest.mark.parametrize("options", [
    {"table_write_bytes": 1, "requant_lanes": 1, "alu_mul_bits": 1},
    {"table_write_bytes": 16, "requant_lanes": 2, "alu_mul_bits": 16},
])
def test_the_area_options_lint(tmp_path, options):
    """The area options' Verilog lints clean (no zero-width wires at their extremes)."""
    paths = emit(NPUConfig.preset("tiny", **options), tmp_path)
    lint(paths["verilog"])
