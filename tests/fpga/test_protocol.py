"""The host link's framed protocol: frames, the bridge's answers, every kind of fault
reported as a LinkError, and the unchanged driver running a model on the RTL through
the protocol's bytes."""

import struct

import numpy as np
import pytest
import torch

from fpga.protocol import (ERROR, MAX_PAYLOAD, SYNC, BridgeModel, Command, FrameDecoder, Link,
                           LinkError, crc16, encode_frame)


class Loopback:
    """A byte transport to a BridgeModel; ``fault(reply) -> reply`` corrupts replies."""

    def __init__(self, bridge, fault=None):
        self.bridge, self.fault, self.pending = bridge, fault, b""

    def write(self, data):
        reply = self.bridge.receive(data)
        self.pending += self.fault(reply) if self.fault else reply

    def read(self, n, timeout):
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1          # the standard check value


def test_frames_round_trip_through_the_decoder_in_pieces():
    frames = [encode_frame(Command.WRITE_MEM, 7, bytes(range(200))), encode_frame(0x84, 8, b"ab")]
    stream = b"\x00junk" + b"".join(frames)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), 3):               # three bytes at a time
        got += dec.feed(stream[i:i + 3])
    assert got == [("ok", Command.WRITE_MEM, 7, bytes(range(200))), ("ok", 0x84, 8, b"ab")]
    assert dec.skipped == 5
    with pytest.raises(ValueError, match="over"):
        encode_frame(Command.WRITE_MEM, 0, bytes(MAX_PAYLOAD + 1))


def test_memory_and_registers_through_the_link():
    bridge = BridgeModel(4096)
    link = Link(Loopback(bridge))
    link.ping()
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)
    link.load(100, data)                             # four frames
    assert np.array_equal(bridge.mem[100:1100], data)
    assert np.array_equal(link.dump(100, 1000), data)
    link.write32(0x10, 0xDEADBEEF)
    assert link.read32(0x10) == 0xDEADBEEF and bridge.csrs[0x10] == 0xDEADBEEF


@pytest.mark.parametrize("request_, reason", [
    (lambda link: link.dump(4000, 200), "OUT_OF_RANGE"),
    (lambda link: link.load(4090, np.zeros(10, np.uint8)), "OUT_OF_RANGE"),
    (lambda link: link.request(Command.READ_CSR, b"\x00"), "BAD_LENGTH"),
    (lambda link: link.request(Command.PING, b"x"), "BAD_LENGTH"),
])
def test_refused_requests_are_errors(request_, reason):
    link = Link(Loopback(BridgeModel(4096)))
    with pytest.raises(LinkError, match=reason):
        request_(link)


def test_an_unknown_command_is_refused():
    bridge = BridgeModel(64)
    reply = bridge.receive(encode_frame(0x42, 3))
    assert FrameDecoder().feed(reply) == [("ok", ERROR, 3, bytes([2]))]   # BAD_COMMAND


def _flip(index):
    def fault(reply):
        b = bytearray(reply)
        b[index] ^= 0x10
        return bytes(b)
    return fault


@pytest.mark.parametrize("fault, message", [
    (lambda reply: b"", "no reply within"),                              # lost
    (lambda reply: reply[:-3], "no reply within"),                       # truncated
    (_flip(-1), "corrupted reply"),                                      # CRC byte
    (_flip(6), "corrupted reply"),                                       # a data byte
    (lambda reply: reply[:2] + bytes([reply[2] ^ 1]) + reply[3:-2]
     + struct.pack("<H", crc16(reply[1:2] + bytes([reply[2] ^ 1]) + reply[3:-2])),
     "reply to request"),                                                # wrong seq
    (lambda reply: encode_frame(Command.READ_MEM | 0x80, reply[2], b"\x00" * 4),
     "reply of command"),                                                # wrong command
])
def test_faults_on_the_wire_are_errors_never_values(fault, message):
    bridge = BridgeModel(64)
    bridge.csrs[0] = 1234
    link = Link(Loopback(bridge, fault), timeout=0.01)
    with pytest.raises(LinkError, match=message):
        link.read32(0)


def test_a_corrupted_request_is_answered_bad_crc():
    frame = bytearray(encode_frame(Command.WRITE_CSR, 9, struct.pack("<HI", 0, 5)))
    frame[5] ^= 0xFF
    bridge = BridgeModel(64)
    reply = FrameDecoder().feed(bridge.receive(bytes(frame)))
    assert reply == [("ok", ERROR, 9, bytes([1]))] and bridge.csrs == {}    # BAD_CRC, nothing done
    assert frame[0] == SYNC


def test_the_driver_runs_a_model_on_the_rtl_through_the_protocol():
    """hw.driver, unchanged, over Link -> bytes -> BridgeModel -> the Verilated NPU: the
    host link a board will have, bit-exact against the golden."""
    import sw
    from hw import NPUConfig, driver
    from sim.rtl import FastRTLSimulator
    from sw import zoo
    config = NPUConfig.preset("tiny")
    model, shape = zoo.build("lenet5")
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=torch.Generator().manual_seed(2))])
    program = sw.compile(qmodel, config)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(3))
    with FastRTLSimulator(config).session() as session:
        session.reset()
        session.clear()
        bridge = BridgeModel(session.ram_bytes, backend=session, on_frame=lambda: session.wait(200))
        link = Link(Loopback(bridge), wait=session.wait)
        link.ping()
        driver.execute(driver.check_instance(config.hash), link)
        with pytest.raises(driver.DriverError):
            driver.execute(driver.check_instance(config.hash ^ 1), link)
        sample = program.input.quantize(x)[0]
        link.load(0, program.image(sample))
        r = driver.execute(driver.run(program.insn_base, program.insn_count,
                                      (0, len(program.dram)), max_cycles=10_000_000), link)
        assert r.status == "done", r.error
        out = program.read_output(link.dump(0, len(program.dram)))
    assert torch.equal(program.output.dequantize(out), qmodel(x)[0])   # the integer golden
