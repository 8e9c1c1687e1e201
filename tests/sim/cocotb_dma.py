"""cocotb bench for the DMA engines alone (driven from tests/sim/test_dma.py).

Driver, monitor, model and checker: random vector reads and writes at unaligned
addresses (bursts split at 2 beats and at 4 KiB), cocotbext-axi's AxiRam as the memory
with random back-pressure on all five channels and on the response port, and window
violations that must raise the error without touching the bus.
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, ReadOnly

MAXB = 12


class Pause:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def __iter__(self):
        while True:
            yield 1 if self.rng.random() < 0.35 else 0


async def setup(dut, seed):
    from cocotbext.axi import AxiBus, AxiRam
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name in ("rd_req_valid", "wr_req_valid", "rd_resp_ready", "halt"):
        getattr(dut, name).value = 0
    dut.lo.value = 0
    dut.hi.value = 1 << 14
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=1 << 14)
    for k, ch in enumerate([ram.write_if.aw_channel, ram.write_if.w_channel,
                            ram.write_if.b_channel, ram.read_if.ar_channel,
                            ram.read_if.r_channel]):
        ch.set_pause_generator(Pause(seed * 10 + k))
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return ram


async def send(dut, port, **fields):
    """Hold a request on ``port`` (rd or wr) until the engine takes it."""
    getattr(dut, f"{port}_req_valid").value = 1
    for name, value in fields.items():
        getattr(dut, f"{port}_req_{name}").value = value
    while True:
        await RisingEdge(dut.clk)
        if getattr(dut, f"{port}_req_ready").value:
            break
    getattr(dut, f"{port}_req_valid").value = 0


def random_requests(rng, n):
    reqs = []
    for tag in range(n):
        nbytes = rng.randint(1, MAXB)
        if rng.random() < 0.3:     # straddle a 4 KiB boundary
            addr = rng.choice([4096, 8192, 12288]) - rng.randint(1, nbytes)
        else:
            addr = rng.randint(0, (1 << 14) - nbytes)
        reqs.append((addr, nbytes, tag % 256))
    return reqs


@cocotb.test()
async def reads_match_memory(dut):
    rng = random.Random(1)
    ram = await setup(dut, 1)
    image = bytes(rng.randrange(256) for _ in range(1 << 14))
    ram.write(0, image)
    reqs = random_requests(rng, 120)
    got = []

    async def monitor():
        while len(got) < len(reqs):
            dut.rd_resp_ready.value = 1 if rng.random() < 0.7 else 0
            await ReadOnly()
            if dut.rd_resp_valid.value and dut.rd_resp_ready.value:
                data = int(dut.rd_resp_data.value).to_bytes(MAXB, "little")
                got.append((int(dut.rd_resp_tag.value), data))
            await RisingEdge(dut.clk)

    mon = cocotb.start_soon(monitor())
    for addr, nbytes, tag in reqs:
        await send(dut, "rd", addr=addr, nbytes=nbytes, tag=tag)
        if rng.random() < 0.2:
            await ClockCycles(dut.clk, rng.randint(1, 3))
    await mon
    assert len(got) == len(reqs)
    for (addr, nbytes, tag), (gtag, data) in zip(reqs, got):
        assert gtag == tag, "responses come back in request order with their tags"
        assert data[:nbytes] == image[addr:addr + nbytes], f"read of {nbytes} at {addr:#x}"
    assert not dut.rd_error.value and not dut.rd_bus_error.value


@cocotb.test()
async def writes_land_with_strobes(dut):
    rng = random.Random(2)
    ram = await setup(dut, 2)
    ram.write(0, bytes(1 << 14))
    model = bytearray(1 << 14)
    for addr, nbytes, tag in random_requests(rng, 100):
        payload = bytes(rng.randrange(256) for _ in range(MAXB))
        model[addr:addr + nbytes] = payload[:nbytes]
        await send(dut, "wr", addr=addr, nbytes=nbytes, tag=tag,
                   data=int.from_bytes(payload, "little"))
    for _ in range(2000):
        await RisingEdge(dut.clk)
        if dut.wr_idle.value:
            break
    assert dut.wr_idle.value, "every write burst is answered"
    assert ram.read(0, 1 << 14) == bytes(model), "bytes outside each vector are untouched"


@cocotb.test()
async def window_violations_stop_before_the_bus(dut):
    ram = await setup(dut, 3)
    ram.write(0, bytes(range(256)) * 64)
    dut.lo.value = 0x100
    dut.hi.value = 0x200
    ar_count = 0

    async def count_ar():
        nonlocal ar_count
        while True:
            await RisingEdge(dut.clk)
            if dut.m_axi__arvalid.value and dut.m_axi__arready.value:
                ar_count += 1

    cocotb.start_soon(count_ar())
    # The last byte of the vector is one past the limit.
    await send(dut, "rd", addr=0x1F8, nbytes=9, tag=77)
    await ClockCycles(dut.clk, 20)
    assert dut.rd_error.value and int(dut.rd_error_tag.value) == 77
    assert ar_count == 0, "nothing was read"
    # A write below the base.
    await send(dut, "wr", addr=0xFC, nbytes=8, data=(1 << 96) - 1, tag=5)
    await ClockCycles(dut.clk, 20)
    assert dut.wr_error.value and int(dut.wr_error_tag.value) == 5
    assert ram.read(0xF0, 0x20) == (bytes(range(256)) * 64)[0xF0:0x110], "nothing was written"
