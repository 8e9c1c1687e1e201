"""Instruction timelines: what ran on each queue, when.

A :class:`Span` is one instruction on one of the NPU's three queues (load,
compute, store), from the cycle it starts to the cycle it ends (exclusive), with
the layer it belongs to. The performance model (:mod:`sw.analysis.perf`) and the
``rtl`` backend both give a program's spans; this module turns them into Chrome
trace-event JSON that opens in Perfetto (https://ui.perfetto.dev).
"""

from __future__ import annotations

from dataclasses import dataclass

from hw.isa import Queue

__all__ = ["Span", "QUEUE_NAMES"]

#: The queues, by the names traces use (one track each).
QUEUE_NAMES = {Queue.LOAD: "load", Queue.COMPUTE: "compute", Queue.STORE: "store"}


@dataclass(frozen=True)
class Span:
    """One instruction's time on its queue.

    ``index`` is the instruction's position in the program (0 = first word);
    ``begin`` is the first cycle it occupies its unit and ``end`` the cycle after
    its last (so ``end - begin`` cycles), counted from the program's start.
    """
    queue: str          #: "load", "compute" or "store"
    index: int          #: instruction index in the program
    opcode: str         #: Opcode name ("LOAD", "GEMM", "ALU", "STORE", "SYNC", ...)
    layer: int          #: the CONFIG layer id in force when it was dispatched
    begin: int
    end: int
