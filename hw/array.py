"""The weight-stationary systolic array: a pure datapath.

``rows`` x ``cols`` processing elements; PE (r, c) holds weight ``w[r][c]`` in two
registers (double buffering). An input vector ``a`` (``rows`` int8) enters each
cycle; element ``r`` travels right along row ``r``, int32 partial sums travel
down the columns, and column ``c`` yields ``sum_r a[r] * w[r][c]``.

Input skew and output deskew are inside: a vector presented at cycle ``t`` comes
out as a whole at cycle ``t + latency`` (``latency = rows + cols - 1``).

Each input carries ``sel``, the weight buffer it multiplies with; ``sel`` travels
with the data, so a new tile's weights take effect in a wavefront exactly behind
the last vector of the previous tile. While one buffer is in use, the other is
written through ``w_en``/``w_buf``/``w_col``/``w_data`` one column per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """Weight-stationary int8 x int8 -> int32 array.

    Parameters
    ----------
    rows, cols:
        Array size (2 to 64 each).

    Ports
    -----
    a_valid, a, a_sel: input vector, its validity and weight buffer.
    w_en, w_buf, w_col, w_data: write weight column ``w_col`` of buffer ``w_buf``
        (``w_data[r]`` goes to PE ``(r, w_col)``).
    out_valid, out: the result vector, ``latency`` cycles after its input.
    """

    def __init__(self, *, rows: int, cols: int) -> None:
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 2 <= value <= 64:
                raise ValueError(f"SystolicArray {name} must be an int from 2 to 64, not {value!r}")
        self.rows = rows
        self.cols = cols
        self.latency = rows + cols - 1
        super().__init__({
            "a_valid": In(1),
            "a": In(data.ArrayLayout(signed(8), rows)),
            "a_sel": In(1),
            "w_en": In(1),
            "w_buf": In(1),
            "w_col": In(range(cols)),
            "w_data": In(data.ArrayLayout(signed(8), rows)),
            "out_valid": Out(1),
            "out": Out(data.ArrayLayout(signed(32), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        # Weight registers, two buffers per PE.
        w = [[[Signal(signed(8), name=f"w{b}_{r}_{c}") for c in range(C)] for r in range(R)]
             for b in range(2)]
        with m.If(self.w_en):
            for c in range(C):
                with m.If(self.w_col == c):
                    for b in range(2):
                        with m.If(self.w_buf == b):
                            for r in range(R):
                                m.d.sync += w[b][r][c].eq(self.w_data[r])

        # Input skew: row r sees the vector r cycles late (row 0 directly).
        skew_a = []
        skew_s = []
        for r in range(R):
            a_in, s_in = self.a[r], self.a_sel
            for d in range(r):
                a_reg = Signal(signed(8), name=f"skew_a{r}_{d}")
                s_reg = Signal(1, name=f"skew_s{r}_{d}")
                m.d.sync += [a_reg.eq(a_in), s_reg.eq(s_in)]
                a_in, s_in = a_reg, s_reg
            skew_a.append(a_in)
            skew_s.append(s_in)

        # The PE grid.
        psum = [[None] * C for _ in range(R)]
        for r in range(R):
            a_in, s_in = skew_a[r], skew_s[r]
            for c in range(C):
                a_reg = Signal(signed(8), name=f"pe_a_{r}_{c}")
                s_reg = Signal(1, name=f"pe_s_{r}_{c}")
                p_reg = Signal(signed(32), name=f"pe_p_{r}_{c}")
                weight = Mux(s_in, w[1][r][c], w[0][r][c])
                p_in = psum[r - 1][c] if r > 0 else 0
                m.d.sync += [
                    a_reg.eq(a_in),
                    s_reg.eq(s_in),
                    p_reg.eq(p_in + a_in * weight),
                ]
                psum[r][c] = p_reg
                a_in, s_in = a_reg, s_reg

        # Output deskew: column c is delayed by cols-1-c more cycles.
        for c in range(C):
            p = psum[R - 1][c]
            for d in range(C - 1 - c):
                p_reg = Signal(signed(32), name=f"deskew_{c}_{d}")
                m.d.sync += p_reg.eq(p)
                p = p_reg
            m.d.comb += self.out[c].eq(p)

        # Validity travels alongside: latency R + C - 1.
        v = self.a_valid
        for d in range(self.latency):
            v_reg = Signal(name=f"valid_{d}")
            m.d.sync += v_reg.eq(v)
            v = v_reg
        m.d.comb += self.out_valid.eq(v)
        return m

