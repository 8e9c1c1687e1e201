"""The vector ALU datapath: one :class:`~hw.isa.AluOp` on a row of int32 lanes, in one
combinational step (the compute unit's control reads the operands and writes the result)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..isa import AluOp

__all__ = ["VectorALU"]


class VectorALU(wiring.Component):
    """``out[c] = op(d[c], s[c])`` for every lane, int32 arithmetic that wraps.

    Parameters
    ----------
    lanes: lanes in a row (the array's columns), 1 to 64.

    Ports
    -----
    op: the operation. d, s: the destination row and the source row. out: the result.

    Raises
    ------
    ValueError: ``lanes`` out of range.
    """

    def __init__(self, *, lanes: int) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
            raise ValueError(f"VectorALU lanes must be an int from 1 to 64, not {lanes!r}")
        self.lanes = lanes
        row = data.ArrayLayout(signed(32), lanes)
        super().__init__({"op": In(AluOp), "d": In(row), "s": In(row), "out": Out(row)})

    def elaborate(self, platform):
        m = Module()
        for c in range(self.lanes):
            d, s = self.d[c], self.s[c]
            with m.Switch(self.op):
                for op in AluOp:
                    with m.Case(op):
                        m.d.comb += self.out[c].eq(_SEMANTICS[op](d, s))
        return m


#: Each operation's lane function (docs of :class:`~hw.isa.AluOp`).
_SEMANTICS = {
    AluOp.MOV: lambda d, s: s,
    AluOp.ADD: lambda d, s: d + s,
    AluOp.SUB: lambda d, s: d - s,
    AluOp.MUL: lambda d, s: d * s,
    AluOp.MAX: lambda d, s: Mux(d > s, d, s),
    AluOp.MIN: lambda d, s: Mux(d < s, d, s),
    AluOp.SHR: lambda d, s: d >> s[:5],
    AluOp.SHL: lambda d, s: d << s[:5],
}
if set(_SEMANTICS) != set(AluOp):
    raise NotImplementedError(
        f"VectorALU lacks AluOp {sorted(op.name for op in set(AluOp) - set(_SEMANTICS))}")
