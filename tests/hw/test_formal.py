"""Formal proofs (Yosys SAT, temporal induction from reset) of the small control blocks
against naive models: the dependency-token counters and the DMA read arbiter.

Each check is a component whose ports are free inputs; the block under test sits inside
with a naive model of it (unbounded-width counters, a plain rule per output) and
``Assert``\\ s comparing the two under ``Assume``\\ s of what the rest of the NPU guarantees
(a unit starts only when ready, gives only pushes it reserved; an AXI master holds its
request until the handshake). A proof covers every reachable state and input sequence.
"""

import pytest
from amaranth.hdl import Assert, Assume, Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hw.core.tokens import DEPS, Tokens
from hw.dma import ReadArbiter
from hw.isa import DEP_FLAGS, TOKEN_POPS, TOKEN_PUSHES, Queue, TokenQueue
from sim.formal import FormalError, prove


class TokensCheck(wiring.Component):
    """:class:`Tokens` of capacity ``depth`` against per-queue counters of the tokens given
    and taken and of the pushes reserved, with capacity ``model_depth``."""

    def __init__(self, depth: int, model_depth: int | None = None) -> None:
        self.depth = depth
        self.model_depth = depth if model_depth is None else model_depth
        ports = {}
        for q in Queue:
            ports.update({f"flags_{q.name}": In(DEPS), f"start_{q.name}": In(1),
                          f"done_{q.name}": In(DEPS)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = Tokens(depth=self.depth)
        cap = self.model_depth
        count = {t: Signal(10, name=f"model_count_{t.name}") for t in TokenQueue}
        held = {t: Signal(10, name=f"model_reserved_{t.name}") for t in TokenQueue}
        take, reserve, give = {}, {}, {}
        for q in Queue:
            unit = dut.queue[q.value]
            flags, start, done = (getattr(self, f"{x}_{q.name}") for x in ("flags", "start", "done"))
            m.d.comb += [unit.flags.eq(flags), unit.start.eq(start), unit.done.eq(done)]
            # The unit's side of the protocol: start only when ready, give only what it reserved.
            m.d.comb += Assume(~start | unit.ready)
            ready = Const(1)
            for flag, t in TOKEN_POPS[q].items():
                want = getattr(flags, flag)
                ready &= ~want | (count[t] != 0)
                take[t] = start & want
            for flag, t in TOKEN_PUSHES[q].items():
                want = getattr(flags, flag)
                ready &= ~want | (count[t] + held[t] < cap)
                reserve[t] = start & want
                give[t] = getattr(done, flag)
                m.d.comb += Assume(~give[t] | (held[t] != 0))
            for flag in DEP_FLAGS:
                if flag not in TOKEN_PUSHES[q]:
                    m.d.comb += Assume(~getattr(done, flag))
            m.d.comb += Assert(unit.ready == ready)
        for t in TokenQueue:
            m.d.sync += [count[t].eq(count[t] + give[t] - take[t]),
                         held[t].eq(held[t] + reserve[t] - give[t])]
            m.d.comb += [Assert(dut.count[t.value] == count[t]),
                         Assert(dut.reserved[t.value] == held[t]),
                         Assert(count[t] + held[t] <= cap)]
        return m


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
def test_token_counters_equal_the_naive_model(depth):
    proof = prove(TokensCheck(depth), name=f"tokens_{depth}")
    assert proof.steps >= 1 and proof.clauses > 0


def test_a_wrong_capacity_in_the_model_is_a_counterexample():
    # The check can fail: the same counters against a model one token smaller.
    with pytest.raises(FormalError, match="counterexample from reset"):
        prove(TokensCheck(2, model_depth=1), name="tokens_wrong")


class ArbiterCheck(wiring.Component):
    """:class:`ReadArbiter` of ``n`` readers against the rules of AXI and of routing by ID.

    With ``masters_hold``, each reader keeps ``arvalid``, ``araddr`` and ``arlen`` until its
    handshake, as AXI requires of a master; the arbiter must then keep the shared AR stable
    until its handshake too."""

    ADDR = 8
    DATA = 8

    def __init__(self, n: int, *, masters_hold: bool = True) -> None:
        self.n = n
        self.masters_hold = masters_hold
        ports = {"arready": In(1), "rdata": In(self.DATA), "rresp": In(2), "rvalid": In(1),
                 "rid": In(2)}
        for i in range(n):
            ports.update({f"araddr_{i}": In(self.ADDR), f"arlen_{i}": In(8),
                          f"arvalid_{i}": In(1), f"rready_{i}": In(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = ReadArbiter(n=self.n, data_width=self.DATA)
        bus = dut.m
        stalls = []
        m.d.comb += [bus.arready.eq(self.arready), bus.rdata.eq(self.rdata),
                     bus.rresp.eq(self.rresp), bus.rvalid.eq(self.rvalid), bus.rid.eq(self.rid)]
        for i, port in enumerate(dut.s):
            addr, length, valid = (getattr(self, f"{x}_{i}") for x in ("araddr", "arlen", "arvalid"))
            m.d.comb += [port.araddr.eq(addr), port.arlen.eq(length), port.arvalid.eq(valid),
                         port.rready.eq(getattr(self, f"rready_{i}"))]
            stalled = Signal(name=f"stalled_{i}")
            stalls.append(stalled)
            last_addr, last_len = Signal.like(addr), Signal.like(length)
            m.d.sync += [stalled.eq(valid & ~port.arready), last_addr.eq(addr), last_len.eq(length)]
            if self.masters_hold:
                m.d.comb += Assume(~stalled | (valid & (addr == last_addr) & (length == last_len)))
            # Each reader's handshake is the shared port's, under its ID, and nothing else.
            m.d.comb += [
                Assert((valid & port.arready) == (bus.arvalid & bus.arready & (bus.arid == i))),
                Assert((bus.arid != i) | ((bus.araddr == addr) & (bus.arlen == length)
                                          & (bus.arvalid == valid))),
                # R beats go to the reader their ID names, backpressure from that reader.
                Assert(port.rvalid == (bus.rvalid & (bus.rid == i))),
                Assert(port.rdata == bus.rdata),
                Assert((bus.rid != i) | (bus.rready == port.rready)),
            ]
        # The invariant that makes the rest inductive: a held grant is a reader left waiting.
        stalled_at_grant = Const(0)
        for i, stalled in enumerate(stalls):
            stalled_at_grant |= (dut.grant == i) & stalled
        m.d.comb += Assert(~dut.locked | stalled_at_grant)
        # Work conserving: a request is never left waiting while the port is idle.
        anyone = Const(0)
        for i in range(self.n):
            anyone |= getattr(self, f"arvalid_{i}")
        m.d.comb += Assert(bus.arvalid == anyone)
        # AXI: the shared AR holds, unchanged, from the cycle it is offered to its handshake.
        stalled = Signal()
        last = Signal.like(Const(0, 2 + self.ADDR + 8))
        now = Signal.like(last)
        m.d.comb += now.eq(Cat(bus.arid, bus.araddr, bus.arlen))
        m.d.sync += [stalled.eq(bus.arvalid & ~bus.arready), last.eq(now)]
        m.d.comb += Assert(~stalled | (bus.arvalid & (now == last)))
        return m


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_read_arbiter_keeps_axi_rules_and_routes_by_id(n):
    proof = prove(ArbiterCheck(n), name=f"arbiter_{n}")
    assert proof.steps >= 1


def test_arbiter_without_the_masters_rule_is_a_counterexample():
    # The check can fail: a reader that withdraws its request breaks the shared AR's stability.
    with pytest.raises(FormalError, match="counterexample from reset"):
        prove(ArbiterCheck(2, masters_hold=False), name="arbiter_loose")
