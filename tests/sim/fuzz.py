"""Differential fuzzing of the RTL against the functional model, many programs per harness.

Every case runs in one C++ harness per configuration (:class:`sim.rtl.HarnessSession`):
reset, clear the RAM, load the case's DRAM image, run it through :mod:`hw.driver` with a
cycle watchdog, dump the RAM and read the bus monitor. :func:`check` compares the result
with what the functional model says the program does:

* a valid program must finish (``done``) with every DRAM byte and every counter equal;
* a malformed one must stop in the error state with the model's error code and failing
  instruction, and no byte outside its DMA window may change;
* in both, no read or write may leave the DMA window (the harness's bus monitor), and no
  case may run past its cycle budget (a hang is a failure, not a wait).

Two families of cases, both reproducible from ``(config, kind, seed)`` alone:
:func:`valid_case` (random race-free programs, :func:`tests.sim.programs.fuzz_case`) and
:func:`malformed_case` (one fault in an otherwise valid program: a random word, an illegal
opcode or enum value, a field out of range, an access outside the window, a missing or
extra dependency token, a misaligned base, an instruction count past the window).

A failing case is replayed alone with::

    python -m tests.sim.fuzz --config tiny --kind valid --seed 17
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from hw import NPUConfig, driver, isa
from hw.isa import ErrorCode, Mem, Opcode
from sim.rtl import FastRTLSimulator, HarnessSession

from .programs import Builder, Case, fuzz_case, random_program, serialize

#: The configurations fuzzed by default: square, non-square, a bus wider than a row.
CONFIGS: dict[str, NPUConfig] = {
    "tiny": NPUConfig.preset("tiny"),
    "4x6": NPUConfig.preset("tiny", cols=6, dma_data_width=64),
    "tiny-w256": NPUConfig.preset("tiny", dma_data_width=256),
}
KINDS = ("valid", "malformed")
#: Instructions of the random body of a valid case (besides the memory fill and dump).
VALID_LENGTH = 40
#: Cycle budget of a malformed case: every one must stop well before (the watchdog).
MALFORMED_CYCLES = 50_000


def replay_command(config: str, kind: str, seed: int, length: int = VALID_LENGTH) -> str:
    """The shell command that replays one case alone."""
    extra = f" --length {length}" if kind == "valid" and length != VALID_LENGTH else ""
    return f"python -m tests.sim.fuzz --config {config} --kind {kind} --seed {seed}{extra}"


# ------------------------------------------------------------------------------ cases

def valid_case(cfg: NPUConfig, seed: int, length: int = VALID_LENGTH) -> Case:
    """A random race-free program of ``length`` instructions over random DRAM, framed by
    a fill of every SRAM row and a dump of the whole accumulator (so that it reads
    nothing left by an earlier program and every surviving result is compared)."""
    case = fuzz_case(cfg, seed, n=length)
    if case.error is not None:    # pragma: no cover - a generator bug, not a hardware one
        raise AssertionError(f"valid case {seed} is an error program: {case.error}")
    case.name = f"valid{seed}"
    case.extra["max_cycles"] = 200_000
    return case


def _random_valid(cfg: NPUConfig, rng: np.random.Generator, n: int) -> list[isa.Instruction]:
    return random_program(cfg, rng, n)[:-1]


def _enum_fields(op: Opcode) -> list[tuple[str, type, int, int]]:
    return [(name, shape, off, w) for name, shape, off, w in isa.fields_of(op)
            if isinstance(shape, type) and issubclass(shape, isa.enum.Enum) and name != "opcode"]


def _set_bits(word: int, offset: int, width: int, value: int) -> int:
    mask = ((1 << width) - 1) << offset
    return (word & ~mask) | ((value << offset) & mask)


def _field(op: Opcode, name: str) -> tuple[int, int]:
    for fname, _, off, width in isa.fields_of(op):
        if fname == name:
            return off, width
    raise KeyError(name)


def _out_of_range(cfg: NPUConfig, rng: np.random.Generator) -> int:
    """A valid-looking instruction word with one field out of range for ``cfg``."""
    r, c = cfg.rows, cfg.cols
    choice = int(rng.integers(0, 14))
    if choice == 0:
        return isa.load(mem="spad", y_size=0, x_size=1, length=1).encode()
    if choice == 1:
        mem = rng.choice([Mem.SPAD, Mem.ACC, Mem.PARAM])
        width = r if mem is Mem.SPAD else c
        return isa.load(mem=mem, y_size=1, x_size=1,
                        length=int(rng.integers(width + 1, 1 << isa.field_bits(Opcode.LOAD, "length")))
                        ).encode()
    if choice == 2:
        mem = rng.choice([Mem.SPAD, Mem.ACC, Mem.PARAM])
        depth = {Mem.SPAD: cfg.spad_depth, Mem.ACC: cfg.acc_depth, Mem.PARAM: cfg.param_depth}[mem]
        ys = int(rng.integers(1, 5))
        return isa.load(mem=mem, sram=depth - int(rng.integers(0, ys)), y_size=ys, x_size=1,
                        length=1, pad_top=int(rng.integers(0, 2))).encode()
    if choice == 3:
        return isa.store(rows=0, length=1).encode()
    if choice == 4:
        return isa.store(rows=1, length=c + int(rng.integers(1, 10))).encode()
    if choice == 5:
        rows = int(rng.integers(1, 8))
        return isa.store(acc=cfg.acc_depth - rows + int(rng.integers(1, 4)), rows=rows,
                         length=1).encode()
    if choice == 6:
        return isa.store(rows=1, length=1, param=int(rng.integers(cfg.param_groups, isa.field_max(Opcode.STORE, "param") + 1))).encode()
    if choice == 7:
        lo = int(rng.integers(-127, 128))
        return isa.store(rows=1, length=1, clamp_lo=lo, clamp_hi=int(rng.integers(-128, lo))
                         ).encode()
    if choice == 8:
        return isa.gemm(m=0).encode()
    if choice == 9:
        m = int(rng.integers(1, 9))
        return isa.gemm(m=m, inp=cfg.spad_depth - m + int(rng.integers(1, 4))).encode()
    if choice == 10:
        m = int(rng.integers(1, 9))
        return isa.gemm(m=m, acc=cfg.acc_depth - m + int(rng.integers(1, 4))).encode()
    if choice == 11:
        return isa.gemm(m=1, wgt=cfg.spad_depth - c + int(rng.integers(1, 4))).encode()
    if choice == 12:
        count = int(rng.integers(2, 6))
        stride = int(rng.integers(1, 4))
        return isa.alu(dst=cfg.acc_depth - (count - 1) * stride + int(rng.integers(0, 3)),
                       dst_stride=stride, count=count, use_imm=1).encode()
    # A dependency flag its queue does not use.
    insn = rng.choice([isa.load(y_size=1, x_size=1, length=1), isa.store(rows=1, length=1),
                       isa.finish(), isa.sync(queue="load"), isa.sync(queue="store")])
    allowed = isa.allowed_deps(insn.queue)
    stray = [f for f in isa.DEP_FLAGS if f not in allowed]
    return insn.replace(**{str(rng.choice(stray)): 1}).encode()


def _bad_enum(rng: np.random.Generator) -> int:
    """A word of a real opcode with an enum field (or the opcode) holding no member."""
    if rng.random() < 0.3:
        word = int.from_bytes(rng.bytes(16), "little")
        return _set_bits(word, 0, 3, 7)      # Opcode has no 7
    # Enum fields with values that name no member (AluOp 13 to 15, among others).
    holes = [(op, off, width, [v for v in range(1 << width) if v not in {m.value for m in shape}])
             for op in Opcode for name, shape, off, width in _enum_fields(op)]
    holes = [h for h in holes if h[3]]
    op, off, width, bad = holes[int(rng.integers(0, len(holes)))]
    base = {Opcode.LOAD: isa.load(y_size=1, x_size=1, length=1), Opcode.STORE: isa.store(rows=1, length=1),
            Opcode.ALU: isa.alu(count=1), Opcode.CONFIG: isa.config(), Opcode.SYNC: isa.sync()}[op]
    return _set_bits(base.encode(), off, width, int(rng.choice(bad)))


MALFORMED = ("random_word", "bad_enum", "field_range", "window_load", "window_store",
             "missing_token", "extra_pop", "misaligned_base", "count_past_window",
             "fetch_past_window")


def malformed_case(cfg: NPUConfig, seed: int) -> Case:
    """A valid random prefix, then one fault (the seed picks which, see :data:`MALFORMED`).

    The case's ``error`` is what the functional model says; a random word may happen to
    be a valid instruction, or an extra pop take a spare token, in which case the program
    finishes, perhaps with races between its queues: then its status and counters are
    compared, not its bytes."""
    rng = np.random.default_rng(seed)
    fault = MALFORMED[seed % len(MALFORMED)]
    b = Builder(cfg, size=8192)
    b.data(rng.integers(0, 256, 4096, dtype=np.uint8))
    base = 0
    window = (0, len(b.dram))
    if fault in ("missing_token", "extra_pop"):
        body = serialize(_random_valid(cfg, rng, int(rng.integers(2, 10))))
        pushes = [(i, f) for i, insn in enumerate(body) for f in isa.DEP_FLAGS
                  if f.startswith("push") and insn.fields.get(f)]
        if fault == "missing_token" and pushes:
            i, f = pushes[int(rng.integers(0, len(pushes)))]
            body[i] = body[i].replace(**{f: 0})
        else:
            i = int(rng.integers(0, len(body)))
            pops = [f for f in isa.allowed_deps(body[i].queue) if f.startswith("pop")]
            body[i] = body[i].replace(**{str(rng.choice(pops)): 1})
        words = [i.encode() for i in body + [isa.finish()]]
    elif fault in ("window_load", "window_store"):
        # The window leaves out [0, 256) and the image past the program; the prefix keeps
        # inside it, and the faulty access reaches out of one edge by a few bytes. It is
        # serialized with the prefix, so that it is the first access out.
        prefix = []
        for insn in _random_valid(cfg, rng, int(rng.integers(0, 8))):
            if insn.opcode is Opcode.LOAD and isa.load_extent(insn)[0] < 256:
                continue
            if insn.opcode is Opcode.STORE and isa.store_extent(insn)[0] < 256:
                continue
            prefix.append(insn)
        dummy = isa.load(y_size=1, x_size=1, length=1) if fault == "window_load" else \
            isa.store(rows=1, length=1)
        body = serialize(prefix + [dummy])
        base = b.reserve(16 * (len(body) + 1))
        window = (256, base + 16 * (len(body) + 1) + int(rng.integers(0, 64)))
        if fault == "window_load":
            mem = rng.choice([Mem.SPAD, Mem.ACC, Mem.PARAM])
            width = cfg.rows if mem is Mem.SPAD else cfg.cols
            esize = isa.DRAM_ELEM_BYTES[mem]
            ys = int(rng.integers(1, 4))
            y_stride = int(rng.integers(0, 64))
            length = int(rng.integers(1, width + 1))
            if rng.random() < 0.5:
                dram = window[0] - int(rng.integers(1, 32))
            else:
                dram = window[1] - (ys - 1) * y_stride - length * esize + int(rng.integers(1, 8))
            bad = isa.load(mem=mem, dram=dram, y_size=ys, x_size=1, y_stride=y_stride,
                           length=length)
        else:
            rows = int(rng.integers(1, 4))
            stride = int(rng.integers(0, 40))
            length = int(rng.integers(1, cfg.cols + 1))
            if rng.random() < 0.5:
                dram = window[0] - int(rng.integers(1, 16))
            else:
                dram = window[1] - (rows - 1) * stride - length + int(rng.integers(1, 8))
            bad = isa.store(dram=dram, rows=rows, stride=stride, length=length,
                            clamp_lo=-128, clamp_hi=127)
        flags = {f: body[-1].fields[f] for f in isa.DEP_FLAGS}
        body[-1] = bad.replace(**flags)
        words = [i.encode() for i in body + [isa.finish()]]
    else:
        words = [i.encode() for i in serialize(_random_valid(cfg, rng, int(rng.integers(0, 8))))]
    if fault not in ("window_load", "window_store"):
        # The program sits after the data; the window is the whole image unless the
        # fault is the fetch's.
        tokens = fault in ("missing_token", "extra_pop")       # words are complete already
        finish = not tokens and fault not in ("count_past_window", "fetch_past_window")
        count = len(words) + (not tokens) + finish
        base = b.reserve(16 * count)
        window = (0, len(b.dram))
        if fault == "random_word":
            words.append(int.from_bytes(rng.bytes(16), "little"))
        elif fault == "bad_enum":
            words.append(_bad_enum(rng))
        elif fault == "field_range":
            words.append(_out_of_range(cfg, rng))
        elif fault in ("misaligned_base", "count_past_window", "fetch_past_window"):
            words.append(isa.sync(queue="compute").encode())
        if finish:
            words.append(isa.finish().encode())
    count = len(words)
    b.dram[base:base + 16 * count] = np.frombuffer(isa.words_to_bytes(words), np.uint8)
    insn_base = base
    if fault == "count_past_window":
        # No FINISH: fetching goes on past the program and out of the window.
        window = (0, base + 16 * count)
        count += int(rng.integers(1, 5))
    elif fault == "fetch_past_window":
        window = (0, base + 16 * int(rng.integers(0, count)) + int(rng.integers(0, 16)))
    elif fault == "misaligned_base":
        insn_base = base + int(rng.integers(1, 16))
    case = Case(cfg, b.dram, insn_base, count, window=window, name=f"{fault}{seed}")
    case.extra["max_cycles"] = MALFORMED_CYCLES
    case.extra["fault"] = fault
    return case


def make_case(cfg: NPUConfig, kind: str, seed: int, length: int = VALID_LENGTH) -> Case:
    """The case ``seed`` of ``kind`` (``"valid"`` or ``"malformed"``)."""
    if kind == "valid":
        return valid_case(cfg, seed, length)
    if kind == "malformed":
        return malformed_case(cfg, seed)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


# ------------------------------------------------------------------------------ running

@dataclass
class Outcome:
    """One case's run and what :func:`check` found wrong (nothing: ``problems == []``)."""
    case: Case
    status: str
    error: ErrorCode
    error_index: int
    cycles: int
    instructions: int                    #: instructions dispatched (INSNS_* summed)
    bus: dict[str, int]
    problems: list[str] = field(default_factory=list)


def run_case(bus: HarnessSession, case: Case) -> tuple[driver.RunResult, np.ndarray, dict]:
    """Run ``case`` on a harness from a cleared RAM; returns the driver's result, the
    DRAM image after the run and the bus monitor's report."""
    window = case.window if case.window is not None else (0, len(case.dram))
    bus.reset()
    bus.clear()
    bus.load(0, case.dram)
    bus.monitor(window)
    r = driver.execute(driver.run(case.insn_base, case.insn_count, window,
                                  max_cycles=case.extra.get("max_cycles", 200_000),
                                  poll_cycles=20_000), bus)
    return r, bus.dump(0, len(case.dram)), bus.bus_report()


def check(case: Case, r: driver.RunResult, dram: np.ndarray, bus: dict) -> list[str]:
    """What differs between the run and the functional model (empty: nothing)."""
    cfg = case.config
    problems = []
    regs = r.registers
    if bus["outside"]:
        kind = {1: "read", 2: "write"}.get(bus["kind"], "access")
        problems.append(f"{bus['outside']} bus accesses left the window {case.window}, the first "
                        f"a {kind} at {bus['addr']:#x}")
    if r.status == "timeout":
        problems.append(f"no stop within {case.extra.get('max_cycles')} cycles (a hang)")
        return problems
    if case.error is not None:
        if r.status != "error":
            problems.append(f"status {r.status}, the model stops with {case.error}")
        elif (r.error, r.error_index) != (case.error.code, case.error.index):
            problems.append(f"{r.error.name} at {r.error_index}, the model: {case.error}")
        lo, hi = case.window or (0, len(case.dram))
        if not np.array_equal(dram[:lo], case.dram[:lo]) or \
                not np.array_equal(dram[hi:], case.dram[hi:len(dram)]):
            problems.append("bytes outside the DMA window changed")
        return problems
    if r.status != "done":
        return problems + [f"status {r.status} ({r.error.name} at {r.error_index}), the model "
                           f"finishes"]
    diff = np.flatnonzero(dram != case.expect_dram)
    # A malformed case the model finishes (a random word that is a valid instruction, a
    # spare token popped) may race: its bytes depend on timing, its counts do not.
    if diff.size and "fault" not in case.extra:
        problems.append(f"{diff.size} DRAM bytes differ, the first at {diff[:4].tolist()}")
    counts = case.counts
    expect = {"MACS": counts.macs, "DMA_RD_BYTES": counts.dram_read_bytes,
              "DMA_WR_BYTES": counts.dram_write_bytes, "INSN_RD_BYTES": counts.insn_read_bytes,
              "ARRAY_BUSY": counts.macs // (cfg.rows * cfg.cols)}
    expect.update({f"INSNS_{op.name}": counts.insns[op.name] for op in Opcode})
    for name, value in expect.items():
        if regs[name] != value:
            problems.append(f"{name} is {regs[name]}, the model counts {value}")
    return problems


def run_batch(config: str, kind: str, seeds, *, length: int = VALID_LENGTH,
              session: HarnessSession | None = None, progress=None) -> list[Outcome]:
    """Run the cases ``seeds`` of ``kind`` on configuration ``config`` (a :data:`CONFIGS`
    name) in one harness; returns one :class:`Outcome` per case. ``progress(done, total)``
    is called after each case."""
    cfg = CONFIGS[config]
    seeds = list(seeds)
    own = session is None
    bus = FastRTLSimulator(cfg).session() if own else session
    outcomes = []
    try:
        for k, seed in enumerate(seeds):
            case = make_case(cfg, kind, seed, length)
            r, dram, report = run_case(bus, case)
            regs = r.registers
            out = Outcome(case=case, status=r.status, error=r.error, error_index=r.error_index,
                          cycles=regs["CYCLES"],
                          instructions=sum(regs[f"INSNS_{op.name}"] for op in Opcode),
                          bus=report, problems=check(case, r, dram, report))
            outcomes.append(out)
            if progress is not None:
                progress(k + 1, len(seeds))
    finally:
        if own:
            bus.close()
    return outcomes


def describe_failures(config: str, kind: str, outcomes: list[Outcome],
                      length: int = VALID_LENGTH, limit: int = 10) -> str:
    """A report of the failing cases: seed, what is wrong, the command that replays it."""
    lines = []
    bad = [o for o in outcomes if o.problems]
    for o in bad[:limit]:
        seed = int("".join(ch for ch in o.case.name if ch.isdigit()))
        lines.append(f"{config} {o.case.name}: {'; '.join(o.problems)}\n"
                     f"    replay: {replay_command(config, kind, seed, length)}")
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Replay fuzz cases: ``python -m tests.sim.fuzz --config tiny --kind valid --seed 17``."""
    ap = argparse.ArgumentParser(prog="python -m tests.sim.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=list(CONFIGS), default="tiny")
    ap.add_argument("--kind", choices=KINDS, default="valid")
    ap.add_argument("--seed", type=int, required=True, help="the first case")
    ap.add_argument("--count", type=int, default=1, help="cases from --seed on (default 1)")
    ap.add_argument("--length", type=int, default=VALID_LENGTH,
                    help=f"random instructions of a valid case (default {VALID_LENGTH})")
    ap.add_argument("--show", action="store_true", help="print the program's disassembly")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    outcomes = run_batch(args.config, args.kind, range(args.seed, args.seed + args.count),
                         length=args.length)
    for o in outcomes:
        c = o.case
        if args.show:
            words = [int.from_bytes(c.dram[c.insn_base + 16 * i:c.insn_base + 16 * i + 16].tobytes(),
                                    "little") for i in range(c.insn_count)
                     if c.insn_base + 16 * i + 16 <= len(c.dram)]
            for i, w in enumerate(words):
                try:
                    text = isa.disassemble_one(isa.decode(w))
                except isa.ISAError as exc:
                    text = f"{w:#034x}  ({exc})"
                print(f"  {i:4d}  {text}")
        model = "done" if c.error is None else str(c.error)
        print(f"{c.name}: rtl {o.status} {o.error.name}@{o.error_index}, {o.cycles} cycles; "
              f"model {model}; bus {o.bus}; "
              + ("OK" if not o.problems else "MISMATCH: " + "; ".join(o.problems)))
    bad = sum(bool(o.problems) for o in outcomes)
    print(f"{len(outcomes)} cases, {bad} mismatches, {time.perf_counter() - t0:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
