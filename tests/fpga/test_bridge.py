"""The gateware bridge in the Amaranth simulator, answering byte for byte as the
protocol's executable specification (fpga.protocol.BridgeModel) does: the same request
bytes go to both, the reply bytes and the memory and registers afterwards must be equal.
The bridge's memory is an AXI4RAM; its CSRs a register file modelled in the bench."""

import random
import struct

import pytest
from amaranth.hdl import Module
from amaranth.lib.wiring import connect
from amaranth.sim import Simulator

from fpga.bridge import Bridge
from fpga.protocol import MAX_PAYLOAD, SYNC, BridgeModel, Command, crc16, encode_frame
from hw.axi_ram import AXI4RAM

MEM = 1024


def _bad_crc(frame):
    return frame[:-1] + bytes([frame[-1] ^ 0x5A])


def _directed():
    """Requests covering every command, odd addresses and sizes, and every refusal."""
    rng = random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(300))
    f = encode_frame
    reqs = [
        f(Command.PING, 0),
        f(Command.WRITE_MEM, 1, struct.pack("<I", 3) + data[:13]),
        f(Command.READ_MEM, 2, struct.pack("<IH", 1, 17)),
        f(Command.WRITE_MEM, 3, struct.pack("<I", 517) + data[:MAX_PAYLOAD - 4]),   # 256 bytes
        f(Command.READ_MEM, 4, struct.pack("<IH", 515, 256)),
        f(Command.WRITE_MEM, 5, struct.pack("<I", 10)),                             # no data
        f(Command.READ_MEM, 6, struct.pack("<IH", 7, 0)),
        f(Command.WRITE_MEM, 7, struct.pack("<I", MEM - 1) + b"\x99"),              # last byte
        f(Command.READ_MEM, 8, struct.pack("<IH", MEM - 3, 3)),
        f(Command.WRITE_CSR, 9, struct.pack("<HI", 0x10, 0xDEADBEEF)),
        f(Command.WRITE_CSR, 10, struct.pack("<HI", 0xFFC, 0x12345678)),
        f(Command.READ_CSR, 11, struct.pack("<H", 0x10)),
        f(Command.READ_CSR, 12, struct.pack("<H", 0xFFC)),
        f(Command.READ_CSR, 13, struct.pack("<H", 0x20)),                           # unwritten
        # refusals
        f(Command.READ_CSR, 14, struct.pack("<H", 0x1000)),                          # OUT_OF_RANGE
        f(Command.WRITE_CSR, 15, struct.pack("<HI", 0xFFFF, 1)),
        f(Command.READ_MEM, 16, struct.pack("<IH", MEM - 10, 11)),
        f(Command.READ_MEM, 17, struct.pack("<IH", 0xFFFFFFFF, 1)),
        f(Command.WRITE_MEM, 18, struct.pack("<I", MEM - 1) + b"ab"),
        f(Command.PING, 19, b"x"),                                                  # BAD_LENGTH
        f(Command.READ_MEM, 20, struct.pack("<IH", 0, 4)[:5]),
        f(Command.READ_MEM, 21, struct.pack("<IH", 0, 257)),
        f(Command.WRITE_MEM, 22, b"\x00\x01\x02"),
        f(Command.READ_CSR, 23, b"\x00"),
        f(Command.WRITE_CSR, 24, b"\x00" * 5),
        f(0x42, 25, b"what"),                                                       # BAD_COMMAND
        f(0x00, 26),
        _bad_crc(f(Command.WRITE_CSR, 27, struct.pack("<HI", 0x10, 5))),            # BAD_CRC
        b"\x00\x13junk",                                                            # skipped
        f(Command.READ_CSR, 28, struct.pack("<H", 0x10)),                           # still 0xDEADBEEF
        # A damaged frame that holds a real one: both answer the bad CRC, then the inner frame.
        _bad_crc(f(Command.WRITE_MEM, 29, struct.pack("<I", 0) + f(Command.PING, 30) + b"\x00" * 4)),
        # A length over MAX_PAYLOAD: dropped, parsing resumes after its sync byte.
        bytes([SYNC, Command.PING, 31]) + struct.pack("<H", 300) + f(Command.PING, 32),
        f(Command.READ_MEM, 33, struct.pack("<IH", 3, 13)),
    ]
    return reqs


def _random(seed, n=40):
    rng = random.Random(seed)
    reqs = []
    for seq in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            addr = rng.randrange(MEM + 8)
            size = rng.randrange(0, 40)
            reqs.append(encode_frame(Command.WRITE_MEM, seq, struct.pack("<I", addr)
                                     + bytes(rng.randrange(256) for _ in range(size))))
        elif kind == 1:
            reqs.append(encode_frame(Command.READ_MEM, seq, struct.pack(
                "<IH", rng.randrange(MEM + 8), rng.randrange(0, 40))))
        elif kind == 2:
            reqs.append(encode_frame(Command.WRITE_CSR, seq, struct.pack(
                "<HI", 4 * rng.randrange(8), rng.getrandbits(32))))
        elif kind == 3:
            reqs.append(encode_frame(Command.READ_CSR, seq, struct.pack("<H", 4 * rng.randrange(8))))
        else:
            frame = bytearray(encode_frame(Command.WRITE_CSR, seq, struct.pack("<HI", 0, seq)))
            frame[rng.randrange(1, len(frame))] ^= 1 << rng.randrange(8)
            reqs.append(bytes(frame))
    return reqs


def _run_bridge(stream, *, width, seed):
    """Feed ``stream`` to the gateware bridge; return its reply bytes, memory and registers."""
    m = Module()
    m.submodules.bridge = bridge = Bridge(data_width=width, mem_bytes=MEM)
    m.submodules.ram = ram = AXI4RAM(size=MEM, data_width=width)
    connect(m, bridge.m_axi, ram.s_axi)
    axil = bridge.m_axil
    rng = random.Random(seed)
    out = bytearray()
    regs = {}
    fed = []

    async def feed(ctx):
        for byte in stream:
            while rng.random() < 0.3:
                ctx.set(bridge.i.valid, 0)
                await ctx.tick()
            ctx.set(bridge.i.valid, 1)
            ctx.set(bridge.i.payload, byte)
            for _ in range(5000):
                _, _, ready = await ctx.tick().sample(bridge.i.ready)
                if ready:
                    break
            else:
                raise AssertionError("the bridge stopped taking bytes (its ring buffer is full)")
        ctx.set(bridge.i.valid, 0)
        fed.append(True)

    memory = {}

    async def collect(ctx):
        idle = 0
        while not fed or idle < 1000:
            ready = rng.random() < 0.7
            ctx.set(bridge.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(bridge.o.valid, bridge.o.payload)
            if valid and ready:
                out.append(payload)
            idle = 0 if valid else idle + 1
        B = width // 8
        for w in range(MEM // B):
            memory.update({w * B + b: v for b, v in enumerate(
                ctx.get(ram.memory.data[w]).to_bytes(B, "little"))})

    async def csr_slave(ctx):
        state = {"rvalid": False, "bvalid": False, "aw": None, "w": None}
        ready = {"ar": True, "aw": True, "w": True}
        while True:
            ctx.set(axil.arready, ready["ar"])
            ctx.set(axil.awready, ready["aw"])
            ctx.set(axil.wready, ready["w"])
            ctx.set(axil.rvalid, state["rvalid"])
            ctx.set(axil.bvalid, state["bvalid"])
            _, _, arv, ara, awv, awa, wv, wd, wstrb, rr, br = await ctx.tick().sample(
                axil.arvalid, axil.araddr, axil.awvalid, axil.awaddr, axil.wvalid, axil.wdata,
                axil.wstrb, axil.rready, axil.bready)
            if state["rvalid"] and rr:
                state["rvalid"] = False
            if state["bvalid"] and br:
                state["bvalid"] = False
            if ready["ar"] and arv:
                state["rvalid"] = True
                ctx.set(axil.rdata, regs.get(ara, 0))
            if ready["aw"] and awv:
                state["aw"] = awa
            if ready["w"] and wv:
                assert wstrb == 0b1111
                state["w"] = wd
            if state["aw"] is not None and state["w"] is not None:
                regs[state["aw"]] = state["w"]
                state.update(aw=None, w=None, bvalid=True)
            # Random stalls on every channel.
            ready = {"ar": not state["rvalid"] and rng.random() < 0.6,
                     "aw": state["aw"] is None and not state["bvalid"] and rng.random() < 0.6,
                     "w": state["w"] is None and not state["bvalid"] and rng.random() < 0.6}

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.add_testbench(csr_slave, background=True)
    sim.run()
    return bytes(out), bytes(memory[i] for i in range(MEM)), regs


def _model(stream):
    model = BridgeModel(MEM, csr_bytes=1 << 12)
    return model.receive(stream), model.mem.tobytes(), model.csrs


@pytest.mark.parametrize("width", [32, 64])
def test_directed_requests_answered_as_the_model(width):
    stream = b"".join(_directed())
    got, mem, regs = _run_bridge(stream, width=width, seed=width)
    want, want_mem, want_regs = _model(stream)
    assert len(want) > 500                 # the stream exercised the replies
    assert got == want
    assert mem == want_mem and regs == want_regs


def test_random_requests_answered_as_the_model():
    stream = b"".join(_random(5))
    got, mem, regs = _run_bridge(stream, width=32, seed=7)
    want, want_mem, want_regs = _model(stream)
    assert got == want
    assert mem == want_mem and regs == want_regs


def test_bridge_argument_errors():
    with pytest.raises(ValueError, match="mem_bytes must be an int from 1"):
        Bridge(data_width=32, mem_bytes=0)
    with pytest.raises(ValueError, match="csr_addr_width must be 3 to 16"):
        Bridge(data_width=32, mem_bytes=64, csr_addr_width=17)
    assert crc16(b"") == 0xFFFF
