"""The bitstream flow (fpga.build): every board elaborates, one real iCEBreaker build with
its report, designs that do not fit or miss timing, and flashing (dry run, a fake
programmer, a programmer that finds no board)."""

import dataclasses
import json
import os
import stat

import pytest
from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth_boards.icebreaker import ICEBreakerPlatform

from fpga import build as fb
from fpga.boards import BOARDS, BoardError, get_board
from fpga.dfu import dfu_suffix, has_suffix
from hw import NPUConfig
from hw.config import ConfigError

#: The iCEBreaker's configuration (what `--board icebreaker` builds with its fields changed).
SMALL = BOARDS["icebreaker"].config


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_elaborates_its_soc(name):
    board = get_board(name)
    platform, plan, top = fb.prepare(board)
    assert top == fb.design_name("soc", board.config, board.mac)
    assert top.startswith(f"soc_{board.config.rows}x{board.config.cols}_{board.config.hash:08x}")
    files = plan.files
    assert f"{top}.il" in files and f"{plan.script}.sh" in files
    constraints = next(text for path, text in files.items() if path.endswith((".pcf", ".lpf")))
    constraints = constraints.decode() if isinstance(constraints, bytes) else constraints
    assert "uart" in constraints   # the UART's pins are constrained
    script = files[f"{plan.script}.sh"]
    assert ("nextpnr-ice40" if board.family == "ice40" else "nextpnr-ecp5").upper().replace(
        "-", "_") in (script.decode() if isinstance(script, bytes) else script)


def test_boards_by_name_from_amaranth_boards():
    board = get_board("ULX3S_45F")
    assert board.device == "LFE5U-45F" and board.family == "ecp5" and board.config is None
    with pytest.raises(ConfigError, match="no NPU configuration of its own"):
        fb.prepare(board)
    _, _, top = fb.prepare(board, NPUConfig.preset("tiny"))
    assert top.startswith("soc_4x4_")
    assert get_board("ICE40UP5KBEVN").family == "ice40"
    with pytest.raises(BoardError, match="unknown board 'nope'"):
        get_board("nope")
    with pytest.raises(BoardError, match="unknown board"):
        get_board("arty_a7")   # a Xilinx board: no flow for its family


def test_cli_lists_boards_and_dry_runs(capsys, tmp_path):
    assert fb.main(["--list-boards"]) == 0
    listing = capsys.readouterr().out
    assert "icebreaker" in listing and "ulx3s-85f" in listing and "VersaECP5Platform" in listing
    assert fb.main(["--board", "ulx3s-85f", "--dry-run", "--program", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    config = BOARDS["ulx3s-85f"].config
    name = f"soc_8x8_{config.hash:08x}"
    assert '"$NEXTPNR_ECP5"' in out and '"$ECPPACK"' in out
    assert f"openFPGALoader -b ulx3s -m {tmp_path / name}.bit" in out.splitlines()[-1]
    assert not any(tmp_path.iterdir())   # a dry run runs and writes nothing
    # Configuration fields alone change the board's configuration.
    assert fb.main(["--board", "icebreaker", "--dry-run", "--program", "--cols", "2"]) == 0
    assert f"_2x2_{SMALL.replace(cols=2).hash:08x}_ice40_dual.bin" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        fb.main(["--board", "versa_ecp5"])   # no configuration of its own
    assert "no NPU configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fb.main(["--board", "icebreaker", "--rows", "1"])
    assert "rows" in capsys.readouterr().err


ARRAY4 = SMALL.replace(rows=4)


@pytest.fixture(scope="module")
def icebreaker_array(tmp_path_factory):
    """A real iCEBreaker bitstream: the 4x4 array, 16 int8 MACs a cycle on the UP5K's eight
    SB_MAC16 (the board's ice40_dual: two products each)."""
    out = tmp_path_factory.mktemp("icebreaker")
    lines = []
    result = fb.build(BOARDS["icebreaker"], ARRAY4, out, design="array", progress=lines.append)
    return out, result, lines


def test_a_real_icebreaker_build_and_its_report(icebreaker_array):
    out, result, lines = icebreaker_array
    assert not result.cached
    assert result.bitstream == out / f"array_4x4_{ARRAY4.hash:08x}_ice40_dual.bin"
    # The iCE40 bitstream: a preamble 0x7EAA997E after the comment, tens of KiB.
    data = result.bitstream.read_bytes()
    assert b"\x7e\xaa\x99\x7e" in data[:64] and len(data) > 100_000
    report = json.loads((out / "report.json").read_text())
    assert report == result.report
    res = report["resources"]
    assert res["dsp"] == [8, 8]   # two products per SB_MAC16
    assert report["mac"]["kind"] == "ice40_dual"
    assert 0 < res["logic_cells"][0] < res["logic_cells"][1] == 5280
    assert 0 < res["lut"][0] <= res["logic_cells"][0] and res["ff"][0] > 0
    assert report["clock_mhz"] == 12.0 and report["fmax_mhz"] > 12.0
    assert report["config_hash"] == f"0x{ARRAY4.hash:08x}"
    assert any("nextpnr: Routing" in line for line in lines)   # progress was shown
    # Unchanged sources, board and configuration: not built again.
    again = fb.build(BOARDS["icebreaker"], ARRAY4, out, design="array", progress=None)
    assert again.cached and again.report == report


def _fake_programmer(tmp_path, name, code=0):
    log = tmp_path / f"{name}.args"
    tool = tmp_path / name
    tool.write_text(f"#!/bin/sh\necho \"$@\" > {log}\n"
                    + ("echo 'Can not find iCE FTDI USB device' >&2\n" if code else "")
                    + f"exit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return log


def test_program_with_a_fake_programmer(icebreaker_array, tmp_path, monkeypatch, capsys):
    out, result, _ = icebreaker_array
    log = _fake_programmer(tmp_path, "iceprog")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    argv = ["--board", "icebreaker", "--design", "array", "--rows", "4", "--cols", "4",
            "-o", str(out), "--program"]
    assert fb.main(argv) == 0
    printed = capsys.readouterr().out
    assert "up to date" in printed and "flashed" in printed and "dsp" in printed
    assert log.read_text().split() == [str(result.bitstream)]
    # A programmer that finds no board: a clear error, exit status 1.
    _fake_programmer(tmp_path, "failing", code=2)
    monkeypatch.setenv("ICEPROG", str(tmp_path / "failing"))
    assert fb.main(argv) == 1
    err = capsys.readouterr().err
    assert "failed (exit 2)" in err and "attached" in err and "FTDI" in err
    monkeypatch.setenv("ICEPROG", "no-such-iceprog")
    with pytest.raises(fb.ProgramError, match="no-such-iceprog is not on PATH.*ICEPROG"):
        fb.program(BOARDS["icebreaker"], result.bitstream)


def test_a_design_that_does_not_fit_names_the_resource(tmp_path):
    # A 4x4 array with one product per SB_MAC16 (generic) wants 16; the UP5K has 8.
    with pytest.raises(fb.FitError, match="does not fit the iCE40UP5K: dsp 16 of 8") as info:
        fb.build(BOARDS["icebreaker"], ARRAY4, tmp_path, design="array", mac="generic",
                 progress=None)
    assert info.value.over == {"dsp": (16, 8)}


class _FastICEBreaker(ICEBreakerPlatform):
    resources = [Resource("clk12", 0, Pins("35", dir="i"), Clock(300e6),
                          Attrs(GLOBAL=True, IO_STANDARD="SB_LVCMOS")),
                 *[r for r in ICEBreakerPlatform.resources if r.name != "clk12"]]


def test_a_design_below_the_clock_is_a_timing_error(tmp_path):
    board = dataclasses.replace(BOARDS["icebreaker"], name="fast-icebreaker",
                                platform=_FastICEBreaker)
    with pytest.raises(fb.TimingError, match=r"reaches \d+\.\d MHz, below its 300\.0 MHz"):
        fb.build(board, SMALL, tmp_path, design="array", progress=None)
    assert json.loads((tmp_path / "report.json").read_text())["fmax_mhz"] < 300


def test_dfu_suffix():
    data = bytes(range(256)) * 3
    suffixed = dfu_suffix(data, vendor=0x1209, product=0x5AF0)
    assert suffixed[:len(data)] == data and len(suffixed) == len(data) + 16
    assert suffixed[len(data):len(data) + 12] == bytes.fromhex("fffff05a0912000155464410")
    assert has_suffix(suffixed) and not has_suffix(data)
    damaged = bytearray(suffixed)
    damaged[5] ^= 1
    assert not has_suffix(bytes(damaged))
    with pytest.raises(ValueError, match="vendor id"):
        dfu_suffix(data, vendor=0x10000, product=1)


def test_sw_run_takes_a_board(capsys):
    from sw import run

    with pytest.raises(SystemExit):
        run.main(["lenet5", "--board", "nope"])
    assert "unknown board 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["lenet5", "--board", "icebreaker", "--backend", "func"])
    assert "--board goes with --backend board" in capsys.readouterr().err
    # The board's configuration is used; without a port the board backend says so.
    assert run.main(["lenet5", "--board", "ulx3s-85f"]) == 1
    captured = capsys.readouterr()
    assert f"hash {BOARDS['ulx3s-85f'].config.hash:08x}" in captured.out
    assert "needs port=" in captured.err


@pytest.mark.parametrize("fin,fout", [(48, 24), (25, 40), (48, 36), (25, 62.5)])
def test_ecp5_pll_matches_trellis_ecppll(tmp_path, fin, fout):
    import re
    import subprocess

    from toolchain import find_tool

    from fpga.clock import ecp5_pll_params

    verilog = tmp_path / "pll.v"
    subprocess.run([find_tool("ecppll"), "-i", str(fin), "-o", str(fout), "-f", "pll.v"],
                   check=True, capture_output=True, cwd=tmp_path)   # YoWASP sees only its cwd
    theirs = {k: int(v) for k, v in re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV|CLKOP_CPHASE)"
                                               r"\((\d+)\)", verilog.read_text())}
    ours = ecp5_pll_params(fin, fout)
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["out_mhz"] == pytest.approx(fin / ours["CLKI_DIV"] * ours["CLKFB_DIV"])
    with pytest.raises(ValueError, match="gives 3.125 to 400 MHz out, not 25 -> 500 MHz"):
        ecp5_pll_params(25, 500)


def test_a_board_with_a_pll_elaborates_it():
    board = BOARDS["orangecrab-r0.2"]
    assert board.sys_clk_hz == 24e6 and board.clk_hz == 48e6
    _, plan, _ = fb.prepare(board)
    rtlil = next(text for path, text in plan.files.items() if path.endswith(".il"))
    assert "EHXPLLL" in (rtlil.decode() if isinstance(rtlil, bytes) else rtlil)
