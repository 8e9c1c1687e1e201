"""The requantizer of the store path: int32 accumulators to int8, per channel.

Implements docs/numerics.md exactly (TFLite's MultiplyByQuantizedMultiplier, then
the output zero point and the clamp), ``lanes`` channels in parallel, in a
``LATENCY``-stage pipeline that accepts a vector every cycle. A ``tag`` travels
with each vector (the store unit puts the DRAM address there).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requantizer"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


class Requantizer(wiring.Component):
    """``lanes`` channels of ``clamp(MBQM(acc + bias, mult, shift) + zp, lo, hi)``.

    Parameters
    ----------
    lanes: channels per vector.
    tag_width: bits of the side-band ``tag`` carried with each vector.

    Ports
    -----
    i_valid, i_acc, i_tag: input vector (int32 lanes).
    bias, mult, shift: per-lane parameters (int32), held while vectors flow.
    out_zp, clamp_lo, clamp_hi: int8 output zero point and clamp bounds.
    o_valid, o_data, o_tag: the result (int8 lanes), ``LATENCY`` cycles later.
    o_next: the result one cycle before ``o_data`` (the last stage's input), so that a
        synchronous memory read addressed by it (the store path's activation table in
        block RAM) lands in the cycle of ``o_valid``.
    """

    LATENCY = 5

    def __init__(self, *, lanes: int, tag_width: int = 1) -> None:
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Requantizer lanes must be a positive int, not {lanes!r}")
        if not isinstance(tag_width, int) or tag_width < 1:
            raise ValueError(f"Requantizer tag_width must be a positive int, not {tag_width!r}")
        self.lanes = lanes
        self.tag_width = tag_width
        vec32 = data.ArrayLayout(signed(32), lanes)
        super().__init__({
            "i_valid": In(1),
            "i_acc": In(vec32),
            "i_tag": In(tag_width),
            "bias": In(vec32),
            "mult": In(vec32),
            "shift": In(vec32),
            "out_zp": In(signed(8)),
            "clamp_lo": In(signed(8)),
            "clamp_hi": In(signed(8)),
            "o_valid": Out(1),
            "o_data": Out(data.ArrayLayout(signed(8), lanes)),
            "o_next": Out(data.ArrayLayout(signed(8), lanes)),
            "o_tag": Out(tag_width),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.lanes

        valid = [Signal(name=f"valid_s{i}") for i in range(self.LATENCY)]
        tag = [Signal(self.tag_width, name=f"tag_s{i}") for i in range(self.LATENCY)]
        m.d.sync += [valid[0].eq(self.i_valid), tag[0].eq(self.i_tag)]
        for i in range(1, self.LATENCY):
            m.d.sync += [valid[i].eq(valid[i - 1]), tag[i].eq(tag[i - 1])]
        m.d.comb += [self.o_valid.eq(valid[-1]), self.o_tag.eq(tag[-1])]

        for lane in range(n):
            # Stage 1: add the bias (wraps), saturate the shift, left shift (wraps).
            total = Signal(signed(32), name=f"total_{lane}")
            m.d.comb += total.eq(self.i_acc[lane] + self.bias[lane])
            sh = self.shift[lane]
            left = Signal(range(31), name=f"left_{lane}")
            right = Signal(range(32), name=f"right_{lane}")
            m.d.comb += [
                left.eq(Mux(sh > 30, 30, Mux(sh > 0, sh, 0))),
                right.eq(Mux(sh < -31, 31, Mux(sh < 0, -sh, 0))),
            ]
            a1 = Signal(signed(32), name=f"a1_{lane}")
            m1 = Signal(signed(32), name=f"m1_{lane}")
            r1 = Signal(range(32), name=f"r1_{lane}")
            m.d.sync += [a1.eq((total << left)[:32]), m1.eq(self.mult[lane]), r1.eq(right)]

            # Stage 2: the 64-bit product.
            ab = Signal(signed(64), name=f"ab_{lane}")
            ovf2 = Signal(name=f"ovf2_{lane}")
            r2 = Signal(range(32), name=f"r2_{lane}")
            m.d.sync += [
                ab.eq(a1 * m1),
                ovf2.eq((a1 == INT32_MIN) & (m1 == INT32_MIN)),
                r2.eq(r1),
            ]

            # Stage 3: SaturatingRoundingDoublingHighMul.
            v = Signal(signed(65), name=f"v_{lane}")
            m.d.comb += v.eq(ab + Mux(ab >= 0, 1 << 30, 1 - (1 << 30)))
            floor_q = Signal(signed(34), name=f"floorq_{lane}")
            m.d.comb += floor_q.eq(v >> 31)
            trunc = Signal(name=f"trunc_{lane}")
            m.d.comb += trunc.eq((v < 0) & (v[:31] != 0))
            high = Signal(signed(32), name=f"high_{lane}")
            r3 = Signal(range(32), name=f"r3_{lane}")
            m.d.sync += [
                high.eq(Mux(ovf2, INT32_MAX, floor_q + trunc)),
                r3.eq(r2),
            ]

            # Stage 4: RoundingDivideByPOT (ties away from zero).
            mask = Signal(32, name=f"mask_{lane}")
            m.d.comb += mask.eq((1 << r3) - 1)
            rem = Signal(32, name=f"rem_{lane}")
            thr = Signal(33, name=f"thr_{lane}")
            m.d.comb += [
                rem.eq(high.as_unsigned() & mask),
                thr.eq((mask >> 1) + (high < 0)),
            ]
            q = Signal(signed(33), name=f"q_{lane}")
            m.d.sync += q.eq((high >> r3) + (rem > thr))

            # Stage 5: zero point and clamp.
            y = Signal(signed(34), name=f"y_{lane}")
            m.d.comb += y.eq(q + self.out_zp)
            m.d.comb += self.o_next[lane].eq(
                Mux(y < self.clamp_lo, self.clamp_lo, Mux(y > self.clamp_hi, self.clamp_hi, y)))
            m.d.sync += self.o_data[lane].eq(self.o_next[lane])
        return m
