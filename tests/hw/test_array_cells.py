"""The systolic array with hand-instantiated FPGA cells (``mac="ice40_dual"``: two 8x8
products per ``SB_MAC16``), simulated in Verilator with the cell's model from Yosys's
iCE40 library (``share/ice40/cells_sim.v``), cycle by cycle against the generic array in
the Amaranth simulator and against numpy. Builds are cached under build/array_cells
(keyed by a digest of the Verilog), a few seconds each when new.
"""
import hashlib
import os
import pathlib
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.array import MacOptions, SystolicArray
from toolchain import cell_model, setup_verilator

BUILD_ROOT = pathlib.Path(__file__).resolve().parents[2] / "build" / "array_cells"

# A Verilog bench: one stimulus word per cycle, applied at the falling edge after the
# outputs (all registered) are written out; a C++ main toggles the clock.
TB = """
module tb(input clk);
  parameter R = 2, C = 2, CW = 1;
  localparam SW = 2 + 8 * R + 2 + CW + 8 * R;
  reg rst = 1;
  reg a_valid = 0, a_sel = 0, w_en = 0, w_buf = 0;
  reg [8*R-1:0] a = 0, w_data = 0;
  reg [CW-1:0] w_col = 0;
  wire out_valid;
  wire [32*C-1:0] out;
  array dut(.clk(clk), .rst(rst), .a_valid(a_valid), .a(a), .a_sel(a_sel), .w_en(w_en),
            .w_buf(w_buf), .w_col(w_col), .w_data(w_data), .out_valid(out_valid), .out(out));
  reg [SW-1:0] stim [0:65535];
  integer n, t = 0, f;
  reg [1023:0] stim_path, out_path;
  initial begin
    if (!$value$plusargs("stim=%s", stim_path) || !$value$plusargs("out=%s", out_path)
        || !$value$plusargs("cycles=%d", n)) $fatal(1, "need +stim= +out= +cycles=");
    $readmemh(stim_path, stim, 0, n - 1);
    f = $fopen(out_path, "w");
  end
  always @(negedge clk) begin
    if (rst) rst = 0;
    else if (t == n) begin $fclose(f); $finish; end
    else begin
      $fwrite(f, "%h %h\\n", out_valid, out);
      {a_valid, a_sel, a, w_en, w_buf, w_col, w_data} = stim[t];
      t = t + 1;
    end
  end
endmodule
"""

MAIN = """
#include "Vtb.h"
#include "verilated.h"
int main(int argc, char** argv) {
  VerilatedContext ctx;
  ctx.commandArgs(argc, argv);
  Vtb top{&ctx};
  top.clk = 0;
  top.eval();
  while (!ctx.gotFinish()) { top.clk = !top.clk; top.eval(); }
  top.final();
  return 0;
}
"""


def _build(rows, cols, mac):
    dut = SystolicArray(rows=rows, cols=cols, mac=mac)
    text = verilog.convert(dut, name="array", emit_src=False)
    cw = max(1, (cols - 1).bit_length())
    cells = cell_model("ice40", "SB_MAC16")
    key = hashlib.sha256((text + TB + MAIN + cells + f"{rows} {cols} {cw}").encode()).hexdigest()[:12]
    folder = BUILD_ROOT / f"{rows}x{cols}_{key}"
    binary = folder / "obj" / "Vtb"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, body in (("array.v", text), ("tb.sv", TB), ("SB_MAC16.v", cells),
                           ("main.cpp", MAIN)):
            (folder / name).write_text(body)
        env = setup_verilator(dict(os.environ))
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "--prefix", "Vtb", "--top-module", "tb", "-Mdir", "obj",
               f"-GR={rows}", f"-GC={cols}", f"-GCW={cw}", "-Wno-fatal", "-Wno-WIDTHEXPAND",
               "-Wno-WIDTHTRUNC", "-Wno-TIMESCALEMOD", "tb.sv", "array.v", "SB_MAC16.v", "main.cpp"]
        run = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
    return dut, binary, cw


def _stimulus(rows, cols, rng, n):
    """Cycle by cycle: both weight buffers loaded, then ``n`` vectors with gaps and buffer
    switches, then idle cycles to drain."""
    tiles = [rng.integers(-128, 128, (rows, cols)) for _ in range(2)]
    tiles[1][0] = -128
    vectors = rng.integers(-128, 128, (n, rows))
    vectors[0], vectors[1] = -128, 127
    sels = (np.arange(n) // 3) % 2
    cycles = []
    for b, tile in enumerate(tiles):
        for c in range(cols):
            cycles.append({"w_en": 1, "w_buf": b, "w_col": c, "w_data": tile[:, c]})
    for i in range(n):
        if i % 4 == 3:
            cycles.append({"a": rng.integers(-128, 128, rows)})   # garbage, not valid
        cycles.append({"a_valid": 1, "a_sel": sels[i], "a": vectors[i]})
    cycles += [{}] * (rows + cols + 2)
    return tiles, vectors, sels, cycles


def _bytes(values, rows):
    return sum((int(v) & 0xFF) << (8 * r) for r, v in enumerate(values)) if values is not None else 0


def _run_verilator(binary, folder, rows, cols, cw, cycles):
    lines = []
    for cyc in cycles:
        word = 0
        for name, width in (("a_valid", 1), ("a_sel", 1), ("a", 8 * rows), ("w_en", 1),
                            ("w_buf", 1), ("w_col", cw), ("w_data", 8 * rows)):
            value = cyc.get(name)
            value = _bytes(value, rows) if name in ("a", "w_data") else int(value or 0)
            word = (word << width) | value
        lines.append(f"{word:x}")
    stim = folder / "stim.hex"
    out = folder / "out.txt"
    stim.write_text("\n".join(lines) + "\n")
    run = subprocess.run([str(binary), f"+stim={stim}", f"+out={out}", f"+cycles={len(cycles)}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    trace = []
    for line in out.read_text().split():
        trace.append(line)
    rows_out = []
    for valid, word in zip(trace[0::2], trace[1::2]):
        value = int(word, 16)
        outs = [((value >> (32 * c)) & 0xFFFFFFFF) for c in range(cols)]
        rows_out.append((int(valid, 16), [v - (1 << 32) if v >> 31 else v for v in outs]))
    return rows_out


def _run_amaranth(rows, cols, cycles):
    """The generic array, same stimulus, in the Amaranth simulator."""
    dut = SystolicArray(rows=rows, cols=cols)
    trace = []

    async def bench(ctx):
        for cyc in cycles:
            trace.append((ctx.get(dut.out_valid), [ctx.get(dut.out[c]) for c in range(cols)]))
            for name in ("a_valid", "a_sel", "w_en", "w_buf", "w_col"):
                ctx.set(getattr(dut, name), int(cyc.get(name, 0)))
            for name in ("a", "w_data"):
                values = cyc.get(name)
                for r in range(rows):
                    ctx.set(getattr(dut, name)[r], int(values[r]) if values is not None else 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return trace


@pytest.mark.parametrize("rows, cols, mac", [
    (4, 4, "ice40_dual"),                                      # 16 products on 8 SB_MAC16
    (4, 4, "ice40_dual_pipelined"),                            # their product registers on
    (3, 5, MacOptions(kind="ice40_dual", dsp_products=7)),     # a half-used cell, 8 in logic
    (4, 2, MacOptions(kind="ice40_dual", operand_register=True, product_register=True)),
])
def test_ice40_dual_in_the_cell_model_equals_generic_and_numpy(rows, cols, mac):
    dut, binary, cw = _build(rows, cols, mac)
    rng = np.random.default_rng(rows * 100 + cols)
    n = 4 * (rows + cols)
    tiles, vectors, sels, cycles = _stimulus(rows, cols, rng, n)
    got = _run_verilator(binary, binary.parent.parent, rows, cols, cw, cycles)
    outs = np.array([o for v, o in got if v])
    expect = np.array([vectors[i] @ tiles[sels[i]] for i in range(n)])
    assert np.array_equal(outs, expect)
    # Cycle by cycle against the generic array, which is one cycle earlier when this one
    # has a product register.
    generic = _run_amaranth(rows, cols, cycles)
    shift = dut.latency - (rows + cols - 1)
    assert [v for v, _ in got[shift:]] == [v for v, _ in generic[:len(got) - shift]]
    assert [o for v, o in got[shift:] if v] == [o for v, o in generic if v]
    assert dut.dsp_count == (dut.dsp_products + 1) // 2
