"""The DMA engines alone in Verilator, against cocotbext-axi's AxiRam with back-pressure."""
import hashlib
import os
import pathlib

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AXI4Signature
from hw.axi import join_channels
from hw.dma import DMAReader, DMAWriter
from sim.rtl import SIM_ROOT
from toolchain import setup_verilator

MAXB = 12


class DMABench(wiring.Component):
    """A DMAReader and a DMAWriter on one 32-bit AXI4 port (bursts of at most 2 beats)."""

    def __init__(self):
        super().__init__({
            "m_axi": Out(AXI4Signature(data_width=32, id_width=2)),
            "lo": In(32), "hi": In(32), "halt": In(1),
            "rd_req_valid": In(1), "rd_req_ready": Out(1), "rd_req_addr": In(32),
            "rd_req_nbytes": In(4), "rd_req_tag": In(8),
            "rd_resp_valid": Out(1), "rd_resp_ready": In(1), "rd_resp_data": Out(8 * MAXB),
            "rd_resp_tag": Out(8), "rd_error": Out(1), "rd_error_tag": Out(8),
            "rd_bus_error": Out(1),
            "wr_req_valid": In(1), "wr_req_ready": Out(1), "wr_req_addr": In(32),
            "wr_req_nbytes": In(4), "wr_req_data": In(8 * MAXB), "wr_req_tag": In(8),
            "wr_error": Out(1), "wr_error_tag": Out(8), "wr_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rd = rd = DMAReader(data_width=32, max_bytes=MAXB, burst_len=2, tag_width=8)
        m.submodules.wr = wr = DMAWriter(data_width=32, max_bytes=MAXB, burst_len=2, tag_width=8)
        axi = self.m_axi
        m.d.comb += [
            rd.lo.eq(self.lo), rd.hi.eq(self.hi), wr.lo.eq(self.lo), wr.hi.eq(self.hi),
            rd.halt.eq(self.halt), wr.halt.eq(self.halt),
            rd.req_valid.eq(self.rd_req_valid), self.rd_req_ready.eq(rd.req_ready),
            rd.req_addr.eq(self.rd_req_addr), rd.req_nbytes.eq(self.rd_req_nbytes),
            rd.req_tag.eq(self.rd_req_tag),
            self.rd_resp_valid.eq(rd.resp_valid), rd.resp_ready.eq(self.rd_resp_ready),
            self.rd_resp_data.eq(rd.resp_data), self.rd_resp_tag.eq(rd.resp_tag),
            self.rd_error.eq(rd.error), self.rd_error_tag.eq(rd.error_tag),
            self.rd_bus_error.eq(rd.bus_error),
            wr.req_valid.eq(self.wr_req_valid), self.wr_req_ready.eq(wr.req_ready),
            wr.req_addr.eq(self.wr_req_addr), wr.req_nbytes.eq(self.wr_req_nbytes),
            wr.req_data.eq(self.wr_req_data), wr.req_tag.eq(self.wr_req_tag),
            self.wr_error.eq(wr.error), self.wr_error_tag.eq(wr.error_tag),
            self.wr_idle.eq(wr.idle),
        ]
        join_channels(m, axi, rd.axi, beat_bytes=4)
        join_channels(m, axi, wr.axi, beat_bytes=4)
        return m


@pytest.fixture(scope="module")
def dma_build():
    from cocotb_tools.runner import get_runner
    text = verilog.convert(DMABench(), name="dma_bench", emit_src=False)
    digest = hashlib.sha256((text + pathlib.Path(__file__).with_name("cocotb_dma.py")
                             .read_text()).encode()).hexdigest()[:12]
    build_dir = SIM_ROOT / f"dma_bench_{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "dma_bench.v").write_text(text)
    setup_verilator()
    runner = get_runner("verilator")
    runner.build(sources=[build_dir / "dma_bench.v"], hdl_toplevel="dma_bench",
                 build_dir=build_dir, build_args=["-Wno-fatal", "-Wno-WIDTHEXPAND",
                                                  "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE"],
                 timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    return runner, build_dir


@pytest.mark.parametrize("case", ["reads_match_memory", "writes_land_with_strobes",
                                  "window_violations_stop_before_the_bus"])
def test_dma_against_axi_ram(dma_build, case, tmp_path):
    from cocotb_tools.runner import get_results
    runner, build_dir = dma_build
    repo = str(pathlib.Path(__file__).resolve().parents[2])
    xml = runner.test(test_module="tests.sim.cocotb_dma", hdl_toplevel="dma_bench",
                      hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=tmp_path,
                      testcase=case, log_file=tmp_path / "sim.log",
                      extra_env={"PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])})
    total, failed = get_results(xml)
    log = (tmp_path / "sim.log").read_text()
    assert total == 1 and failed == 0, log[-3000:]
