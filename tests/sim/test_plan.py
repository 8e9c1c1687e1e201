"""Execution plans (sim/plan.py) against the instruction-by-instruction interpreter.

The interpreter is the functional model's reference; a plan must leave exactly
the same DRAM, memories, weights and counts, on random programs that exercise
every instruction and field, on compiled models, and across repeated runs.
"""
import numpy as np
import pytest
import torch

import sw
from hw import NPUConfig
from hw import isa
from hw.isa import ErrorCode, Mem
from sim.functional import FunctionalModel, NPUError, place_program
from sim.plan import PlannedModel
from sw import zoo

from .programs import random_program

CONFIGS = {"tiny": NPUConfig.preset("tiny"), "4x6": NPUConfig.preset("tiny", cols=6)}
DRAM_SIZE = 16384
DATA_END = 4096          # loads and stores stay below; the program lives above


def state(fm: FunctionalModel, dram: np.ndarray, counts) -> dict:
    return {"dram": dram.copy(), "spad": fm.spad.copy(), "acc": fm.acc.copy(),
            "param": fm.param.copy(), "weights": fm.weights.copy(), "layer": fm.layer,
            "counts": counts.as_dict(),
            "per_layer": {k: v.as_dict() for k, v in counts.per_layer.items()}}


def assert_same(a: dict, b: dict) -> None:
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def run_both(cfg, dram, base, count, runs=2):
    """Run a program on a planning and an interpreting model; compare after each run."""
    planned, interpreted = PlannedModel(cfg), FunctionalModel(cfg)
    rng = np.random.default_rng(count)
    spad = rng.integers(-128, 128, planned.spad.shape)
    acc = rng.integers(-2**31, 2**31, planned.acc.shape, dtype=np.int64)
    for fm in (planned, interpreted):        # the same non-zero starting memories
        fm.spad[:], fm.acc[:] = spad, acc
    d_plan, d_int = dram.copy(), dram.copy()
    for _ in range(runs):
        states = [state(fm, d, fm.run(d, base, count))
                  for fm, d in ((planned, d_plan), (interpreted, d_int))]
        assert_same(*states)
    return planned


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
@pytest.mark.parametrize("seed", range(6))
def test_random_programs_plan_equals_interpreter(cfg_name, seed):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, DRAM_SIZE, dtype=np.uint8)
    prog = random_program(cfg, rng, 300)
    count = place_program(dram, DATA_END, prog)
    planned = run_both(cfg, dram, DATA_END, count)
    assert planned.last_run == "planned", "the program was interpreted, not planned"


def test_compiled_model_plan_equals_interpreter():
    cfg = NPUConfig.preset("tiny", cols=6)
    model, shape = zoo.build("resnet8")
    gen = torch.Generator().manual_seed(3)
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)
    q = np.random.default_rng(3).integers(-128, 128, program.input.shape).astype(np.int8)
    dram = program.image(q)
    planned = run_both(cfg, dram, program.insn_base, program.insn_count)
    assert planned.last_run == "planned" and planned.plan_count == 1


def test_program_that_stores_into_its_instructions_is_interpreted():
    cfg = CONFIGS["tiny"]
    dram = np.zeros(1024, np.uint8)
    base = 512
    # The STORE writes into the SYNC after it; whatever that makes of the program,
    # the model must give the interpreter's answer, not a planned one.
    prog = [isa.store(acc=0, dram=base + 16, rows=1, stride=4, length=4, param=0,
                      clamp_lo=-128, clamp_hi=127), isa.sync(), isa.finish()]
    count = place_program(dram, base, prog)
    fm, ref = PlannedModel(cfg), FunctionalModel(cfg)
    d1, d2 = dram.copy(), dram.copy()
    outcomes = []
    for model, d in ((fm, d1), (ref, d2)):
        try:
            outcomes.append(model.run(d, base, count).as_dict())
        except NPUError as exc:
            outcomes.append((exc.code, exc.index))
    assert outcomes[0] == outcomes[1]
    assert np.array_equal(d1, d2)
    assert fm.last_run == "interpreted" and fm.plan_count == 0


def test_changed_program_words_are_replanned():
    cfg = CONFIGS["tiny"]
    rng = np.random.default_rng(11)
    dram = rng.integers(0, 256, DRAM_SIZE, dtype=np.uint8)
    prog = random_program(cfg, rng, 60)
    count = place_program(dram, DATA_END, prog)
    fm = PlannedModel(cfg)
    fm.run(dram.copy(), DATA_END, count)
    # Same address and length, another program: the cached plan must not be reused.
    other = random_program(cfg, rng, 60)
    place_program(dram, DATA_END, other)
    ref = FunctionalModel(cfg)
    ref.spad[:], ref.acc[:], ref.param[:] = fm.spad, fm.acc, fm.param
    d1, d2 = dram.copy(), dram.copy()
    assert_same(state(fm, d1, fm.run(d1, DATA_END, count)),
                state(ref, d2, ref.run(d2, DATA_END, count)))
    assert fm.last_run == "planned" and fm.plan_count == 1


def test_errors_are_the_interpreters():
    cfg = CONFIGS["tiny"]
    dram = np.zeros(1024, np.uint8)
    prog = [isa.load(mem=Mem.SPAD, sram=0, dram=0, y_size=1, x_size=1, y_stride=4,
                     x_stride=4, length=4),
            isa.store(acc=0, dram=1020, rows=2, stride=4, length=4, param=0,
                      clamp_lo=-128, clamp_hi=127), isa.finish()]
    count = place_program(dram, 512, prog)
    fm = PlannedModel(cfg)
    with pytest.raises(NPUError) as err:
        fm.run(dram, 512, count)
    assert (err.value.code, err.value.index) == (ErrorCode.DMA_WINDOW, 1)
    assert fm.last_run == "interpreted" and fm.plan_count == 0


def test_the_model_reads_alone():
    """The executable spec does not depend on its planner."""
    import subprocess
    import sys
    code = "import sys, sim.functional; print('sim.plan' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_blas_threads_are_limited_during_a_run(monkeypatch):
    """The chain products run on NPU_BLAS_THREADS BLAS threads (1 by default: many small
    products, bench/func_threads.py); 0 leaves the library's own setting."""
    from threadpoolctl import threadpool_info

    import sim.plan as plan

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    outside = blas_threads()
    monkeypatch.setattr(plan, "BLAS_THREADS", 1)
    with plan._blas_limit():
        assert blas_threads() == {1}
    assert blas_threads() == outside
    monkeypatch.setattr(plan, "BLAS_THREADS", 0)
    with plan._blas_limit():
        assert blas_threads() == outside
