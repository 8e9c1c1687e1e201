"""Performance that can fail: exact cycle counts of fixed programs on ``tiny`` and
utilization floors, so a scheduling regression fails ``make test``.

The cycle counts are the RTL's CYCLES counter on the fast memory (no back-pressure, so
every run is the same). When a change alters them on purpose, re-measure and update
them here, saying why in the commit.
"""
import functools

import numpy as np
import pytest
import torch

import sw
from hw import NPUConfig
from hw import isa
from sim.rtl import Job, RTLSimulator
from sw import zoo

from .programs import Builder, alu_case, gemm_case, load_store_case, spad_gemm_case

TINY = NPUConfig.preset("tiny")


def _alu_bank_case(cfg, src_row):
    """Rows 0..15 of the accumulator added to rows src_row.. in one ALU instruction: with
    the banks interleaved by the row's low bit, an odd distance puts the two operands in
    different banks (one row per cycle), an even one in the same bank (two cycles a row)."""
    b = Builder(cfg, size=8192)
    C = cfg.cols
    src = b.data(np.arange(48 * C, dtype=np.uint8))
    b.emit(isa.load(mem="acc", sram=0, dram=src, y_size=48, x_size=1, y_stride=C, length=C,
                    push_next=1))
    b.emit(isa.sync(queue="compute", pop_prev=1))
    b.emit(isa.alu(op="add", dst=0, src=src_row, count=16, dst_stride=1, src_stride=1))
    b.emit(isa.finish())
    return b.case(f"alu_bank_src{src_row}")


def _cases():
    return [
        gemm_case(TINY, 12, (9, 7, 10), m_tile=4, zp=5, clamp=(-20, 100)),
        gemm_case(TINY, 14, (21, 9, 13)),
        gemm_case(TINY, 15, (64, 64, 64)),
        load_store_case(TINY, 21),
        spad_gemm_case(TINY, 31),
        alu_case(TINY, 41),
        _alu_bank_case(TINY, 17),
        _alu_bank_case(TINY, 16),
    ]


#: CYCLES of each case on tiny, fast memory.
EXPECTED_CYCLES = {
    'gemm(9, 7, 10)': 551,      # 547 before a one-row STORE waited for its row in DRAM
    'gemm(21, 9, 13)': 728,
    'gemm(64, 64, 64)': 46997,  # 46996 before the same fix
    'load_store21': 441,
    'spad_gemm31': 265,
    'alu41': 724,               # 658 before the case drew the five new ALU operations too
    'alu_bank_src17': 90,
    'alu_bank_src16': 106,
}


@functools.lru_cache(maxsize=None)
def _results():
    cases = _cases()
    jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, name=c.name) for c in cases]
    results = RTLSimulator(TINY).run(jobs)
    return {c.name: (c, r) for c, r in zip(cases, results)}


@pytest.mark.parametrize("name", list(EXPECTED_CYCLES))
def test_exact_cycles_on_tiny(name):
    case, result = _results()[name]
    assert result.status == "done", result.error
    np.testing.assert_array_equal(result.dram, case.expect_dram)
    assert result.csr["CYCLES"] == EXPECTED_CYCLES[name]


@pytest.mark.parametrize("name", list(EXPECTED_CYCLES))
def test_the_performance_model_predicts_them(name):
    """The program-level model (sw.analysis.perf) gives the same cycles, no RTL run."""
    from sw.analysis import perf
    case = next(c for c in _cases() if c.name == name)
    end = case.insn_base + isa.INSN_BYTES * case.insn_count
    words = isa.bytes_to_words(case.dram[case.insn_base:end].tobytes())
    assert perf.estimate_words(words, TINY).cycles == EXPECTED_CYCLES[name]


@functools.lru_cache(maxsize=None)
def _pipelined_results(mac):
    cases = _cases()
    jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, name=c.name) for c in cases]
    return dict(zip((c.name for c in cases), RTLSimulator(TINY, mac=mac).run(jobs)))


@pytest.mark.parametrize("mac", ["pipelined", "registered"])
def test_the_model_follows_a_pipelined_array(mac):
    """A register after each product (``mac="pipelined"``) adds one cycle to the array's
    latency, operand registers (``"registered"``) one more: the RTL's counts and the
    model's given the same MAC options agree exactly (a few cycles more than the generic
    array's on the GEMMs, none on the rest), and the results are the same bytes."""
    from sw.analysis import perf
    results = _pipelined_results(mac)
    slower = 0
    for case in _cases():
        result = results[case.name]
        assert result.status == "done", result.error
        np.testing.assert_array_equal(result.dram, case.expect_dram)
        end = case.insn_base + isa.INSN_BYTES * case.insn_count
        words = isa.bytes_to_words(case.dram[case.insn_base:end].tobytes())
        cycles = result.csr["CYCLES"]
        assert perf.estimate_words(words, TINY, mac=mac).cycles == cycles, case.name
        assert cycles >= EXPECTED_CYCLES[case.name]
        slower += cycles > EXPECTED_CYCLES[case.name]
    assert slower >= 3     # every case with a GEMM


def test_same_bank_alu_runs_at_half_rate():
    """Each of the 16 rows whose operands share a bank costs exactly one more cycle."""
    odd = _results()["alu_bank_src17"][1].csr["CYCLES"]
    even = _results()["alu_bank_src16"][1].csr["CYCLES"]
    assert even - odd == 16


def test_gemm_utilization_floor():
    """A 64^3 GEMM: MACs over MAC slots of the whole program (34.9 % measured: tiny's
    32-bit bus, not the array, bounds it)."""
    csr = _results()["gemm(64, 64, 64)"][1].csr
    utilization = csr["MACS"] / (csr["CYCLES"] * TINY.macs)
    assert utilization >= 0.345


def test_compiled_model_utilization_floor():
    """A compiled ResNet-8 on tiny, through the runtime: the whole network's utilization
    (convolutions, pooling and residual adds on the ALU, stores)."""
    model, shape = zoo.build("resnet8")
    gen = torch.Generator().manual_seed(3)
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    program = sw.compile(qmodel, TINY)
    device = sw.Device(TINY, backend="rtl")
    x = torch.randn(1, *shape, generator=gen)
    assert torch.equal(device.run(program, x), qmodel(x))
    # 63.9 % measured (1,236,316 cycles).
    assert device.stats["utilization"] >= 0.63


#: The area options of small FPGAs on tiny: the vector ALU's multiplier sequential (2 bits
#: of the source a cycle, 16 cycles a MUL or MULH row), the activation table in block RAM
#: (two entries a cycle) and a requantizer of 2 lanes (two passes a row).
AREA = TINY.replace(alu_mul_bits=2, table_write_bytes=2, requant_lanes=2)


def test_the_model_follows_the_area_options():
    """With the area options the RTL gives the same bytes, and the model its cycles
    exactly: the ALU case (which multiplies) is slower, the others unchanged or a few
    cycles slower (each STORE's first row waits for its second pass)."""
    from sw.analysis import perf
    cases = _cases()
    jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, name=c.name) for c in cases]
    results = RTLSimulator(AREA).run(jobs)
    for case, result in zip(cases, results):
        assert result.status == "done", result.error
        np.testing.assert_array_equal(result.dram, case.expect_dram)
        end = case.insn_base + isa.INSN_BYTES * case.insn_count
        words = isa.bytes_to_words(case.dram[case.insn_base:end].tobytes())
        cycles = result.csr["CYCLES"]
        assert perf.estimate_words(words, AREA).cycles == cycles, case.name
        if case.name == "alu41":
            assert cycles > EXPECTED_CYCLES[case.name] + 50
        else:
            assert EXPECTED_CYCLES[case.name] <= cycles <= EXPECTED_CYCLES[case.name] + 6, case.name


def test_one_requantizer_lane():
    """requant_lanes=1 on tiny: four passes a row, slower than the DMA writer's three
    cycles, so the requantizer sets the pace. The model follows the RTL exactly where the
    store has the accumulator banks to itself; where an accumulating GEMM takes them
    (gemm(21, 9, 13)) each lost read is a lost cycle, which the model does not count: the
    RTL is slower than it (829 against 775 cycles, measured)."""
    from sw.analysis import perf
    cfg = TINY.replace(requant_lanes=1)
    cases = _cases()
    jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, name=c.name) for c in cases]
    for case, result in zip(cases, RTLSimulator(cfg).run(jobs)):
        assert result.status == "done", result.error
        np.testing.assert_array_equal(result.dram, case.expect_dram)
        end = case.insn_base + isa.INSN_BYTES * case.insn_count
        words = isa.bytes_to_words(case.dram[case.insn_base:end].tobytes())
        model = perf.estimate_words(words, cfg).cycles
        if case.name == "gemm(21, 9, 13)":
            assert model < result.csr["CYCLES"]
        else:
            assert model == result.csr["CYCLES"], case.name
