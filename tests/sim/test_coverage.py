"""sim.coverage: parsing Verilator's coverage files into per-component figures, merging
runs, and its command line (the coverage run itself is `make coverage`, not the suite)."""
import subprocess
import sys

import pytest

from sim import coverage


def _point(page, hier, line, col=1, kind="v_line", folder="/b"):
    return (f"\x01f\x02{folder}/npu.v\x01l\x02{line}\x01n\x02{col}\x01page\x02{kind}/{page}"
            f"\x01o\x02x\x01h\x02{hier}")


def _write(path, points):
    with open(path, "w", encoding="latin-1") as f:
        f.write("# SystemC::Coverage-3\n")
        for key, n in points:
            f.write(f"C '{key}' {n}\n")


def test_points_by_component_and_kind_merged_over_runs(tmp_path):
    store = "npu_harness.dut.core.store_unit.requant"
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    _write(a, [(_point("npu.core.store_unit", store, 10), 0),
               (_point("npu.core.store_unit", store, 11), 3),
               (_point("npu.csr", "npu_harness.dut.csr", 5, kind="v_toggle"), 0),
               (_point("npu.csr", "npu_harness.dut.csr", 6, kind="v_branch"), 1)])
    # A second run of the same design (built in another folder, for the other harness)
    # hits line 10: merged, it counts as hit.
    _write(b, [(_point("npu.core.store_unit", "TOP." + store, 10, folder="/c/rtl"), 2),
               (_point("npu_harness", "npu_harness.ram", 3), 0)])
    cov, counts = coverage.parse([a, b])
    assert cov.points[("line", "npu.core.store_unit")] == [2, 2]
    assert cov.points[("toggle", "npu.csr")] == [1, 0]
    assert cov.points[("branch", "npu.csr")] == [1, 1]
    assert cov.points[("line", "npu_harness.ram")] == [1, 0]
    assert cov.kinds() == {"line": (3, 2), "toggle": (1, 0), "branch": (1, 1)}
    assert cov.percent("line") == pytest.approx(200 / 3)
    # Merged counts are keyed by the file's name, not its folder.
    assert counts[_point("npu.core.store_unit", store, 10).replace("/b/npu.v", "npu.v")] == 2
    cov1, _ = coverage.parse([a, b], depth=1)
    assert cov1.points[("line", "npu")] == [2, 2]
    text = coverage.report({"tiny": cov})
    assert "npu.core.store_unit" in text and "total" in text
    merged = tmp_path / "m.dat"
    coverage.write_dat(counts, merged)
    again, _ = coverage.parse([merged])
    assert dict(again.points) == dict(cov.points)


def test_a_file_that_is_not_coverage_is_refused(tmp_path):
    bad = tmp_path / "x.dat"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match="not a Verilator coverage file"):
        coverage.parse([bad])


def test_cli_help_and_a_report_without_a_run(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sim.coverage", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--no-run" in out.stdout
    out = subprocess.run([sys.executable, "-m", "sim.coverage", "--no-run", "-o", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no coverage run recorded" in out.stderr
