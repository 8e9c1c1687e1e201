"""cocotb side of :mod:`sim.rtl`: runs the jobs listed in ``$NPU_JOBS`` on the harness.

For each job: reset, put the DRAM image in the chosen memory model, run the
program with the driver (:mod:`hw.driver`: CSRs over AXI4-Lite, START, poll for
DONE or ERROR or the cycle limit, read every CSR), and dump the DRAM. The checks are made by the caller, against the
functional model and the golden.
"""

import json
import os
import pathlib
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from hw.driver import execute_async
from hw.driver import run as driver_run

CLOCK_NS = 10
PROGRESS_CYCLES = 500_000


def _write_hex(path, image: np.ndarray, beat_bytes: int) -> None:
    words = image.reshape(-1, beat_bytes)[:, ::-1]          # text is most significant first
    text = words.tobytes().hex()
    width = 2 * beat_bytes
    lines = [text[i:i + width] for i in range(0, len(text), width)]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def _read_hex(path, nwords: int, beat_bytes: int) -> np.ndarray:
    words = []
    for line in pathlib.Path(path).read_text().split():
        if line.startswith("@") or line.startswith("//"):
            continue
        words.append(line)
    blob = bytes.fromhex("".join(w.rjust(2 * beat_bytes, "0") for w in words[:nwords]))
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, beat_bytes)[:, ::-1].reshape(-1).copy()


class _Pause:
    """Random back-pressure: stall about a third of the cycles, in bursts."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def __iter__(self):
        while True:
            if self.rng.random() < 0.3:
                for _ in range(self.rng.randint(1, 4)):
                    yield 1
            else:
                yield 0


class _CocotbBus:
    """The register bus of :mod:`hw.driver` on the harness: cocotbext-axi's AXI4-Lite
    master for the CSRs, the done and error ports to wait on (so that nothing in
    Python runs per cycle while the NPU works)."""

    def __init__(self, dut, csr) -> None:
        self.dut = dut
        self.csr = csr

    async def read32(self, offset: int) -> int:
        resp = await self.csr.read(offset, 4)
        return int.from_bytes(resp.data, "little")

    async def write32(self, offset: int, value: int) -> None:
        await self.csr.write(offset, int(value).to_bytes(4, "little"))

    async def wait(self, cycles: int) -> None:
        dut = self.dut
        if not (dut.done.value or dut.error.value):
            await First(RisingEdge(dut.done), RisingEdge(dut.error),
                        Timer(cycles * CLOCK_NS, unit="ns"))


async def _reset(dut):
    dut.rst.value = 1
    dut.mem_load.value = 0
    dut.mem_dump.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 1)


@cocotb.test()
async def run_jobs(dut):
    from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

    specs = json.loads(pathlib.Path(os.environ["NPU_JOBS"]).read_text())
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.use_ext.value = 0
    dut.dump_lo.value = 0
    dut.dump_hi.value = 0
    await _reset(dut)
    csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    bus = _CocotbBus(dut, csr)
    # One AXI RAM model for the whole run: a second one would drive the same wires.
    ram = None
    axi_bytes = max([s["dram_bytes"] for s in specs if s["memory"] == "axi"], default=0)
    if axi_bytes:
        ram = AxiRam(AxiBus.from_prefix(dut, "ext_axi"), dut.clk, dut.rst,
                     size=max(axi_bytes, 4096))
    progress_path = os.environ.get("NPU_PROGRESS")
    for index, spec in enumerate(specs):
        t0 = time.perf_counter()
        B = spec["beat_bytes"]
        image = np.fromfile(spec["dram_in"], dtype=np.uint8)
        nwords = len(image) // B
        use_axi = spec["memory"] == "axi"
        dut.use_ext.value = 1 if use_axi else 0
        await _reset(dut)
        if use_axi:
            ram.write(0, image.tobytes())
            channels = [ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                        ram.read_if.ar_channel, ram.read_if.r_channel]
            for k, channel in enumerate(channels):
                if spec["backpressure"]:
                    channel.set_pause_generator(_Pause(spec["seed"] * 8 + k))
                else:
                    channel.clear_pause_generator()
        else:
            _write_hex(_plusarg("DRAM_IN"), image, B)
            dut.mem_load.value = 1
            await RisingEdge(dut.clk)
            dut.mem_load.value = 0
            await RisingEdge(dut.clk)

        t_run = time.perf_counter()

        def report(cycles, index=index, t_run=t_run):
            if progress_path:
                pathlib.Path(progress_path).write_text(json.dumps(
                    {"job": index, "jobs": len(specs), "cycles": cycles,
                     "seconds": time.perf_counter() - t_run}))
        result = await execute_async(
            driver_run(spec["insn_base"], spec["insn_count"], tuple(spec["window"]),
                       max_cycles=spec["max_cycles"], poll_cycles=PROGRESS_CYCLES,
                       progress=report), bus)
        run_wall = time.perf_counter() - t_run
        regs = result.registers

        if use_axi:
            out = np.frombuffer(ram.read(0, len(image)), dtype=np.uint8).copy()
        else:
            dut.dump_lo.value = 0
            dut.dump_hi.value = nwords - 1
            dut.mem_dump.value = 1
            await RisingEdge(dut.clk)
            dut.mem_dump.value = 0
            await RisingEdge(dut.clk)
            out = _read_hex(_plusarg("DRAM_OUT"), nwords, B)
        out.tofile(spec["dram_out"])
        record = {
            "status": result.status, "error_code": regs["ERROR_CODE"], "error_index": regs["ERROR_INDEX"],
            "csr": regs, "wall_seconds": time.perf_counter() - t0, "run_wall_seconds": run_wall,
        }
        pathlib.Path(spec["result"]).write_text(json.dumps(record))


def _plusarg(name):
    value = cocotb.plusargs.get(name)
    if not value:
        raise RuntimeError(f"plusarg +{name}= not given")
    return value
