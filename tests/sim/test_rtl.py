"""The whole NPU in Verilator (cocotb), against the functional model and the golden.

Each configuration is built once (cached under build/sim) and every case runs in
one simulator launch per configuration, through both memory models: the fast
AXI RAM inside the design, and cocotbext-axi's AxiRam with random back-pressure
on every channel.
"""
import functools

import numpy as np
import pytest

from hw import NPUConfig
from hw import isa
from hw.isa import ErrorCode
from sim.rtl import Job, RTLSimulator

from .programs import (Builder, Case, alu_case, fuzz_case, gemm_case, load_store_case,
                       spad_gemm_case)

CONFIGS = {
    "tiny": NPUConfig.preset("tiny"),
    "4x6": NPUConfig.preset("tiny", cols=6, dma_data_width=64),
    "8x8": NPUConfig.preset("small"),
    "16x16": NPUConfig(),
    # The same configuration with other array implementations (hw.array.MacOptions):
    # the same results by design, so the same cases, on the fast memory.
    "tiny-pipelined": NPUConfig.preset("tiny"),
    "tiny-ice40_dual": NPUConfig.preset("tiny"),
}
MACS = {"tiny-pipelined": "pipelined", "tiny-ice40_dual": "ice40_dual_pipelined"}


def error_cases(cfg):
    cases = []
    # Illegal opcode (7) as instruction 2.
    b = Builder(cfg)
    b.emit(isa.sync(queue="compute"), isa.sync(queue="load"))
    c = b.case("illegal_opcode")
    c.dram[c.insn_base + 32:c.insn_base + 48] = 0
    c.dram[c.insn_base + 32] = 7
    c.insn_count = 3
    cases.append(Case(cfg, c.dram, c.insn_base, 3, name="illegal_opcode"))
    # An enum field with no member: LOAD mem=3.
    b = Builder(cfg)
    b.emit(isa.sync(queue="store"), isa.load(y_size=1, x_size=1, length=1))
    c = b.case()
    word = isa.load(y_size=1, x_size=1, length=1).encode() | (3 << 7)
    c.dram[c.insn_base + 16:c.insn_base + 32] = np.frombuffer(word.to_bytes(16, "little"), np.uint8)
    cases.append(Case(cfg, c.dram, c.insn_base, 2, name="illegal_mem"))
    # Fields out of range for this configuration.
    for name, insn in [
        ("gemm_past_spad", isa.gemm(m=10, inp=cfg.spad_depth - 5)),
        ("store_param", isa.store(rows=1, length=1, param=cfg.param_groups)),
        ("load_length", isa.load(mem="spad", y_size=1, x_size=1, length=cfg.rows + 1)),
        ("load_rows", isa.load(mem="acc", sram=cfg.acc_depth - 2, y_size=1, x_size=3, length=1)),
        ("alu_rows", isa.alu(dst=cfg.acc_depth - 3, dst_stride=2, count=3, use_imm=1)),
        ("bad_dep", isa.store(rows=1, length=1, push_next=1)),
        ("clamp", isa.store(rows=1, length=1, clamp_lo=5, clamp_hi=4)),
    ]:
        b = Builder(cfg)
        b.emit(isa.sync(queue="load"), insn, isa.finish())
        cases.append(b.case(f"range_{name}"))
    # DMA window: a load reaching past the limit, a store before the base.
    b = Builder(cfg, size=4096)
    b.emit(isa.sync(queue="load"), isa.load(mem="spad", dram=0xFF0, y_size=1, x_size=1,
                                            length=min(cfg.rows, 16) + 0), isa.finish())
    c = b.case()
    cases.append(Case(cfg, c.dram, c.insn_base, c.insn_count, window=(0x100, 0xFF4),
                      name="window_load"))
    b = Builder(cfg, size=4096)
    b.reserve(0x200)
    b.emit(isa.store(dram=0x1F0, rows=2, stride=8, length=cfg.cols, clamp_lo=-128, clamp_hi=127),
           isa.finish())
    c = b.case()
    cases.append(Case(cfg, c.dram, c.insn_base, c.insn_count, window=(0x1F8, 0x1000),
                      name="window_store"))
    # Instruction fetch running out of the window (instruction 3 is outside).
    b = Builder(cfg, size=4096)
    b.emit(*[isa.sync(queue="compute")] * 5)
    c = b.case()
    cases.append(Case(cfg, c.dram, c.insn_base, 5, window=(0, c.insn_base + 48),
                      name="window_fetch"))
    # Deadlocks: a token never given, and a cycle.
    b = Builder(cfg)
    b.emit(isa.load(y_size=1, x_size=1, length=1), isa.gemm(m=1, pop_prev=1), isa.finish())
    cases.append(b.case("deadlock_missing"))
    b = Builder(cfg)
    b.emit(isa.load(y_size=1, x_size=1, length=1, pop_next=1, push_next=1),
           isa.gemm(m=1, pop_prev=1, push_prev=1), isa.finish())
    cases.append(b.case("deadlock_cycle"))
    # A misaligned instruction base.
    b = Builder(cfg)
    b.emit(isa.finish())
    c = b.case()
    c.dram[c.insn_base + 8:c.insn_base + 24] = c.dram[c.insn_base:c.insn_base + 16].copy()
    cases.append(Case(cfg, c.dram, c.insn_base + 8, 1, name="misaligned_base"))
    for case in cases:
        assert case.error is not None, f"{case.name} must be an error program"
    return cases


def cases_for(name):
    cfg = CONFIGS[name]
    if name == "16x16":
        return [gemm_case(cfg, 1, (70, 100, 40), m_tile=24), gemm_case(cfg, 2, (33, 48, 35)),
                alu_case(cfg, 3), load_store_case(cfg, 4)]
    cases = [
        gemm_case(cfg, 11, (1, 1, 1)),
        gemm_case(cfg, 12, (9, 7, 10), m_tile=4, zp=5, clamp=(-20, 100)),
        gemm_case(cfg, 13, (13, 16, 8), m_tile=3, a_pad=5),
        gemm_case(cfg, 14, (21, 9, 13)),
        load_store_case(cfg, 21),
        load_store_case(cfg, 22),
        spad_gemm_case(cfg, 31),
        spad_gemm_case(cfg, 32),
        alu_case(cfg, 41),
        alu_case(cfg, 42),
    ]
    if name == "8x8":
        cases = cases[1:4] + cases[4:5] + cases[6:7] + cases[8:9]
    # Differential fuzzing: random race-free programs of every instruction and field.
    cases += [fuzz_case(cfg, seed) for seed in ((51, 52, 53) if name != "8x8" else (54,))]
    return cases + error_cases(cfg)


MEMORIES = {"tiny": ("fast", "axi"), "4x6": ("fast", "axi"), "8x8": ("fast", "axi"),
            "16x16": ("fast",), "tiny-pipelined": ("fast",), "tiny-ice40_dual": ("fast",)}


@functools.lru_cache(maxsize=None)
def results_for(name):
    cfg = CONFIGS[name]
    cases = cases_for(name)
    jobs = []
    for memory in MEMORIES[name]:
        for i, case in enumerate(cases):
            jobs.append(Job(case.dram.copy(), case.insn_base, case.insn_count, window=case.window,
                            memory=memory, backpressure=memory == "axi", seed=i,
                            max_cycles=case.extra.get("max_cycles",
                                                      30_000 if memory == "axi" else 200_000),
                            name=f"{case.name}/{memory}"))
    results = RTLSimulator(cfg, mac=MACS.get(name)).run(jobs)
    out = {}
    k = 0
    for memory in MEMORIES[name]:
        for case in cases:
            out[(case.name, memory)] = (case, results[k])
            k += 1
    return out


def _params():
    for name in CONFIGS:
        for memory in MEMORIES[name]:
            for case in cases_for(name):
                yield pytest.param(name, case.name, memory, id=f"{name}-{case.name}-{memory}")


@pytest.mark.parametrize("cfg_name, case_name, memory", list(_params()))
def test_rtl_equals_functional_model(cfg_name, case_name, memory):
    case, result = results_for(cfg_name)[(case_name, memory)]
    cfg = CONFIGS[cfg_name]
    assert result.csr["ID"] == 0x4E505531
    assert result.csr["CONFIG_HASH"] == cfg.hash
    if case.error is not None:
        assert result.status == "error", f"expected {case.error}, got {result.status}"
        assert (result.error, result.error_index) == (case.error.code, case.error.index), \
            f"functional model: {case.error}"
        lo, hi = case.window or (0, len(case.dram))
        n = len(case.dram)
        # Nothing outside the window was written.
        assert np.array_equal(result.dram[:lo], case.dram[:lo])
        assert np.array_equal(result.dram[hi:n], case.dram[hi:n])
        return
    assert result.status == "done", f"{result.status}: {result.error.name} at {result.error_index}"
    assert result.error is ErrorCode.NONE
    # Every byte of DRAM equals the functional model's.
    got = result.dram[:len(case.expect_dram)]
    diff = np.flatnonzero(got != case.expect_dram)
    assert diff.size == 0, f"{diff.size} bytes differ, first at {diff[:8]}"
    if "golden" in case.extra:
        kern = case.extra["kernel"]
        assert np.array_equal(kern.read_output(result.dram), case.extra["golden"])
    # The performance counters agree with what the program did.
    counts = case.counts
    csr = result.csr
    assert csr["MACS"] == counts.macs
    assert csr["ARRAY_BUSY"] * cfg.rows * cfg.cols == counts.macs
    assert csr["DMA_RD_BYTES"] == counts.dram_read_bytes
    assert csr["DMA_WR_BYTES"] == counts.dram_write_bytes
    assert csr["INSN_RD_BYTES"] == counts.insn_read_bytes
    for op in isa.Opcode:
        assert csr[f"INSNS_{op.name}"] == counts.insns[op.name], op.name
    assert csr["CYCLES"] >= csr["ARRAY_BUSY"] > 0 or counts.macs == 0
