"""The DMA engines: AXI4 read and write of byte vectors at any address.

:class:`DMAReader` turns requests "``nbytes`` from byte address ``addr``" into
INCR bursts (split at ``burst_len`` beats and at 4 KiB boundaries, as AXI
requires) and hands back the bytes aligned to byte 0, with the request's tag.
:class:`DMAWriter` does the reverse, with byte strobes. Both check every request
against the DMA window ``[lo, hi)`` before touching the bus: a request outside it
raises ``error`` and goes no further. Reads of several requests are in flight at
once; reads and writes proceed together.

``halt`` stops new bursts; bursts already started finish, and read data and write
responses keep being accepted, so the bus is never left mid-transaction.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import AXI4ReadSignature, AXI4WriteSignature

__all__ = ["DMAReader", "DMAWriter", "ReadArbiter"]


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int from {lo} to {hi}, not {value!r}")


def _engine_geometry(engine, kind: str, data_width: int, max_bytes: int, burst_len: int,
                     tag_width: int) -> None:
    """Check and record the parameters both DMA engines share."""
    _check(f"{kind} data_width", data_width, 32, 1024)
    _check(f"{kind} max_bytes", max_bytes, 1, 4096)
    _check(f"{kind} burst_len", burst_len, 1, 256)
    engine.data_width = data_width
    engine.beat_bytes = data_width // 8
    engine.max_bytes = max_bytes
    engine.burst_len = burst_len
    engine.tag_width = tag_width
    # Beats that a vector of max_bytes can touch at the worst alignment.
    engine.max_beats = -(-(engine.beat_bytes - 1 + max_bytes) // engine.beat_bytes)


def _burst_len(addr, beats_left, burst_len: int, beat_bytes: int):
    """Beats of the next burst: no more than left, the maximum, or what reaches 4 KiB."""
    to_4k = (4096 - addr[:12]) >> exact_log2(beat_bytes)   # 1 .. 4096/B
    n = Mux(beats_left < burst_len, beats_left, burst_len)
    return Mux(to_4k < n, to_4k, n)


class DMAReader(wiring.Component):
    """Reads byte vectors over AXI4 (the AR and R channels of one ID).

    Parameters
    ----------
    data_width: AXI data bits.
    max_bytes: longest vector.
    burst_len: longest burst in beats.
    tag_width: bits of the request tag returned with the data.
    queue_depth: requests in flight.

    Ports
    -----
    req_valid/ready, req_addr, req_nbytes, req_tag: a vector to read.
    resp_valid/ready, resp_data (``max_bytes`` bytes, vector at byte 0), resp_tag.
    lo, hi: the DMA window. error, error_tag: a request fell outside it (sticky).
    bus_error, bus_error_tag: a beat came back with SLVERR or DECERR, and the tag of the
    first such request (sticky).
    halt: stop issuing. idle: no request in flight.
    axi: the AXI read channels (:class:`~hw.axi.AXI4ReadSignature`; the arbiter adds the ID).
    """

    def __init__(self, *, data_width: int, max_bytes: int, burst_len: int, tag_width: int,
                 queue_depth: int = 4) -> None:
        _engine_geometry(self, "DMAReader", data_width, max_bytes, burst_len, tag_width)
        _check("DMAReader queue_depth", queue_depth, 1, 64)
        self.queue_depth = queue_depth
        super().__init__({
            "req_valid": In(1), "req_ready": Out(1), "req_addr": In(32),
            "req_nbytes": In(range(max_bytes + 1)), "req_tag": In(tag_width),
            "resp_valid": Out(1), "resp_ready": In(1),
            "resp_data": Out(data.ArrayLayout(8, max_bytes)), "resp_tag": Out(tag_width),
            "lo": In(32), "hi": In(32),
            "error": Out(1), "error_tag": Out(tag_width), "bus_error": Out(1),
            "bus_error_tag": Out(tag_width),
            "halt": In(1), "idle": Out(1),
            "axi": Out(AXI4ReadSignature(addr_width=32, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.beat_bytes
        lb = exact_log2(B)

        desc_layout = data.StructLayout({
            "offset": range(B), "beats": range(self.max_beats + 1), "tag": self.tag_width})
        # First-word-fall-through: a descriptor written with its AR is visible when the first
        # beat can come back, the next cycle, so single-beat vectors stream one per cycle.
        m.submodules.desc = desc = SyncFIFO(width=desc_layout.size, depth=self.queue_depth)

        # Issue side: check the window, queue a descriptor, issue the bursts.
        cur = Signal(32)
        left = Signal(range(self.max_beats + 1))
        end = Signal(33)
        m.d.comb += end.eq(self.req_addr + self.req_nbytes)
        in_window = (self.req_addr >= self.lo) & (end <= self.hi)
        total_beats = Signal(range(self.max_beats + 1))
        m.d.comb += total_beats.eq((self.req_addr[:lb] + self.req_nbytes + B - 1) >> lb)
        d_in = Signal(desc_layout)
        m.d.comb += [
            d_in.offset.eq(self.req_addr[:lb]),
            d_in.beats.eq(total_beats),
            d_in.tag.eq(self.req_tag),
            desc.w_data.eq(d_in),
        ]
        blen = Signal(range(self.burst_len + 1))
        m.d.comb += blen.eq(_burst_len(cur, left, self.burst_len, B))

        # A request that is a single burst goes out straight from IDLE, so a stream of short
        # vectors issues one AR per cycle.
        to_4k = (4096 - self.req_addr[:12]) >> lb
        single = (total_beats <= self.burst_len) & (total_beats <= to_4k)
        with m.FSM(name="issue") as fsm:
            with m.State("IDLE"):
                open_ = desc.w_rdy & ~self.halt & ~self.error
                with m.If(self.req_valid & open_):
                    with m.If(~in_window | end[32]):
                        m.d.comb += self.req_ready.eq(1)
                        m.d.sync += [self.error.eq(1), self.error_tag.eq(self.req_tag)]
                    with m.Elif(single):
                        m.d.comb += [
                            self.axi.arvalid.eq(1),
                            self.axi.araddr.eq(Cat(Const(0, lb), self.req_addr[lb:])),
                            self.axi.arlen.eq(total_beats - 1),
                            self.req_ready.eq(self.axi.arready),
                            desc.w_en.eq(self.axi.arready),
                        ]
                    with m.Else():
                        m.d.comb += [self.req_ready.eq(1), desc.w_en.eq(1)]
                        m.d.sync += [
                            cur.eq(Cat(Const(0, lb), self.req_addr[lb:])),
                            left.eq(total_beats),
                        ]
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [
                    self.axi.arvalid.eq(1),
                    self.axi.araddr.eq(cur),
                    self.axi.arlen.eq(blen - 1),
                ]
                with m.If(self.axi.arready):
                    m.d.sync += [cur.eq(cur + (blen << lb)), left.eq(left - blen)]
                    with m.If(left == blen):
                        m.next = "IDLE"

        # Collect side: gather the beats of the oldest descriptor; with the last one, shift the
        # vector into place in the output register and go on with the next descriptor.
        beats = [Signal(self.data_width, name=f"beat{i}") for i in range(self.max_beats)]
        count = Signal(range(self.max_beats + 1))
        d_out = Signal(desc_layout)
        m.d.comb += d_out.eq(desc.r_data)
        out_valid = Signal()
        out_data = Signal(8 * self.max_bytes)
        out_tag = Signal(self.tag_width)
        m.d.comb += [
            self.resp_valid.eq(out_valid),
            self.resp_data.eq(out_data),
            self.resp_tag.eq(out_tag),
        ]
        out_free = ~out_valid | self.resp_ready
        last_beat = count + 1 == d_out.beats
        collecting = desc.r_rdy & (~last_beat | out_free)
        m.d.comb += self.axi.rready.eq(collecting | self.halt | self.error)
        gathered = Cat(*[Mux(count == i, self.axi.rdata, beats[i]) for i in range(self.max_beats)])
        shifted = Signal(len(gathered))
        m.d.comb += shifted.eq(gathered >> (d_out.offset * 8))
        with m.If(self.resp_valid & self.resp_ready):
            m.d.sync += out_valid.eq(0)
        with m.If(self.axi.rvalid & self.axi.rready):
            with m.If(self.axi.rresp[1] & ~self.bus_error):
                m.d.sync += [self.bus_error.eq(1), self.bus_error_tag.eq(d_out.tag)]
            with m.If(collecting):
                for i in range(self.max_beats):
                    with m.If(count == i):
                        m.d.sync += beats[i].eq(self.axi.rdata)
                with m.If(last_beat):
                    m.d.comb += desc.r_en.eq(1)
                    m.d.sync += [
                        count.eq(0),
                        out_valid.eq(1),
                        out_data.eq(shifted[:8 * self.max_bytes]),
                        out_tag.eq(d_out.tag),
                    ]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
        m.d.comb += self.idle.eq(~desc.r_rdy & fsm.ongoing("IDLE") & ~out_valid)
        return m


class DMAWriter(wiring.Component):
    """Writes byte vectors over AXI4 (AW, W, B), with byte strobes.

    Ports
    -----
    req_valid/ready, req_addr, req_nbytes, req_data (vector at byte 0), req_tag.
    lo, hi: the DMA window. error, error_tag: a request fell outside it (sticky).
    halt: stop starting bursts (a started burst finishes). idle: every write answered.
    axi: the AXI write channels (:class:`hw.axi.AXI4WriteSignature`).
    """

    def __init__(self, *, data_width: int, max_bytes: int, burst_len: int, tag_width: int) -> None:
        _engine_geometry(self, "DMAWriter", data_width, max_bytes, burst_len, tag_width)
        super().__init__({
            "req_valid": In(1), "req_ready": Out(1), "req_addr": In(32),
            "req_nbytes": In(range(max_bytes + 1)),
            "req_data": In(data.ArrayLayout(8, max_bytes)), "req_tag": In(tag_width),
            "lo": In(32), "hi": In(32),
            "error": Out(1), "error_tag": Out(tag_width), "bus_error": Out(1),
            "halt": In(1), "idle": Out(1),
            "axi": Out(AXI4WriteSignature(addr_width=32, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.beat_bytes
        lb = exact_log2(B)
        nb = self.max_beats * B

        end = Signal(33)
        m.d.comb += end.eq(self.req_addr + self.req_nbytes)
        in_window = (self.req_addr >= self.lo) & (end <= self.hi) & ~end[32]
        total_beats = Signal(range(self.max_beats + 1))
        m.d.comb += total_beats.eq((self.req_addr[:lb] + self.req_nbytes + B - 1) >> lb)

        buf = Signal(8 * nb)           # the vector placed at its offset inside whole beats
        strb = Signal(nb)
        cur = Signal(32)
        left = Signal(range(self.max_beats + 1))
        beat = Signal(range(self.max_beats + 1))   # next beat of buf to send
        in_burst = Signal(range(self.burst_len + 1))
        blen = Signal(range(self.burst_len + 1))
        m.d.comb += blen.eq(_burst_len(cur, left, self.burst_len, B))
        outstanding = Signal(16)       # bursts whose B response has not come
        aw_fire = Signal()
        b_fire = Signal()

        with m.FSM(name="write") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.req_ready.eq(~self.halt & ~self.error)
                with m.If(self.req_valid & self.req_ready):
                    with m.If(~in_window):
                        m.d.sync += [self.error.eq(1), self.error_tag.eq(self.req_tag)]
                    with m.Else():
                        offset = self.req_addr[:lb]
                        mask = Signal(self.max_bytes)
                        m.d.comb += mask.eq((Const(1, self.max_bytes + 1) << self.req_nbytes) - 1)
                        m.d.sync += [
                            buf.eq(Cat(self.req_data.as_value()) << (offset * 8)),
                            strb.eq(mask << offset),
                            cur.eq(Cat(Const(0, lb), self.req_addr[lb:])),
                            left.eq(total_beats),
                            beat.eq(0),
                        ]
                        m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [self.axi.awvalid.eq(1), self.axi.awaddr.eq(cur), self.axi.awlen.eq(blen - 1)]
                with m.If(self.axi.awready):
                    m.d.comb += aw_fire.eq(1)
                    m.d.sync += [
                        in_burst.eq(blen),
                        cur.eq(cur + (blen << lb)),
                        left.eq(left - blen),
                    ]
                    m.next = "DATA"
            with m.State("DATA"):
                beat_data = Signal(self.data_width)
                beat_strb = Signal(B)
                m.d.comb += [
                    beat_data.eq(buf.word_select(beat, self.data_width)),
                    beat_strb.eq(strb.word_select(beat, B)),
                    self.axi.wvalid.eq(1),
                    self.axi.wdata.eq(beat_data),
                    self.axi.wstrb.eq(beat_strb),
                    self.axi.wlast.eq(in_burst == 1),
                ]
                with m.If(self.axi.wready):
                    m.d.sync += [beat.eq(beat + 1), in_burst.eq(in_burst - 1)]
                    with m.If(in_burst == 1):
                        with m.If(left == 0):
                            m.next = "IDLE"
                        with m.Elif(self.halt):
                            m.next = "IDLE"     # a halted NPU starts no new burst
                        with m.Else():
                            m.next = "ADDR"

        m.d.comb += [self.axi.bready.eq(1), b_fire.eq(self.axi.bvalid)]
        with m.If(b_fire & self.axi.bresp[1]):
            m.d.sync += self.bus_error.eq(1)
        m.d.sync += outstanding.eq(outstanding + aw_fire - b_fire)
        m.d.comb += self.idle.eq((outstanding == 0) & fsm.ongoing("IDLE"))
        return m


class ReadArbiter(wiring.Component):
    """Shares one AXI read port between ``n`` readers, each with its own ID.

    Reader ``i`` (port ``s[i]``) uses ID ``i``; R beats are routed back by ID. A grant is
    held from the cycle a reader raises ``arvalid`` until its handshake, so AR stays
    stable as AXI requires. ``m`` is the shared port, with IDs.
    """

    def __init__(self, *, n: int, data_width: int, id_width: int = 2) -> None:
        _check("ReadArbiter n", n, 1, 1 << id_width)
        self.n = n
        self.data_width = data_width
        self.id_width = id_width
        super().__init__({
            "s": In(AXI4ReadSignature(addr_width=32, data_width=data_width)).array(n),
            "m": Out(AXI4ReadSignature(addr_width=32, data_width=data_width, id_width=id_width)),
        })
        #: The reader granted, and whether the grant is held (AR offered, not yet taken);
        #: attributes so that a formal check can state its invariant over them.
        self.grant = Signal(range(n))
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        bus = self.m
        grant, locked = self.grant, self.locked
        sel = Signal(range(self.n))
        # Lowest index wins unless a grant is held.
        with m.If(locked):
            m.d.comb += sel.eq(grant)
        with m.Else():
            for i in reversed(range(self.n)):
                with m.If(self.s[i].arvalid):
                    m.d.comb += sel.eq(i)
        for i, port in enumerate(self.s):
            with m.If(sel == i):
                m.d.comb += [
                    bus.arid.eq(i),
                    bus.araddr.eq(port.araddr),
                    bus.arlen.eq(port.arlen),
                    bus.arvalid.eq(port.arvalid),
                    port.arready.eq(bus.arready),
                ]
            m.d.comb += [
                port.rdata.eq(bus.rdata),
                port.rresp.eq(bus.rresp),
                port.rvalid.eq(bus.rvalid & (bus.rid == i)),
            ]
            with m.If(bus.rid == i):
                m.d.comb += bus.rready.eq(port.rready)
        with m.If(bus.arvalid & ~bus.arready):
            m.d.sync += [locked.eq(1), grant.eq(sel)]
        with m.Elif(bus.arvalid & bus.arready):
            m.d.sync += locked.eq(0)
        return m
