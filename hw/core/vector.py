"""The vector ALU datapath: one :class:`~hw.isa.AluOp` on a row of int32 lanes, in one
combinational step (the compute unit's control reads the operands and writes the result)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..isa import AluOp

__all__ = ["VectorALU"]


class VectorALU(wiring.Component):
    """``out[c] = op(d[c], s[c])`` for every lane, int32 arithmetic that wraps; the
    reductions (``RSUM``, ``RMAX``) write one value, of all of ``s``'s lanes, to every lane.

    The lanes share what the operations have in common: one 32 x 32 multiplier per lane
    gives ``MUL`` its low and ``MULH`` its high word, one shifter ``SHR`` and ``RSHR`` (the
    rounding bit is the last bit shifted out); the reductions are an adder tree and a
    comparator tree across the lanes (``lanes - 1`` each).

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
        lanes = [self.s[c] for c in range(self.lanes)]
        rsum = Signal(signed(32))
        rmax = Signal(signed(32))
        m.d.comb += [rsum.eq(_tree(lanes, lambda a, b: (a + b)[:32].as_signed())),
                     rmax.eq(_tree(lanes, lambda a, b: Mux(a > b, a, b)))]
        for c in range(self.lanes):
            d, s = self.d[c], self.s[c]
            prod = Signal(signed(64), name=f"prod{c}")
            # (d << 1) >> sh: bits 32:1 are d >> sh, bit 0 the last bit shifted out.
            shifted = Signal(signed(33), name=f"shifted{c}")
            m.d.comb += [prod.eq(d * s), shifted.eq((d << 1) >> s[:5])]
            shr = shifted[1:].as_signed()
            semantics = {
                AluOp.MOV: s,
                AluOp.ADD: d + s,
                AluOp.SUB: d - s,
                AluOp.MUL: prod[:32],
                AluOp.MAX: Mux(d > s, d, s),
                AluOp.MIN: Mux(d < s, d, s),
                AluOp.SHR: shr,
                AluOp.SHL: d << s[:5],
                AluOp.RSUM: rsum,
                AluOp.RMAX: rmax,
                AluOp.CLZ: _clz(s),
                AluOp.MULH: prod[32:],
                AluOp.RSHR: shr + shifted[0],
            }
            if set(semantics) != set(AluOp):  # pragma: no cover - a definition error
                raise NotImplementedError(
                    f"VectorALU lacks AluOp {sorted(op.name for op in set(AluOp) - set(semantics))}")
            with m.Switch(self.op):
                for op, value in semantics.items():
                    with m.Case(op):
                        m.d.comb += self.out[c].eq(value)
        return m


def _tree(values, combine):
    """``combine`` over ``values`` as a balanced tree (depth log2 of their number)."""
    while len(values) > 1:
        values = [combine(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _clz(v):
    """Leading zero bits of the 32-bit word ``v`` (32 for 0): a priority encoder whose
    highest set bit decides."""
    out = Const(32, 6)
    for i in range(32):
        out = Mux(v[i], 31 - i, out)
    return out
