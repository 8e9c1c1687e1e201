"""The systolic array alone on a board, for its resources and Fmax (``--design array``).

The array's inputs come from a free-running xorshift generator (one new int8 for every
row each cycle, weight columns written in turn, the buffer select flipping every
``cols`` cycles) and every output bit feeds one XOR tree driving an LED, so that
synthesis keeps every multiplier and adder while the design needs no other pins.
"""

from __future__ import annotations

from amaranth.build import ResourceError
from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import io

from hw.array import SystolicArray

__all__ = ["ArrayStandIn"]


class ArrayStandIn(Elaboratable):
    """``SystolicArray(rows=rows, cols=cols, **array_options)`` between a pseudo-random
    source and an XOR of its outputs (port ``led`` without a platform)."""

    def __init__(self, *, rows: int, cols: int, **array_options) -> None:
        self.array = SystolicArray(rows=rows, cols=cols, **array_options)
        self.led = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = self.array
        rows, cols = array.rows, array.cols
        state = Signal(32, init=0x2545F491)
        x1 = state ^ (state << 13)[:32]
        x2 = x1 ^ (x1 >> 17)
        m.d.sync += state.eq(x2 ^ (x2 << 5)[:32])
        a = Signal(8 * rows)
        w = Signal(8 * rows)
        m.d.sync += [a.eq(Cat(state[:8], a[:-8])), w.eq(Cat(state[8:16], w[:-8]))]
        col = Signal(range(cols))
        sel = Signal()
        m.d.sync += col.eq(Mux(col == cols - 1, 0, col + 1))
        with m.If(col == cols - 1):
            m.d.sync += sel.eq(~sel)
        m.d.comb += [
            array.a_valid.eq(state[16]),
            array.a.as_value().eq(a),
            array.a_sel.eq(sel),
            array.w_en.eq(1),
            array.w_buf.eq(~sel),
            array.w_col.eq(col),
            array.w_data.as_value().eq(w),
        ]
        out = Signal(len(array.out.as_value()) + 1)
        m.d.sync += out.eq(Cat(array.out.as_value(), array.out_valid))
        fold = Signal()
        m.d.sync += fold.eq(out.xor())
        m.d.comb += self.led.eq(fold)
        if platform is not None:
            try:
                led = platform.request("led", 0, dir="-")
            except ResourceError:
                raise ValueError(f"the array stand-in needs an led resource, which "
                                 f"{type(platform).__name__} lacks") from None
            m.submodules.led = pin = io.Buffer("o", led)
            m.d.comb += pin.o.eq(fold)
        return m
