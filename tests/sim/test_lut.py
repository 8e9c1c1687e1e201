"""STORE with ``lut``: the activation table on the store path, against an independent
lookup, on the functional model and the RTL, with the RTL's cycles equal to the
performance model's."""
import functools

import numpy as np
import pytest

from hw import NPUConfig, isa
from sim.functional import NPUError
from sim.rtl import Job, RTLSimulator
from sw.analysis import perf

from .programs import Builder

TINY = NPUConfig.preset("tiny")


def _lut_case(cfg, seed, group=1, zp=3, clamp=(-100, 90)):
    """Every int8 value through the identity requantizer (+zp, clamped), then a random
    table; returns the case and the expected output rows."""
    rng = np.random.default_rng(seed)
    C = cfg.cols
    b = Builder(cfg, size=16384)
    values = np.arange(-128, 128, dtype=np.int8)
    n_rows = -(-256 // C)
    src = b.data(np.resize(values, n_rows * C))
    table = rng.integers(-128, 128, 256, dtype=np.int8)
    rows = np.zeros((3, C), "<i4")
    rows[1], rows[2] = 1 << 30, 1
    pbytes = rows.tobytes() + table.tobytes()
    pbytes += bytes(-len(pbytes) % (4 * C))
    n_prow = len(pbytes) // (4 * C)
    paddr = b.data(pbytes)
    b.emit(isa.load(mem="param", sram=3 * group, dram=paddr, y_size=n_prow, x_size=1,
                    y_stride=4 * C, length=C))
    b.emit(isa.load(mem="acc", sram=0, dram=src, y_size=n_rows, x_size=1, y_stride=C,
                    length=C, push_next=1))
    b.emit(isa.sync(queue="compute", pop_prev=1, push_next=1))
    out = b.reserve(n_rows * C)
    b.emit(isa.store(acc=0, dram=out, rows=n_rows, stride=C, length=C, param=group,
                     out_zp=zp, clamp_lo=clamp[0], clamp_hi=clamp[1], lut=1, pop_prev=1))
    b.emit(isa.finish())
    x = np.resize(values, n_rows * C).astype(np.int64)
    expect = table[np.clip(x + zp, *clamp) + 128]
    return b.case(f"lut{seed}"), out, expect


@pytest.mark.parametrize("cfg", [TINY, NPUConfig.preset("small")], ids=["tiny", "small"])
def test_the_functional_model_looks_up_every_value(cfg):
    case, out, expect = _lut_case(cfg, 3)
    assert case.error is None
    got = case.expect_dram[out:out + len(expect)].view(np.int8)
    np.testing.assert_array_equal(got, expect)


def test_a_table_past_the_parameter_memory_is_refused():
    C = TINY.cols
    last = TINY.param_groups - 1          # its group fits, its table does not
    assert 3 * (last + 1) + isa.table_rows(C) > TINY.param_depth
    b = Builder(TINY)
    b.emit(isa.store(acc=0, dram=0, rows=1, stride=C, length=C, param=last, lut=1))
    b.emit(isa.finish())
    case = b.case("lut_range")
    assert isinstance(case.error, NPUError) and "activation table" in str(case.error)
    result = RTLSimulator(TINY).run([Job(case.dram.copy(), case.insn_base, case.insn_count,
                                         name=case.name)])[0]
    assert result.status == "error"
    assert (result.error, result.error_index) == (case.error.code, case.error.index)
    assert case.error.code is isa.ErrorCode.FIELD_RANGE


@functools.lru_cache(maxsize=None)
def _rtl(table_write_bytes=0):
    cfg = TINY.replace(table_write_bytes=table_write_bytes)
    cases = [_lut_case(cfg, 5), _lut_case(cfg, 6, group=0, zp=-7, clamp=(-128, 127))]
    jobs = [Job(c.dram.copy(), c.insn_base, c.insn_count, name=c.name) for c, _, _ in cases]
    return cfg, list(zip(cases, RTLSimulator(cfg).run(jobs)))


# 0: the table in registers; 1 and 4: in block RAM, written 1 and 4 entries a cycle (256
# and 64 cycles a STORE instead of 16).
@pytest.mark.parametrize("table_write_bytes", [0, 1, 4])
@pytest.mark.parametrize("i", [0, 1])
def test_the_rtl_looks_up_bit_exactly_with_the_modelled_cycles(i, table_write_bytes):
    cfg, results = _rtl(table_write_bytes)
    (case, out, expect), result = results[i]
    assert result.status == "done", result.error
    np.testing.assert_array_equal(result.dram[out:out + len(expect)].view(np.int8), expect)
    np.testing.assert_array_equal(result.dram, case.expect_dram)
    end = case.insn_base + isa.INSN_BYTES * case.insn_count
    words = isa.bytes_to_words(case.dram[case.insn_base:end].tobytes())
    assert perf.estimate_words(words, cfg).cycles == result.csr["CYCLES"]
