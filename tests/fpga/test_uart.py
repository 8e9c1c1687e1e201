"""The UART in the Amaranth simulator: bytes round-trip from the transmitter into the
receiver at several divisors; the line's bit timing; a glitch is not a start bit; a low
stop bit is a framing error and drops the byte; the divisor's checks."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from fpga.uart import UARTRx, UARTTx, divisor


def _loop(div):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=div)
    m.submodules.rx = rx = UARTRx(divisor=div)
    m.d.comb += rx.rx.eq(tx.tx)
    return m, tx, rx


@pytest.mark.parametrize("div", [4, 5, 8, 13])
def test_bytes_round_trip(div):
    m, tx, rx = _loop(div)
    data = [0x00, 0xFF, 0xA5, 0x5A] + [random.Random(div).randrange(256) for _ in range(12)]
    got = []

    async def send(ctx):
        for byte in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        async for _, _, valid, payload, ferr in ctx.tick().sample(rx.o.valid, rx.o.payload,
                                                                 rx.frame_error):
            assert not ferr
            if valid:
                got.append(payload)
            if len(got) == len(data):
                return

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(1e-6 * div * 10 * (len(data) + 2))
    assert got == data


def _drive_line(div, bits, *, glitch=0):
    """Drive a receiver's line with ``bits`` (one per bit period); collect what it reports."""
    rx = UARTRx(divisor=div)
    events = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 1)
        if glitch:
            ctx.set(rx.rx, 0)
            await ctx.tick().repeat(glitch)
            ctx.set(rx.rx, 1)
            await ctx.tick().repeat(2 * div)
        for bit in bits:
            ctx.set(rx.rx, bit)
            for _ in range(div):
                await ctx.tick()
                if ctx.get(rx.o.valid):
                    events.append(("byte", ctx.get(rx.o.payload)))
                if ctx.get(rx.frame_error):
                    events.append(("frame_error",))
        ctx.set(rx.rx, 1)
        for _ in range(3 * div):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                events.append(("byte", ctx.get(rx.o.payload)))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return events


def _frame(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def test_a_low_stop_bit_is_a_framing_error_and_the_next_byte_still_arrives():
    div = 6
    events = _drive_line(div, _frame(0x3C, stop=0) + [0, 0] + [1] * 3 + _frame(0xC3))
    assert events == [("frame_error",), ("byte", 0xC3)]


def test_a_glitch_shorter_than_half_a_bit_is_not_a_start_bit():
    div = 8
    assert _drive_line(div, _frame(0x81), glitch=div // 2 - 2) == [("byte", 0x81)]


def test_transmitter_bit_timing():
    div = 5
    tx = UARTTx(divisor=div)
    line = []

    async def bench(ctx):
        ctx.set(tx.i.valid, 1)
        ctx.set(tx.i.payload, 0x6B)
        await ctx.tick()
        ctx.set(tx.i.valid, 0)
        for _ in range(12 * div):
            line.append(ctx.get(tx.tx))
            await ctx.tick()

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expect = [b for b in _frame(0x6B) for _ in range(div)]
    assert line[:10 * div] == expect and all(line[10 * div:])


def test_divisor_checks():
    assert divisor(12e6, 115200) == 104
    assert divisor(1e6, 250_000) == 4
    with pytest.raises(ValueError, match="too high for a 1e\\+06 Hz clock"):
        divisor(1e6, 500_000)
    with pytest.raises(ValueError, match="% off"):
        divisor(1e6, 180_000)                 # 5.56 cycles per bit
    with pytest.raises(ValueError, match="divisor must be an int of at least 4"):
        UARTTx(divisor=3)
