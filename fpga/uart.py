"""A UART (8 data bits, no parity, one stop bit) for the SoC's host link.

:class:`UARTTx` sends the bytes of a stream; :class:`UARTRx` turns the line into a
stream of bytes. Both run on one clock with a bit period of ``divisor`` cycles
(:func:`divisor` derives it from the clock and the baud rate and refuses a rate the
clock cannot make). The receiver synchronises the line (two flip-flops), waits for a
falling edge, re-checks the start bit half a bit later (a glitch shorter than that is
ignored), samples each data bit in its middle, and flags a missing stop bit as a
framing error (the byte is dropped, and the receiver waits for the line to go idle
again so that a break is one error, not many).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "divisor", "MIN_DIVISOR"]

#: The fewest clock cycles per bit: the receiver samples half a bit after the start edge.
MIN_DIVISOR = 4
#: The largest relative error of the baud rate that the divisor may make (a UART
#: tolerates about 4 % between both ends; half of that is left to the other end).
MAX_BAUD_ERROR = 0.02


def divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``, rounded to the nearest.

    Raises ValueError when the clock is too slow for the rate (fewer than
    :data:`MIN_DIVISOR` cycles per bit) or the rounding misses the rate by more than 2 %.
    """
    if not clk_hz > 0 or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"clk_hz ({clk_hz!r}) and baud ({baud!r}) must be positive, baud an int")
    div = round(clk_hz / baud)
    if div < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too high for a {clk_hz:g} Hz clock: the UART needs "
                         f"at least {MIN_DIVISOR} clock cycles per bit, at most "
                         f"{int(clk_hz // MIN_DIVISOR)} baud")
    error = abs(clk_hz / div - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud} from a {clk_hz:g} Hz clock: the nearest divisor {div} "
                         f"gives {clk_hz / div:.0f} baud, {100 * error:.1f} % off (at most "
                         f"{100 * MAX_BAUD_ERROR:g} %)")
    return div


def _check_divisor(div: int) -> int:
    if not isinstance(div, int) or div < MIN_DIVISOR:
        raise ValueError(f"divisor must be an int of at least {MIN_DIVISOR}, not {div!r}")
    return div


class UARTTx(wiring.Component):
    """Sends each byte of ``i`` on ``tx``: a start bit, 8 data bits LSB first, a stop bit.

    Parameters: ``divisor``, clock cycles per bit (at least :data:`MIN_DIVISOR`).
    Ports: ``i`` (a stream of bytes; ready while the line is free), ``tx`` (the line,
    idle high).
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, *, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10)
        bits = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += self.i.ready.eq(bits == 0)
        with m.If(bits == 0):
            with m.If(self.i.valid):
                # stop bit, data, start bit: shifted out from bit 0
                m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), bits.eq(10),
                             timer.eq(self.divisor - 1), self.tx.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [bits.eq(bits - 1), shift.eq(shift >> 1), timer.eq(self.divisor - 1)]
            # After the last (stop) bit the line stays high.
            m.d.sync += self.tx.eq(shift[1] | (bits == 1))
        return m


class UARTRx(wiring.Component):
    """Receives bytes from ``rx`` into the stream ``o``.

    Parameters: ``divisor``, clock cycles per bit (at least :data:`MIN_DIVISOR`).
    Ports: ``rx`` (the line), ``o`` (a stream of bytes; a byte not taken before the
    next one completes is replaced by it and ``overrun`` pulses), ``frame_error``
    (pulses for one cycle when a stop bit is low; that byte is dropped).
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, *, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        data = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):              # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [data.eq(Cat(data[1:], line)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.sync += [self.o.payload.eq(data), self.o.valid.eq(1),
                                 self.overrun.eq(self.o.valid & ~self.o.ready)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.frame_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
