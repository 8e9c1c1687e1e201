"""Differential fuzzing at scale, malformed programs, bus errors, resets and the interrupt.

One C++ harness per configuration (built once, cached) runs every case of this file for
that configuration (tests/sim/fuzz.py says how a case runs and what is compared). A
failing case prints its seed and the command that replays it alone. ``NPU_FUZZ_SEED``
shifts the seeds (default 0), to fuzz other programs than the regression's.
"""
import os

import numpy as np
import pytest

from hw import driver, isa
from hw.csr import CTRL_BITS, REG
from hw.isa import ErrorCode
from sim.rtl import FastRTLSimulator

from . import fuzz
from .fuzz import CONFIGS, MALFORMED, describe_failures, run_batch, run_case

#: Cases per configuration and run: 3 x 350 valid programs, 3 x 200 malformed ones.
VALID = 350
MALFORMED_CASES = 200
BASE = int(os.environ.get("NPU_FUZZ_SEED", "0"))


@pytest.fixture(scope="module")
def sessions():
    """One running harness per configuration, shared by every test here."""
    opened = {}

    def get(name):
        if name not in opened:
            opened[name] = FastRTLSimulator(CONFIGS[name]).session()
        return opened[name]

    yield get
    for bus in opened.values():
        bus.close()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_random_valid_programs_equal_the_model(config, sessions):
    seeds = range(BASE, BASE + VALID)
    outcomes = run_batch(config, "valid", seeds, session=sessions(config))
    assert len(outcomes) == VALID
    assert all(o.status == "done" for o in outcomes if not o.problems)
    # The programs did real work: every instruction kind, reads and writes on the bus.
    assert sum(o.instructions for o in outcomes) > VALID * fuzz.VALID_LENGTH
    assert all(o.bus["reads"] > 0 and o.bus["writes"] > 0 for o in outcomes)
    bad = describe_failures(config, "valid", outcomes)
    assert not bad, "RTL and functional model differ:\n" + bad


@pytest.mark.parametrize("config", list(CONFIGS))
def test_malformed_programs_stop_with_the_models_error(config, sessions):
    seeds = range(BASE, BASE + MALFORMED_CASES)
    outcomes = run_batch(config, "malformed", seeds, session=sessions(config))
    bad = describe_failures(config, "malformed", outcomes)
    assert not bad, "malformed programs the RTL handles unlike the model:\n" + bad
    # Every kind of fault was tried and (but for a random word that is valid, or a spare
    # token popped) ended in the error state, well inside the watchdog's budget.
    errors = {}
    for o in outcomes:
        if o.status == "error":
            errors.setdefault(o.case.extra["fault"], set()).add(o.error)
    assert set(errors) == set(MALFORMED)
    assert errors["window_load"] == errors["window_store"] == {ErrorCode.DMA_WINDOW}
    assert errors["missing_token"] == {ErrorCode.DEADLOCK}
    assert errors["bad_enum"] == {ErrorCode.ILLEGAL_OPCODE}
    assert errors["field_range"] == errors["misaligned_base"] == {ErrorCode.FIELD_RANGE}
    assert max(o.cycles for o in outcomes) < fuzz.MALFORMED_CYCLES // 10


def test_a_failure_names_its_seed_and_replay_command(sessions):
    outcome = run_batch("tiny", "valid", [BASE + 3], session=sessions("tiny"))[0]
    outcome.problems = ["MACS is 1, the model counts 2"]
    text = describe_failures("tiny", "valid", [outcome])
    assert f"valid{BASE + 3}: MACS is 1" in text
    assert f"python -m tests.sim.fuzz --config tiny --kind valid --seed {BASE + 3}" in text
    assert fuzz.main(["--config", "tiny", "--kind", "malformed", "--seed", "5"]) == 0


def test_the_bus_monitor_sees_an_access_outside_the_window(sessions):
    bus = sessions("tiny")
    case = fuzz.valid_case(CONFIGS["tiny"], BASE + 1)
    # The same program, watched against a window that leaves out its first data bytes.
    bus.reset()
    bus.clear()
    bus.load(0, case.dram)
    bus.monitor((64, len(case.dram)))
    r = driver.execute(driver.run(case.insn_base, case.insn_count, (0, len(case.dram)),
                                  max_cycles=200_000), bus)
    report = bus.bus_report()
    assert r.status == "done" and report["outside"] > 0 and report["addr"] < 64
    # Run as given, nothing leaves the window.
    _, _, report = run_case(bus, case)
    assert report["outside"] == 0 and report["reads"] > 0 and report["writes"] > 0


# ------------------------------------------------------------------------- bus errors

def _bus_error_case(cfg):
    """A LOAD (instruction 1) from [0x400, 0x410), a STORE (instruction 4) to
    [0x800, 0x810), between SYNCs; the program at the end of the image."""
    b = fuzz.Builder(cfg, size=8192)
    b.data(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8))
    b.identity_params(0)
    b.emit(isa.load(mem="acc", sram=0, dram=0x400, y_size=4, x_size=1, y_stride=cfg.cols,
                    length=cfg.cols, push_next=1),
           isa.sync(queue="compute", pop_prev=1, push_next=1),
           isa.sync(queue="store", pop_prev=1),
           isa.store(acc=0, dram=0x800, rows=4, stride=cfg.cols, length=cfg.cols,
                     clamp_lo=-128, clamp_hi=127),
           isa.finish())
    return b.case("bus_error")


@pytest.mark.parametrize("config", ["tiny", "tiny-w256"])
@pytest.mark.parametrize("resp", [2, 3], ids=["SLVERR", "DECERR"])
@pytest.mark.parametrize("where", ["read", "write", "fetch"])
def test_a_bus_error_stops_the_npu_with_its_code(config, resp, where, sessions):
    cfg = CONFIGS[config]
    bus = sessions(config)
    case = _bus_error_case(cfg)
    assert case.error is None
    lo, hi, index = {"read": (0x400, 0x404, 1), "write": (0x80C, 0x810, 4),
                     "fetch": (case.insn_base + 32, case.insn_base + 48, 2)}[where]
    if where == "fetch":
        # The first word that shares a beat with the failing range fails (wide beats hold
        # two instructions).
        B = cfg.dma_bytes
        index = min(k for k in range(case.insn_count)
                    if (case.insn_base + 16 * k) // B * B < hi
                    and -(-(case.insn_base + 16 * k + 16) // B) * B > lo)
    bus.inject(lo, hi, resp)
    try:
        r, dram, report = run_case(bus, case)
    finally:
        bus.inject(0, 0, 0)
    assert r.status == "error", f"{where} answered {resp}: {r.status}"
    assert (r.error, r.error_index) == (ErrorCode.BUS_ERROR, index)
    assert report["outside"] == 0
    # The program stops where it failed: nothing is stored after a failed read or fetch.
    if where != "write":
        assert np.array_equal(dram[0x800:0x810], case.dram[0x800:0x810])
    assert not np.array_equal(case.expect_dram[0x800:0x810], case.dram[0x800:0x810])
    # The same program, the injection gone, runs as the model says.
    r, dram, _ = run_case(bus, case)
    assert r.status == "done" and np.array_equal(dram, case.expect_dram)


# ------------------------------------------------------------------ resets, repeats, irq

def _write(bus, name, value):
    bus.write32(REG[name].offset, value)


def _read(bus, name):
    return bus.read32(REG[name].offset)


def test_the_same_program_ten_times_gives_the_same_results(sessions):
    bus = sessions("4x6")
    case = fuzz.valid_case(CONFIGS["4x6"], BASE + 11)
    runs = [run_case(bus, case) for _ in range(10)]
    first_regs = runs[0][0].registers
    for r, dram, _ in runs:
        assert r.status == "done"
        assert np.array_equal(dram, case.expect_dram)
        assert r.registers == first_regs       # every counter, cycles included


def test_soft_reset_in_the_middle_of_a_run_then_a_clean_run(sessions):
    cfg = CONFIGS["tiny"]
    bus = sessions("tiny")
    long_case = fuzz.valid_case(cfg, BASE + 21, length=200)
    case = fuzz.valid_case(cfg, BASE + 22)
    for delay in (50, 333, 1000, 2500):
        bus.reset()
        bus.clear()
        bus.load(0, long_case.dram)
        window = (0, len(long_case.dram))
        driver.execute(driver.launch(long_case.insn_base, long_case.insn_count, window), bus)
        bus.wait(delay)
        assert _read(bus, "STATUS") & 1, "still running"
        _write(bus, "CTRL", 1 << CTRL_BITS["SOFT_RESET"])
        bus.wait(200)
        assert _read(bus, "STATUS") == 0, "stopped: not busy, not done, no error"
        # A clean run (a new image, no harness reset) gives the model's results.
        bus.load(0, case.dram)
        r = driver.execute(driver.run(case.insn_base, case.insn_count, (0, len(case.dram)),
                                      max_cycles=200_000), bus)
        assert r.status == "done", f"after a soft reset at cycle {delay}: {r.status}"
        dram = bus.dump(0, len(case.dram))
        assert np.array_equal(dram, case.expect_dram)
        assert r.registers["MACS"] == case.counts.macs


@pytest.mark.parametrize("enable", [True, False])
def test_the_interrupt_rises_on_done_and_on_error_when_enabled(enable, sessions):
    cfg = CONFIGS["tiny"]
    bus = sessions("tiny")
    good = fuzz.valid_case(cfg, BASE + 31)
    bad = fuzz.malformed_case(cfg, MALFORMED.index("field_range"))
    assert bad.error is not None
    for case, stop in ((good, "done"), (bad, "error")):
        bus.reset()
        bus.clear()
        bus.load(0, case.dram)
        window = case.window or (0, len(case.dram))
        for name, value in (("INSN_BASE", case.insn_base), ("INSN_COUNT", case.insn_count),
                            ("WINDOW_BASE", window[0]), ("WINDOW_LIMIT", window[1])):
            _write(bus, name, value)
        ctrl = 1 << CTRL_BITS["START"] | (enable << CTRL_BITS["IRQ_ENABLE"])
        _write(bus, "CTRL", ctrl)
        assert bus.pins()["irq"] == 0, "no interrupt while running"
        bus.wait(200_000)
        pins = bus.pins()
        assert pins[stop] == 1 and pins["busy"] == 0
        assert pins["irq"] == int(enable), f"irq on {stop} with IRQ_ENABLE={enable}"
        # Clearing IRQ_ENABLE lowers the line.
        _write(bus, "CTRL", 0)
        assert bus.pins()["irq"] == 0


@pytest.mark.parametrize("queue", ["load", "store"])
def test_a_sync_in_the_load_or_store_queue_only_moves_tokens(queue, sessions):
    # Found by the fuzzer: the load and store units ran a SYNC as a LOAD or STORE of its
    # raw bits. Here the bits past the SYNC's fields are those of a LOAD or STORE that
    # would touch DRAM outside the window; the SYNC must only pass its tokens.
    cfg = CONFIGS["tiny"]
    b = fuzz.Builder(cfg, size=8192)
    b.data(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8))
    if queue == "load":
        junk = isa.load(mem="acc", dram=0x10, y_size=3, x_size=1, y_stride=4, length=4)
        pair = isa.sync(queue="compute", pop_prev=1)
        sync = isa.sync(queue="load", push_next=1)
    else:
        junk = isa.store(dram=0x10, rows=3, stride=4, length=4, clamp_lo=-128, clamp_hi=127)
        pair = isa.sync(queue="compute", push_next=1)
        sync = isa.sync(queue="store", pop_prev=1)
    low = (1 << 9) - 1                     # the SYNC's header and queue field
    word = (junk.encode() & ~low) | sync.encode()
    assert isa.decode(word).opcode is isa.Opcode.SYNC
    program = [word, pair.encode()] if queue == "load" else [pair.encode(), word]
    program.append(isa.finish().encode())
    base = b.reserve(16 * len(program))
    b.dram[base:base + 16 * len(program)] = np.frombuffer(isa.words_to_bytes(program), np.uint8)
    case = fuzz.Case(cfg, b.dram, base, len(program), window=(0x100, len(b.dram)), name="sync")
    assert case.error is None
    r, dram, report = run_case(sessions("tiny"), case)
    assert r.status == "done", f"{r.status}: {r.error.name} at {r.error_index}"
    assert np.array_equal(dram, case.expect_dram) and report["outside"] == 0
    assert r.registers["INSNS_SYNC"] == 2 and r.registers["DMA_RD_BYTES"] == 0
    assert r.registers["DMA_WR_BYTES"] == 0
