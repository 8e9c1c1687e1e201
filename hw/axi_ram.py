"""On-chip RAM behind AXI4, and an arbiter that lets two AXI4 masters share it.

:class:`AXI4RAM` is the NPU's DRAM on an FPGA (block RAM, or the iCE40UP5K's SPRAM) and
in the Verilator harness. It serves one read burst and one write burst at a time, INCR
bursts of the bus width, byte strobes, and answers SLVERR for words past its end (a
read returns zeros there; a write there is dropped).

With ``kind="bram"`` (a memory with one read and one write port) its timing is that of
the harness's hand-written ``axi_ram_fast``: a read burst's first beat is valid the
cycle after its AR handshake and one beat follows per cycle, a new AR is accepted with
the last beat of the previous burst; a write burst takes one beat per cycle after its
AW, its response comes the cycle after the last beat, and the next AW is accepted
after that response. With ``kind="spram"`` the memory has one port (a read or a write
per cycle: the SPRAM's), writes go first and a read beat takes two cycles; on an
iCE40 platform it is made of ``SB_SPRAM256KA`` (16K x 16 bits each, at most four).

:class:`AXI4Arbiter` joins two masters onto one slave: one read burst and one write
burst at a time, each granted to one master until its last beat (reads) or its
response (writes); the masters take turns when both wait.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import RESP_OKAY, RESP_SLVERR, AXI4Signature

__all__ = ["AXI4RAM", "AXI4Arbiter", "RAM_KINDS", "SPRAM_BYTES", "SPRAM_COUNT"]

RAM_KINDS = ("bram", "spram")
#: Bytes of one iCE40UP5K SPRAM (SB_SPRAM256KA: 16384 words of 16 bits), and how many
#: the chip has.
SPRAM_BYTES = 32768
SPRAM_COUNT = 4


class AXI4RAM(wiring.Component):
    """A RAM of ``size`` bytes on an AXI4 slave port.

    Parameters
    ----------
    size: bytes, a positive multiple of the beat (``data_width // 8``).
    data_width, addr_width, id_width: of the AXI4 port (as :class:`~hw.axi.AXI4Signature`).
    kind: ``"bram"`` (read and write ports) or ``"spram"`` (one port; SB_SPRAM256KA on
        an iCE40 platform, at most 4 x 32 KiB and 64-bit data).
    init: initial contents, bytes (or ints 0..255) from address 0, for simulation and
        block RAM (an SPRAM cannot be initialised on a platform).

    Ports: ``s_axi`` (``In(AXI4Signature)``). The memory itself is :attr:`memory` (a
    :class:`~amaranth.lib.memory.Memory` of beats, except for SPRAM on a platform), so
    simulations read and write it directly.

    Raises ValueError for a size, width, kind or initial image that does not fit.
    """

    def __init__(self, *, size: int, data_width: int, addr_width: int = 32, id_width: int = 2,
                 kind: str = "bram", init=b"") -> None:
        if kind not in RAM_KINDS:
            raise ValueError(f"AXI4RAM kind must be one of {', '.join(RAM_KINDS)}, not {kind!r}")
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        beat = data_width // 8
        if not isinstance(size, int) or size <= 0 or size % beat:
            raise ValueError(f"AXI4RAM size must be a positive multiple of the {beat}-byte beat, "
                             f"not {size!r}")
        if size > 1 << addr_width:
            raise ValueError(f"AXI4RAM size {size} is more than {addr_width} address bits reach")
        if kind == "spram":
            if data_width > 64:
                raise ValueError(f"an SPRAM AXI4RAM is at most 64 bits wide (4 SPRAMs of 16 bits "
                                 f"side by side), not {data_width}")
            if size > SPRAM_COUNT * SPRAM_BYTES:
                raise ValueError(f"an SPRAM AXI4RAM holds at most {SPRAM_COUNT * SPRAM_BYTES} "
                                 f"bytes ({SPRAM_COUNT} SPRAMs of {SPRAM_BYTES}), not {size}")
        init = bytes(init)
        if len(init) > size:
            raise ValueError(f"AXI4RAM init of {len(init)} bytes is larger than the RAM's {size}")
        self.size = size
        self.kind = kind
        self.data_width = data_width
        self.beat_bytes = beat
        self.depth = size // beat
        self.init = init
        words = [int.from_bytes(init[i:i + beat].ljust(beat, b"\0"), "little")
                 for i in range(0, len(init), beat)]
        self.memory = Memory(shape=data_width, depth=self.depth, init=words)
        super().__init__({"s_axi": In(sig)})

    @property
    def spram_tiles(self) -> tuple[int, int]:
        """SPRAMs side by side (16 bits each) and one above another for ``kind="spram"``."""
        lanes = self.data_width // 16
        rows = -(-self.depth // 16384)
        return lanes, rows

    def elaborate(self, platform):
        m = Module()
        if self.kind == "bram":
            self._dual_port(m)
        else:
            self._single_port(m, platform)
        return m

    # -- block RAM: a read port and a write port ------------------------------------------

    def _dual_port(self, m):
        bus = self.s_axi
        lb = exact_log2(self.beat_bytes)
        m.submodules.memory = mem = self.memory
        wp = mem.write_port(granularity=8)
        rp = mem.read_port(transparent_for=(wp,))
        aw = len(bus.araddr)

        # Reads: the port reads the word of the next cycle's beat, so each beat's data is
        # in the port's output register when the beat is shown.
        r_busy = Signal()
        r_word = Signal(aw)
        r_left = Signal(8)
        r_id = Signal(len(bus.arid))
        r_next = Signal(aw)
        r_oob = Signal()
        beat_taken = bus.rvalid & bus.rready
        m.d.comb += [
            bus.arready.eq(~r_busy | (beat_taken & bus.rlast)),
            bus.rvalid.eq(r_busy),
            bus.rid.eq(r_id),
            r_oob.eq(r_word >= self.depth),
            bus.rdata.eq(Mux(r_oob, 0, rp.data)),
            bus.rresp.eq(Mux(r_oob, RESP_SLVERR, RESP_OKAY)),
            bus.rlast.eq(r_left == 0),
            r_next.eq(r_word),
        ]
        with m.If(bus.arvalid & bus.arready):
            m.d.comb += r_next.eq(bus.araddr >> lb)
            m.d.sync += [r_busy.eq(1), r_left.eq(bus.arlen), r_id.eq(bus.arid)]
        with m.Elif(beat_taken):
            m.d.comb += r_next.eq(r_word + 1)
            m.d.sync += r_left.eq(r_left - 1)
            with m.If(bus.rlast):
                m.d.sync += r_busy.eq(0)
        m.d.sync += r_word.eq(r_next)
        m.d.comb += rp.addr.eq(r_next)

        # Writes.
        beat, w_word = self._write_channel(m)
        m.d.comb += [wp.addr.eq(w_word), wp.data.eq(bus.wdata)]
        with m.If(beat):
            m.d.comb += wp.en.eq(bus.wstrb)

    def _write_channel(self, m):
        """The AW, W and B channels: one burst at a time, SLVERR for a burst with a beat
        past the end. Returns ``(beat, word)``: a beat in range is written to ``word``."""
        bus = self.s_axi
        w_busy = Signal()
        b_pend = Signal()
        w_oob_any = Signal()
        w_word = Signal(len(bus.awaddr))
        w_id = Signal(len(bus.awid))
        beat = Signal()
        m.d.comb += [
            bus.awready.eq(~w_busy & ~b_pend),
            bus.wready.eq(w_busy),
            bus.bvalid.eq(b_pend),
            bus.bid.eq(w_id),
            bus.bresp.eq(Mux(w_oob_any, RESP_SLVERR, RESP_OKAY)),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [w_busy.eq(1), w_word.eq(bus.awaddr >> exact_log2(self.beat_bytes)),
                         w_id.eq(bus.awid), w_oob_any.eq(0)]
        with m.If(bus.wvalid & bus.wready):
            with m.If(w_word < self.depth):
                m.d.comb += beat.eq(1)
            with m.Else():
                m.d.sync += w_oob_any.eq(1)
            m.d.sync += w_word.eq(w_word + 1)
            with m.If(bus.wlast):
                m.d.sync += [w_busy.eq(0), b_pend.eq(1)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += b_pend.eq(0)
        return beat, w_word

    # -- SPRAM: one port, a read or a write per cycle ----------------------------------------

    def _single_port(self, m, platform):
        bus = self.s_axi
        lb = exact_log2(self.beat_bytes)
        aw = len(bus.araddr)
        addr = Signal(range(self.depth))
        wdata = Signal(self.data_width)
        wstrb = Signal(self.beat_bytes)
        wen = Signal()
        ren = Signal()
        rdata = Signal(self.data_width)
        self._port(m, platform, addr, wdata, wstrb, wen, ren, rdata)

        # Writes have the port when a beat comes; reads take it otherwise.
        beat, w_word = self._write_channel(m)
        writing = bus.wvalid & bus.wready
        with m.If(beat):
            m.d.comb += [wen.eq(1), addr.eq(w_word), wdata.eq(bus.wdata), wstrb.eq(bus.wstrb)]

        # Reads: FETCH puts the beat's word on the port, WAIT takes its data the cycle
        # after, SHOW holds the beat until it is taken.
        r_word = Signal(aw)
        r_left = Signal(8)
        r_id = Signal(len(bus.arid))
        r_data = Signal(self.data_width)
        r_oob = Signal()
        m.d.comb += [bus.rid.eq(r_id), bus.rlast.eq(r_left == 0), r_oob.eq(r_word >= self.depth),
                     bus.rdata.eq(r_data), bus.rresp.eq(Mux(r_oob, RESP_SLVERR, RESP_OKAY))]
        with m.FSM(name="read"):
            with m.State("IDLE"):
                m.d.comb += bus.arready.eq(1)
                with m.If(bus.arvalid):
                    m.d.sync += [r_word.eq(bus.araddr >> lb), r_left.eq(bus.arlen),
                                 r_id.eq(bus.arid)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(r_oob):
                    m.d.sync += r_data.eq(0)
                    m.next = "SHOW"
                with m.Elif(~writing):
                    m.d.comb += [ren.eq(1), addr.eq(r_word)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += r_data.eq(rdata)
                m.next = "SHOW"
            with m.State("SHOW"):
                m.d.comb += bus.rvalid.eq(1)
                with m.If(bus.rready):
                    m.d.sync += [r_word.eq(r_word + 1), r_left.eq(r_left - 1)]
                    with m.If(bus.rlast):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FETCH"

    def _port(self, m, platform, addr, wdata, wstrb, wen, ren, rdata):
        """One memory port: ``rdata`` is the word at ``addr`` read (``ren``) the cycle before."""
        if platform is None:
            # A model of the SPRAM's port for simulation and Verilog without a platform.
            m.submodules.memory = mem = self.memory
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(wdata), wp.en.eq(Mux(wen, wstrb, 0)),
                         rp.addr.eq(addr), rp.en.eq(ren), rdata.eq(rp.data)]
            return
        if any(self.init):
            raise ValueError("an SPRAM cannot be initialised on a platform: give no init")
        lanes, rows = self.spram_tiles
        row = addr[14:] if rows > 1 else Const(0, 1)
        row_q = Signal.like(row)
        m.d.sync += row_q.eq(row)
        outs = []
        for r in range(rows):
            lane_outs = []
            for lane in range(lanes):
                out = Signal(16, name=f"spram{r}_{lane}_out")
                strb = wstrb[2 * lane:2 * lane + 2]
                m.submodules[f"spram{r}_{lane}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14], i_DATAIN=wdata[16 * lane:16 * lane + 16],
                    i_MASKWREN=Cat(strb[0], strb[0], strb[1], strb[1]),
                    i_WREN=wen, i_CHIPSELECT=(row == r) & (wen | ren), i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=out)
                lane_outs.append(out)
            outs.append(Cat(*lane_outs))
        m.d.comb += rdata.eq(outs[0])
        for r in range(1, rows):
            with m.If(row_q == r):
                m.d.comb += rdata.eq(outs[r])


class AXI4Arbiter(wiring.Component):
    """Two AXI4 masters (``s0``, ``s1``) onto one slave (``m``), all of one signature.

    A read burst is granted to one master from its AR handshake to its last R beat, a
    write burst from its AW handshake to its B response; IDs pass through unchanged.
    When both masters wait, the one not served last goes first.
    """

    def __init__(self, *, data_width: int, addr_width: int = 32, id_width: int = 2) -> None:
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({"s0": In(sig), "s1": In(sig), "m": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        masters = [self.s0, self.s1]
        for channel, addr_members, data_fwd, data_back in (
            ("r", ("arid", "araddr", "arlen", "arsize", "arburst"), (),
             ("rid", "rdata", "rresp", "rlast")),
            ("w", ("awid", "awaddr", "awlen", "awsize", "awburst"), ("wdata", "wstrb", "wlast"),
             ("bid", "bresp")),
        ):
            a = "ar" if channel == "r" else "aw"
            busy = Signal(name=f"{channel}_busy")
            owner = Signal(name=f"{channel}_owner")
            last = Signal(name=f"{channel}_last")        # served last: the other goes first
            pick = Signal(name=f"{channel}_pick")
            valid0 = getattr(masters[0], f"{a}valid")
            valid1 = getattr(masters[1], f"{a}valid")
            m.d.comb += pick.eq(Mux(valid0 & valid1, ~last, valid1))
            # Address channel: only while no burst of this direction is granted.
            for name in addr_members:
                m.d.comb += getattr(self.m, name).eq(
                    Mux(pick, getattr(masters[1], name), getattr(masters[0], name)))
            m.d.comb += getattr(self.m, f"{a}valid").eq(~busy & (valid0 | valid1))
            for i, master in enumerate(masters):
                m.d.comb += getattr(master, f"{a}ready").eq(
                    ~busy & (pick == i) & getattr(self.m, f"{a}ready"))
            with m.If(getattr(self.m, f"{a}valid") & getattr(self.m, f"{a}ready")):
                m.d.sync += [busy.eq(1), owner.eq(pick), last.eq(pick)]
            if channel == "r":
                fwd_ready = "rready"
                back_valid = "rvalid"
                end = self.m.rvalid & self.m.rready & self.m.rlast
            else:
                # W beats of the granted master; then its response.
                for name in data_fwd:
                    m.d.comb += getattr(self.m, name).eq(
                        Mux(owner, getattr(masters[1], name), getattr(masters[0], name)))
                m.d.comb += self.m.wvalid.eq(busy & Mux(owner, masters[1].wvalid,
                                                        masters[0].wvalid))
                for i, master in enumerate(masters):
                    m.d.comb += master.wready.eq(busy & (owner == i) & self.m.wready)
                fwd_ready = "bready"
                back_valid = "bvalid"
                end = self.m.bvalid & self.m.bready
            for name in data_back:
                for master in masters:
                    m.d.comb += getattr(master, name).eq(getattr(self.m, name))
            for i, master in enumerate(masters):
                m.d.comb += getattr(master, back_valid).eq(
                    busy & (owner == i) & getattr(self.m, back_valid))
            m.d.comb += getattr(self.m, fwd_ready).eq(
                busy & Mux(owner, getattr(masters[1], fwd_ready), getattr(masters[0], fwd_ready)))
            with m.If(end):
                m.d.sync += busy.eq(0)
        return m
