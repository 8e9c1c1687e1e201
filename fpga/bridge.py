"""The SoC side of the host link: frames in, memory and CSR accesses, replies out.

:class:`Bridge` implements :mod:`fpga.protocol` in gateware, answering every request
byte for byte as :class:`fpga.protocol.BridgeModel` does (``tests/fpga/test_bridge.py``
checks it against the model). Bytes from the host go into a ring buffer (one 512-byte
block RAM); a parser reads them from there, so that it can resynchronise exactly as
the protocol's :class:`~fpga.protocol.FrameDecoder` does: bytes before a sync byte are
skipped, and after a frame whose length is over :data:`~fpga.protocol.MAX_PAYLOAD` or
whose CRC is wrong, parsing resumes at the byte after that frame's sync byte (the
bytes of a damaged frame may hold the next real frame). Nothing is done before the
CRC has been checked.

Memory requests become single-beat AXI4 reads and writes (``m_axi``, the width of the
NPU's DMA); an unaligned address or count touches the beats it covers, with byte
strobes on writes. CSR requests become AXI4-Lite accesses (``m_axil``). Requests past
``mem_bytes``, or CSR offsets that ``csr_addr_width`` bits do not reach, are refused
with ``OUT_OF_RANGE`` (``BridgeModel(..., csr_bytes=...)`` refuses the same).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hw.axi import BURST_INCR, AXI4LiteSignature, AXI4Signature
from hw.csr import CSR_ADDR_WIDTH

from .protocol import ERROR, MAX_PAYLOAD, PING_REPLY, SYNC, Command, LinkErrorCode

__all__ = ["Bridge", "BUFFER_BYTES"]

#: Bytes of the receive ring buffer: a whole frame of the largest payload and room for
#: bytes that arrive while it is served.
BUFFER_BYTES = 512
_MAX_READ = 256          # READ_MEM count limit
_WRITE_DATA = 9          # WRITE_MEM data starts this many bytes after the sync byte


def _crc_taps() -> list[list[int]]:
    """For each bit of the next CRC register, the bits of (register, byte) that it XORs:
    the update is linear over GF(2), so it is computed once here, symbolically."""
    # Bit k of a symbolic value is the set of input bits (0-15 register, 16-23 byte) XORed.
    c = [{k} for k in range(16)]
    for k in range(8):
        c[8 + k] = c[8 + k] ^ {16 + k}
    for _ in range(8):
        top = c[15]
        c = [set()] + c[:15]
        for k in range(16):
            if 0x1021 >> k & 1:
                c[k] = c[k] ^ top
    return [sorted(bits) for bits in c]


_CRC_TAPS = _crc_taps()


def _crc_step(crc, byte):
    """CRC-16/CCITT-FALSE register after one more byte (MSB first, polynomial 0x1021)."""
    inputs = Cat(crc, byte)
    return Cat(*[_xor(inputs, taps) for taps in _CRC_TAPS])


def _xor(value, taps):
    out = value[taps[0]]
    for k in taps[1:]:
        out = out ^ value[k]
    return out


class Bridge(wiring.Component):
    """The host link's protocol in gateware.

    Parameters
    ----------
    data_width: bits of the AXI4 master (the NPU's ``dma_data_width``).
    mem_bytes: bytes of memory from address 0 that requests may reach.
    csr_addr_width: address bits of the AXI4-Lite master (the NPU's CSR space).
    id_width: AXI4 ID bits (the bridge uses ID 0).

    Ports
    -----
    i: bytes from the host (a stream; ready unless the ring buffer is full).
    o: reply bytes to the host (a stream).
    m_axi: AXI4 master to the memory. m_axil: AXI4-Lite master to the CSRs.
    refused: pulses when a request is refused or a damaged frame is dropped.
    busy: a frame is being parsed or served (the parser is not hunting for a sync byte).

    Raises ValueError for a width or size that does not fit.
    """

    def __init__(self, *, data_width: int, mem_bytes: int, csr_addr_width: int = CSR_ADDR_WIDTH,
                 id_width: int = 2) -> None:
        if not isinstance(mem_bytes, int) or not 0 < mem_bytes <= 1 << 32:
            raise ValueError(f"Bridge mem_bytes must be an int from 1 to 2**32, not {mem_bytes!r}")
        if not isinstance(csr_addr_width, int) or not 3 <= csr_addr_width <= 16:
            raise ValueError(f"Bridge csr_addr_width must be 3 to 16 (offsets are 16-bit), "
                             f"not {csr_addr_width!r}")
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.mem_bytes = mem_bytes
        self.csr_addr_width = csr_addr_width
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=data_width, id_width=id_width)),
            "m_axil": Out(AXI4LiteSignature(addr_width=csr_addr_width)),
            "refused": Out(1),
            "busy": Out(1),
        })

    @property
    def csr_bytes(self) -> int:
        """Bytes of CSR space the bridge reaches (``BridgeModel``'s ``csr_bytes``)."""
        return 1 << self.csr_addr_width

    def elaborate(self, platform):
        m = Module()
        B = self.beat_bytes
        lb = exact_log2(B)
        pw = exact_log2(BUFFER_BYTES) + 1        # ring pointers carry a wrap bit

        # The ring buffer: the host's bytes at wr, the parser at rd, free from tail.
        m.submodules.ring = ring = Memory(shape=8, depth=BUFFER_BYTES, init=[])
        wp = ring.write_port()
        rp = ring.read_port()
        wr, rd, tail = Signal(pw), Signal(pw), Signal(pw)
        full = Signal()
        m.d.comb += [
            full.eq((wr[:pw - 1] == tail[:pw - 1]) & (wr[pw - 1] != tail[pw - 1])),
            self.i.ready.eq(~full),
            wp.addr.eq(wr[:pw - 1]),
            wp.data.eq(self.i.payload),
            wp.en.eq(self.i.valid & ~full),
            rp.addr.eq(rd[:pw - 1]),
        ]
        with m.If(self.i.valid & ~full):
            m.d.sync += wr.eq(wr + 1)
        byte = rp.data                           # the byte at rd, the cycle after it advances

        # The request.
        start = Signal(pw)                       # where its sync byte is
        frame_end = Signal(pw)
        cmd, seq = Signal(8), Signal(8)
        length = Signal(range(MAX_PAYLOAD + 1))     # checked before it is kept
        count = Signal(range(MAX_PAYLOAD + 1))
        p = [Signal(8, name=f"p{k}") for k in range(6)]     # the first payload bytes
        rx_crc = Signal(16)
        crc = Signal(16)
        # One CRC step serves both directions: the received byte, or the byte being sent.
        crc_in = Signal(8)
        crc_next = Signal(16)
        m.d.comb += [crc_in.eq(byte), crc_next.eq(_crc_step(crc, crc_in))]
        addr = Cat(p[0], p[1], p[2], p[3])
        nbytes = Cat(p[4], p[5])
        offset = Cat(p[0], p[1])
        value = Cat(p[2], p[3], p[4], p[5])
        write_len = Signal.like(length)
        m.d.comb += write_len.eq(length - 4)
        # One range check serves READ_MEM and WRITE_MEM: an address with bits above those
        # that reach mem_bytes is out of range whatever the count.
        aw = max(lb + 1, (self.mem_bytes - 1).bit_length())
        span = Signal(range(MAX_PAYLOAD + 1))
        m.d.comb += span.eq(Mux(cmd == Command.READ_MEM, nbytes, write_len))
        out_of_range = (addr[aw:] != 0) | (addr[:aw] + span > self.mem_bytes)
        csr_out_of_range = offset[self.csr_addr_width:] != 0

        # The reply.
        KIND_NONE, KIND_ERROR, KIND_PING, KIND_CSR, KIND_MEM = range(5)
        kind = Signal(range(5))
        rcmd = Signal(8)
        rlen = Signal(range(_MAX_READ + 1))
        code = Signal(8)
        csr_value = Signal(32)
        resync = Signal()                        # after the reply: resume after the sync byte
        tx_byte = Signal(8)
        m.d.comb += self.o.payload.eq(tx_byte)

        # Memory access.
        maddr = Signal(aw + 1)                    # checked in range before it is kept
        left = Signal.like(length)
        beat = Signal(self.data_width)
        strb = Signal(B)
        beat_ok = Signal()
        beat_addr = Signal(aw)
        aw_done, w_done = Signal(), Signal()
        lane = maddr[:lb]

        def address_and_data(bus, then):
            """A write's address and data handshakes, in either order (AXI4 or AXI4-Lite);
            ``aw_done``/``w_done`` clear before the state is entered."""
            m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
            with m.If(bus.awready):
                m.d.sync += aw_done.eq(1)
            with m.If(bus.wready):
                m.d.sync += w_done.eq(1)
            with m.If((aw_done | bus.awready) & (w_done | bus.wready)):
                m.next = then

        axi, axil = self.m_axi, self.m_axil
        m.d.comb += [
            axi.arsize.eq(lb), axi.arburst.eq(BURST_INCR), axi.arlen.eq(0), axi.arid.eq(0),
            axi.awsize.eq(lb), axi.awburst.eq(BURST_INCR), axi.awlen.eq(0), axi.awid.eq(0),
            axi.araddr.eq(Cat(Const(0, lb), maddr[lb:])),
            axi.awaddr.eq(beat_addr), axi.wdata.eq(beat), axi.wstrb.eq(strb), axi.wlast.eq(1),
            axil.araddr.eq(offset), axil.awaddr.eq(offset), axil.wdata.eq(value),
            axil.wstrb.eq(0b1111), axil.arprot.eq(0), axil.awprot.eq(0),
        ]

        def reply(m, *, error=None, length_=0, kind_=KIND_NONE):
            if error is not None:
                m.d.sync += [kind.eq(KIND_ERROR), rcmd.eq(ERROR), rlen.eq(1),
                             code.eq(error), self.refused.eq(1)]
            else:
                m.d.sync += [kind.eq(kind_), rcmd.eq(cmd | 0x80), rlen.eq(length_)]
            m.next = "R_SYNC"

        def resume_after_sync(m):
            m.d.sync += [rd.eq(start + 1), tail.eq(start + 1)]

        def get(name, then):
            """States ``name`` (advance rd over an available byte) and ``name_D`` (use it)."""
            with m.State(name):
                with m.If(rd != wr):
                    m.d.sync += rd.eq(rd + 1)
                    m.next = f"{name}_D"
            with m.State(f"{name}_D"):
                then()

        def send(name, value_, then, *, checked=True):
            """State ``name``: offer ``value_``; on its handshake add it to the CRC, ``then``."""
            with m.State(name):
                m.d.comb += [tx_byte.eq(value_), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    if checked:
                        m.d.comb += crc_in.eq(tx_byte)
                        m.d.sync += crc.eq(crc_next)
                    then()

        m.d.sync += self.refused.eq(0)
        with m.FSM(name="bridge") as fsm:
            # -- parse -------------------------------------------------------------------
            def hunt():
                with m.If(byte == SYNC):
                    m.d.sync += [start.eq(rd - 1), crc.eq(0xFFFF)]
                    m.next = "CMD"
                with m.Else():
                    m.d.sync += tail.eq(rd)
                    m.next = "HUNT"
            get("HUNT", hunt)

            def take(target, nxt):
                def then():
                    m.d.sync += [target.eq(byte), crc.eq(crc_next)]
                    m.next = nxt
                return then
            get("CMD", take(cmd, "SEQ"))
            get("SEQ", take(seq, "LEN0"))
            get("LEN0", take(length[:8], "LEN1"))

            def len1():
                total = Cat(length[:8], byte)
                m.d.sync += [length[8:].eq(byte), crc.eq(crc_next), count.eq(0)]
                with m.If(total > MAX_PAYLOAD):
                    resume_after_sync(m)
                    m.d.sync += self.refused.eq(1)
                    m.next = "HUNT"
                with m.Elif(total == 0):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAY"
            get("LEN1", len1)

            def pay():
                m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                for k in range(6):
                    with m.If(count == k):
                        m.d.sync += p[k].eq(byte)
                with m.If(count + 1 == length):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAY"
            get("PAY", pay)

            def crc0():
                m.d.sync += rx_crc[:8].eq(byte)
                m.next = "CRC1"
            get("CRC0", crc0)

            def crc1():
                m.d.sync += [rx_crc[8:].eq(byte), frame_end.eq(rd)]
                m.next = "CHECK"
            get("CRC1", crc1)

            with m.State("CHECK"):
                with m.If(rx_crc != crc):
                    m.d.sync += resync.eq(1)
                    reply(m, error=LinkErrorCode.BAD_CRC)
                with m.Else():
                    m.d.sync += resync.eq(0)
                    m.next = "EXEC"

            # -- serve -------------------------------------------------------------------
            with m.State("EXEC"):
                with m.Switch(cmd):
                    with m.Case(Command.PING):
                        with m.If(length == 0):
                            reply(m, length_=len(PING_REPLY), kind_=KIND_PING)
                        with m.Else():
                            reply(m, error=LinkErrorCode.BAD_LENGTH)
                    with m.Case(Command.READ_MEM):
                        with m.If((length != 6) | (nbytes > _MAX_READ)):
                            reply(m, error=LinkErrorCode.BAD_LENGTH)
                        with m.Elif(out_of_range):
                            reply(m, error=LinkErrorCode.OUT_OF_RANGE)
                        with m.Else():
                            m.d.sync += [maddr.eq(addr), beat_ok.eq(0)]
                            reply(m, length_=nbytes, kind_=KIND_MEM)
                    with m.Case(Command.WRITE_MEM):
                        with m.If(length < 4):
                            reply(m, error=LinkErrorCode.BAD_LENGTH)
                        with m.Elif(out_of_range):
                            reply(m, error=LinkErrorCode.OUT_OF_RANGE)
                        with m.Elif(write_len == 0):
                            reply(m)
                        with m.Else():
                            m.d.sync += [maddr.eq(addr), left.eq(write_len), strb.eq(0),
                                         rd.eq(start + _WRITE_DATA)]
                            m.next = "W_GET"
                    with m.Case(Command.READ_CSR):
                        with m.If(length != 2):
                            reply(m, error=LinkErrorCode.BAD_LENGTH)
                        with m.Elif(csr_out_of_range):
                            reply(m, error=LinkErrorCode.OUT_OF_RANGE)
                        with m.Else():
                            m.next = "CR_AR"
                    with m.Case(Command.WRITE_CSR):
                        with m.If(length != 6):
                            reply(m, error=LinkErrorCode.BAD_LENGTH)
                        with m.Elif(csr_out_of_range):
                            reply(m, error=LinkErrorCode.OUT_OF_RANGE)
                        with m.Else():
                            m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                            m.next = "CW"
                    with m.Default():
                        reply(m, error=LinkErrorCode.BAD_COMMAND)

            # WRITE_MEM: gather the bytes of one beat from the ring, write it, next beat.
            def w_get():
                with m.If(strb == 0):
                    m.d.sync += beat_addr.eq(Cat(Const(0, lb), maddr[lb:]))
                m.d.sync += [beat.word_select(lane, 8).eq(byte),
                             strb.eq(strb | (1 << lane)),
                             maddr.eq(maddr + 1), left.eq(left - 1)]
                with m.If((lane == B - 1) | (left == 1)):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "W_AW"
                with m.Else():
                    m.next = "W_GET"
            get("W_GET", w_get)

            with m.State("W_AW"):
                address_and_data(axi, "W_B")
            with m.State("W_B"):
                m.d.comb += axi.bready.eq(1)
                with m.If(axi.bvalid):
                    m.d.sync += strb.eq(0)
                    with m.If(left == 0):
                        reply(m)
                    with m.Else():
                        m.next = "W_GET"

            # CSRs.
            with m.State("CR_AR"):
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "CR_R"
            with m.State("CR_R"):
                m.d.comb += axil.rready.eq(1)
                with m.If(axil.rvalid):
                    m.d.sync += csr_value.eq(axil.rdata)
                    reply(m, length_=4, kind_=KIND_CSR)
            with m.State("CW"):
                address_and_data(axil, "CW_B")
            with m.State("CW_B"):
                m.d.comb += axil.bready.eq(1)
                with m.If(axil.bvalid):
                    reply(m)

            # -- reply -------------------------------------------------------------------
            def goto(state, *, new_crc=False):
                def then():
                    if new_crc:
                        m.d.sync += crc.eq(0xFFFF)
                    m.next = state
                return then
            send("R_SYNC", SYNC, goto("R_CMD", new_crc=True), checked=False)
            send("R_CMD", rcmd, goto("R_SEQ"))
            send("R_SEQ", seq, goto("R_LEN0"))
            send("R_LEN0", rlen[:8], goto("R_LEN1"))

            def after_len():
                m.d.sync += count.eq(0)
                m.next = "R_PAY"
                with m.If(rlen == 0):
                    m.next = "R_CRC0"
            send("R_LEN1", Cat(rlen[8:], Const(0, 7)), after_len)

            with m.State("R_PAY"):
                ping = Const(int.from_bytes(PING_REPLY, "little"), 32)
                with m.Switch(kind):
                    with m.Case(KIND_ERROR):
                        m.d.comb += tx_byte.eq(code)
                    with m.Case(KIND_PING):
                        m.d.comb += tx_byte.eq(ping.word_select(count[:2], 8))
                    with m.Case(KIND_CSR):
                        m.d.comb += tx_byte.eq(csr_value.word_select(count[:2], 8))
                    with m.Case(KIND_MEM):
                        m.d.comb += tx_byte.eq(beat.word_select(lane, 8))
                need_beat = (kind == KIND_MEM) & ~beat_ok
                with m.If(need_beat):
                    m.next = "MR_AR"
                with m.Else():
                    m.d.comb += self.o.valid.eq(1)
                    with m.If(self.o.ready):
                        m.d.comb += crc_in.eq(tx_byte)
                        m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                        with m.If(kind == KIND_MEM):
                            m.d.sync += maddr.eq(maddr + 1)
                            with m.If(lane == B - 1):
                                m.d.sync += beat_ok.eq(0)
                        with m.If(count + 1 == rlen):
                            m.next = "R_CRC0"
            with m.State("MR_AR"):
                m.d.comb += axi.arvalid.eq(1)
                with m.If(axi.arready):
                    m.next = "MR_R"
            with m.State("MR_R"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    m.d.sync += [beat.eq(axi.rdata), beat_ok.eq(1)]
                    m.next = "R_PAY"

            send("R_CRC0", crc[:8], goto("R_CRC1"), checked=False)

            def finish():
                with m.If(resync):
                    resume_after_sync(m)
                with m.Else():
                    m.d.sync += [rd.eq(frame_end), tail.eq(frame_end)]
                m.next = "HUNT"
            send("R_CRC1", crc[8:], finish, checked=False)

        parsing = Cat(*(fsm.ongoing(s) for s in ("HUNT", "HUNT_D"))).any()
        m.d.comb += self.busy.eq(~parsing)
        return m
