"""The C++ harness as a register bus and a RAM (sim.rtl.HarnessSession), driven by hw.driver."""
import numpy as np
import pytest

from hw import NPUConfig, driver
from hw.csr import NPU_ID
from hw.isa import ErrorCode
from sim.rtl import FastRTLSimulator

from .programs import gemm_case

TINY = NPUConfig.preset("tiny")


@pytest.fixture(scope="module")
def session():
    with FastRTLSimulator(TINY).session() as bus:
        yield bus


def test_identify_and_ram(session):
    regs = driver.execute(driver.check_instance(TINY.hash), session)
    assert regs["ID"] == NPU_ID and regs["SHAPE"] & 0xFF == TINY.rows
    data = np.arange(37, dtype=np.uint8)
    session.load(1001, data)                   # any byte address, any length
    assert np.array_equal(session.dump(1001, 37), data)
    assert session.dump(1000, 1)[0] == 0
    with pytest.raises(RuntimeError, match="outside the RAM of"):
        session.load(session.ram_bytes - 4, data)


def test_a_program_runs_and_keeps_its_ram(session):
    case = gemm_case(TINY, 3, (10, 12, 9))
    session.reset()
    session.clear()
    session.load(0, case.dram)
    for _ in range(2):     # the second run finds the same image in place
        r = driver.execute(driver.run(case.insn_base, case.insn_count, (0, len(case.dram)),
                                      max_cycles=10**6), session)
        assert r.status == "done" and r.error is ErrorCode.NONE
        assert np.array_equal(session.dump(0, len(case.expect_dram)), case.expect_dram)
        assert r.counters["MACS"] == case.counts.macs
        # Every counted cycle belongs to a layer.
        assert sum(session.layer_cycles().values()) == r.counters["CYCLES"]
    r = driver.execute(driver.run(case.insn_base, case.insn_count, (0, 16),
                                  max_cycles=10**6), session)
    assert r.status == "error" and r.error is ErrorCode.DMA_WINDOW
