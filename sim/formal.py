"""Formal checks of small control blocks with Yosys's own SAT solver.

A check is an Amaranth component whose ports are the free inputs (the solver picks their
values in every cycle) and whose body holds the block under test, a naive model of it
and ``Assert``/``Assume`` statements comparing the two. :func:`prove` converts it to
RTLIL and runs Yosys's ``sat -tempinduct``: a base case from reset and an induction step,
lengthened until both hold (a proof for every reachable state and every input sequence,
not a bounded search) or until ``max_steps`` (then :class:`FormalError`). Yosys's
built-in SAT solver needs no external SMT solver, so this runs wherever YoWASP Yosys
does (``tests/hw/test_formal.py``).

Free inputs must be ports: an undriven internal signal is its reset value, a constant,
and an assumption over it is vacuously true.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import tempfile
from dataclasses import dataclass

from amaranth.back import rtlil

__all__ = ["FormalError", "Proof", "prove"]


class FormalError(AssertionError):
    """A formal check failed (a counterexample, or no proof within the step limit)."""


@dataclass(frozen=True)
class Proof:
    """A passed check: the induction length that proved it, and Yosys's problem size."""
    steps: int
    variables: int
    clauses: int


def prove(top, *, name: str = "check", max_steps: int = 20, timeout: float = 300.0) -> Proof:
    """Prove every ``Assert`` of the component ``top`` under its ``Assume``\\ s, from reset
    (every register at its reset value) over all input sequences.

    Raises :class:`FormalError` with the failing assertions' source lines and the
    counterexample's inputs when a base case fails, or when no induction of at most
    ``max_steps`` cycles holds (the assertions may be true but not inductive: strengthen
    them); :class:`sim.toolchain.ToolchainError` when there is no Yosys.
    """
    from toolchain.yosys import find_yosys
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, not {max_steps!r}")
    text = rtlil.convert(top, name=name)
    if "$check" not in text:
        raise FormalError(f"{name}: the design has no Assert: nothing to prove")
    with tempfile.TemporaryDirectory(prefix="npu-formal-") as tmp:
        path = pathlib.Path(tmp) / f"{name}.il"
        path.write_text(text)
        script = (f"read_rtlil {path.name}; prep -top {name}; flatten; opt_clean; async2sync; "
                  f"chformal -lower; dffunmap; "
                  f"sat -tempinduct -prove-asserts -set-assumes -set-init-zero "
                  f"-maxsteps {max_steps} -show-inputs -show-regs")
        try:
            run = subprocess.run(find_yosys() + ["-p", script], cwd=tmp, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FormalError(f"{name}: no result within {timeout:.0f} s") from None
    out = run.stdout
    if "Induction step proven: SUCCESS!" in out:
        steps = re.findall(r"\[induction step (\d+)\] Solving problem with (\d+) variables "
                           r"and (\d+) clauses", out)
        k, v, c = (int(x) for x in steps[-1])
        return Proof(k, v, c)
    if "base case: FAIL" not in out and "Reached maximum number of time steps" not in out:
        raise FormalError(f"{name}: Yosys failed: {(run.stderr or out)[-2000:]}")
    trace = out[out.rfind("Time Signal"):] if "Time Signal" in out else ""
    if "base case: FAIL" in out:
        what = "a counterexample from reset (the inputs and registers cycle by cycle)"
    else:
        what = (f"no induction of at most {max_steps} steps holds: the assertions are false in "
                f"some unreachable state (strengthen them) or need a longer window; the last "
                f"induction counterexample")
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip() and not ln.startswith("  ----")]
    raise FormalError(f"{name}: {what}:\n" + "\n".join(lines[:200]))
