"""hw.driver against a fake register bus: the exact sequence, the error path, the counters."""
import asyncio

import pytest

from hw.csr import COUNTERS, NPU_ID, REGISTERS
from hw.driver import (DriverError, check_instance, execute, execute_async, read_registers, run)
from hw.isa import ErrorCode

NAME = {r.offset: r.name for r in REGISTERS}


class FakeNPU:
    """A register file that stops ``busy_waits`` waits after START, as told."""

    def __init__(self, *, busy_waits=2, error=None, config_hash=0x1234ABCD):
        self.log = []
        self.busy_waits = busy_waits
        self.error = error
        self.regs = {r.name: 0 for r in REGISTERS}
        self.regs.update(ID=NPU_ID, CONFIG_HASH=config_hash)
        for i, (name, _) in enumerate(COUNTERS):
            value = (i + 1) << 32 | (0x100 + i)       # both halves non-zero
            self.regs[f"{name}_LO"], self.regs[f"{name}_HI"] = value & 0xFFFFFFFF, value >> 32
        self.waits_left = None

    def read32(self, offset):
        self.log.append(("r", NAME[offset]))
        return self.regs[NAME[offset]]

    def write32(self, offset, value):
        self.log.append(("w", NAME[offset], value))
        self.regs[NAME[offset]] = value
        if NAME[offset] == "CTRL" and value & 1:
            self.regs["STATUS"] = 1            # BUSY
            self.waits_left = self.busy_waits

    def wait(self, cycles):
        self.log.append(("wait", cycles))
        self.waits_left -= 1
        if self.waits_left == 0:
            if self.error is None:
                self.regs["STATUS"] = 2        # DONE
            else:
                self.regs.update(STATUS=4, ERROR_CODE=self.error.value, ERROR_INDEX=7)


def test_run_sequence_is_exact():
    npu = FakeNPU(busy_waits=2)
    result = execute(run(0x40, 5, (0, 0x1000), max_cycles=10**6, poll_cycles=1000), npu)
    every = [("r", r.name) for r in REGISTERS]
    assert npu.log == [
        ("w", "INSN_BASE", 0x40), ("w", "INSN_COUNT", 5), ("w", "WINDOW_BASE", 0),
        ("w", "WINDOW_LIMIT", 0x1000), ("w", "CTRL", 1),
        ("r", "STATUS"), ("wait", 1000), ("r", "STATUS"), ("wait", 1000), ("r", "STATUS"),
        *every]
    assert result.status == "done" and result.error is ErrorCode.NONE
    # Counters joined from their _LO/_HI pairs; no pair left behind.
    for i, (name, _) in enumerate(COUNTERS):
        assert result.counters[name] == (i + 1) << 32 | (0x100 + i)
        assert f"{name}_LO" not in result.registers and f"{name}_HI" not in result.registers
    assert result.registers["CONFIG_HASH"] == 0x1234ABCD


def test_error_path_reports_code_and_index():
    npu = FakeNPU(busy_waits=1, error=ErrorCode.DMA_WINDOW)
    result = execute(run(0, 3, (0, 64), max_cycles=100, poll_cycles=100), npu)
    assert result.status == "error"
    assert result.error is ErrorCode.DMA_WINDOW and result.error_index == 7


def test_progress_only_while_running():
    seen = []
    execute(run(0, 3, (0, 64), max_cycles=10**6, poll_cycles=100, progress=seen.append),
            FakeNPU(busy_waits=3))
    assert seen == [100, 200]          # not after the wait in which the NPU stopped


def test_timeout_after_max_cycles_and_progress():
    npu = FakeNPU(busy_waits=100)
    seen = []
    result = execute(run(0, 3, (0, 64), max_cycles=2500, poll_cycles=1000,
                         progress=seen.append), npu)
    assert result.status == "timeout"
    assert [op for op in npu.log if op[0] == "wait"] == [("wait", 1000), ("wait", 1000),
                                                          ("wait", 500)]
    assert seen == [1000, 2000, 2500]


def test_bad_fields_are_refused():
    with pytest.raises(ValueError, match="insn_count -1 does not fit"):
        execute(run(0, -1, (0, 64), max_cycles=10), FakeNPU())
    with pytest.raises(ValueError, match="max_cycles and poll_cycles must be positive"):
        execute(run(0, 1, (0, 64), max_cycles=0), FakeNPU())


def test_check_instance():
    assert execute(check_instance(0x1234ABCD), FakeNPU())["ID"] == NPU_ID
    with pytest.raises(DriverError, match="configuration hash 1234abcd, the program needs "
                                          "00000001"):
        execute(check_instance(1), FakeNPU())
    npu = FakeNPU()
    npu.regs["ID"] = 0
    with pytest.raises(DriverError, match="no NPU on this bus"):
        execute(check_instance(0x1234ABCD), npu)


class AsyncBus:
    def __init__(self, npu):
        self.npu = npu

    async def read32(self, offset):
        await asyncio.sleep(0)
        return self.npu.read32(offset)

    async def write32(self, offset, value):
        self.npu.write32(offset, value)

    async def wait(self, cycles):
        self.npu.wait(cycles)


def test_async_bus_runs_the_same_sequence():
    sync, other = FakeNPU(busy_waits=3), FakeNPU(busy_waits=3)
    a = execute(run(16, 2, (0, 256), max_cycles=10**4, poll_cycles=10), sync)
    b = asyncio.run(execute_async(run(16, 2, (0, 256), max_cycles=10**4, poll_cycles=10),
                                  AsyncBus(other)))
    assert a == b and sync.log == other.log
    assert asyncio.run(execute_async(read_registers(), AsyncBus(FakeNPU())))["ID"] == NPU_ID
