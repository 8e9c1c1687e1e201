"""The dependency-token counters between the queues, wired from the ISA's tables.

Each token queue of :class:`~hw.isa.TokenQueue` is a counter. A queue unit presents
the dependency flags of its head instruction (``flags``); it may start (``ready``)
when every token queue it pops from (:data:`~hw.isa.TOKEN_POPS`) holds a token and
every token queue it pushes to (:data:`~hw.isa.TOKEN_PUSHES`) has room. When it
starts (``start``) its pops are taken and its pushes reserved, so a unit with work
in flight (the compute pipeline) cannot overfill a queue; each push is given when
the unit says it is done (``done``, one bit per flag).
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..isa import DEP_FLAGS, INSN_BITS, TOKEN_POPS, TOKEN_PUSHES, Queue, TokenQueue

__all__ = ["DEPS", "QUEUE_ENTRY", "QueueTokens", "Tokens", "connect_flags", "give_pushes",
           "queue_head"]

#: The four dependency flags of an instruction header, one bit each.
DEPS = data.StructLayout({flag: 1 for flag in DEP_FLAGS})

#: An entry of an instruction queue: the word and its index in the program.
QUEUE_ENTRY = data.StructLayout({"word": INSN_BITS, "index": 32})


class QueueTokens(wiring.Signature):
    """A queue unit's side: ``flags`` of its head, ``start`` (the head takes its tokens
    this cycle), ``done`` (the pushes given this cycle); ``ready`` in."""

    def __init__(self) -> None:
        super().__init__({"flags": Out(DEPS), "start": Out(1), "done": Out(DEPS),
                          "ready": In(1)})


class Tokens(wiring.Component):
    """Token counters of capacity ``depth`` (1 to 255).

    Ports
    -----
    queue[q]: the unit of :class:`~hw.isa.Queue` ``q`` (:class:`QueueTokens`, flipped).
    count[t], reserved[t]: the tokens in :class:`~hw.isa.TokenQueue` ``t``, and those
    reserved by started work that has not given them yet.

    Raises
    ------
    ValueError: ``depth`` out of range.
    """

    def __init__(self, *, depth: int) -> None:
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 255:
            raise ValueError(f"Tokens depth must be an int from 1 to 255, not {depth!r}")
        self.depth = depth
        super().__init__({
            "queue": In(QueueTokens()).array(len(Queue)),
            "count": Out(8).array(len(TokenQueue)),
            "reserved": Out(8).array(len(TokenQueue)),
        })

    def elaborate(self, platform):
        m = Module()
        inc = {t: Signal(name=f"inc_{t.name.lower()}") for t in TokenQueue}
        dec = {t: Signal(name=f"dec_{t.name.lower()}") for t in TokenQueue}
        for q in Queue:
            unit = self.queue[q.value]
            ready = Const(1)
            for flag, t in TOKEN_POPS[q].items():
                want = getattr(unit.flags, flag)
                ready &= ~want | (self.count[t.value] != 0)
                m.d.comb += dec[t].eq(unit.start & want)
            for flag, t in TOKEN_PUSHES[q].items():
                want = getattr(unit.flags, flag)
                held = self.count[t.value] + self.reserved[t.value]
                ready &= ~want | (held < self.depth)
                given = getattr(unit.done, flag)
                m.d.comb += inc[t].eq(given)
                m.d.sync += self.reserved[t.value].eq(
                    self.reserved[t.value] + (unit.start & want) - given)
            m.d.comb += unit.ready.eq(ready)
        for t in TokenQueue:
            m.d.sync += self.count[t.value].eq(self.count[t.value] + inc[t] - dec[t])
        return m


def connect_flags(m, unit, hdr):
    """Drive a queue unit's token ``flags`` from its head instruction's header."""
    for flag in DEP_FLAGS:
        m.d.comb += getattr(unit.flags, flag).eq(getattr(hdr, flag))


def give_pushes(m, unit, queue, hdr, finished):
    """Give every push of ``queue``'s head instruction in the cycle it is ``finished``."""
    for flag in TOKEN_PUSHES[queue]:
        m.d.comb += getattr(unit.done, flag).eq(finished & getattr(hdr, flag))


@contextmanager
def queue_head(m, insn, entry, tokens, halt, stalled):
    """The IDLE and WAIT states every queue unit shares (inside its ``m.FSM``).

    IDLE takes the head of the unit's instruction stream ``insn`` (payload
    :data:`QUEUE_ENTRY`) into ``entry``; WAIT holds it until its tokens can be taken
    (``tokens.ready``), raising ``stalled`` in the cycles it waits. The body runs in the
    cycle the tokens are taken (``tokens.start``) and sets ``m.next``.
    """
    with m.State("IDLE"):
        with m.If(insn.valid & ~halt):
            m.d.comb += insn.ready.eq(1)
            m.d.sync += entry.eq(insn.payload)
            m.next = "WAIT"
    with m.State("WAIT"):
        with m.If(~halt):
            with m.If(tokens.ready):
                m.d.comb += tokens.start.eq(1)
                yield
            with m.Else():
                m.d.comb += stalled.eq(1)
