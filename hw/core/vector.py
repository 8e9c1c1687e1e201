"""The vector ALU datapath: one :class:`~hw.isa.AluOp` on a row of int32 lanes, in one
combinational step (the compute unit's control reads the operands and writes the result)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
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

    With ``mul_bits`` the multiplier is sequential instead: per lane an adder that takes
    ``mul_bits`` bits of ``s`` a cycle (its last chunk signed), the product's high part in
    a register and its low bits shifted in beside it, so ``MUL`` and ``MULH`` take
    ``32 / mul_bits`` cycles, from a cycle with ``mul_start`` (``d`` and ``s`` held
    meanwhile) to the one with ``mul_done``, in which ``out`` is the result.

    Parameters
    ----------
    lanes: lanes in a row (the array's columns), 1 to 64.
    mul_bits: 0 (a 32 x 32 multiplier per lane, the default) or 1, 2, 4, 8, 16.

    Ports
    -----
    op: the operation. d, s: the destination row and the source row. out: the result.
    mul_start, mul_done: with ``mul_bits`` only: a multiplication's first cycle, its last.

    Raises
    ------
    ValueError: ``lanes`` or ``mul_bits`` out of range.
    """

    def __init__(self, *, lanes: int, mul_bits: int = 0) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
            raise ValueError(f"VectorALU lanes must be an int from 1 to 64, not {lanes!r}")
        if mul_bits not in (0, 1, 2, 4, 8, 16):
            raise ValueError(f"VectorALU mul_bits must be 0, 1, 2, 4, 8 or 16, not {mul_bits!r}")
        self.lanes = lanes
        self.mul_bits = mul_bits
        row = data.ArrayLayout(signed(32), lanes)
        ports = {"op": In(AluOp), "d": In(row), "s": In(row), "out": Out(row)}
        if mul_bits:
            ports.update({"mul_start": In(1), "mul_done": Out(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        b = self.mul_bits
        if b:
            steps = 32 // b
            # Step k (0 in the mul_start cycle) adds d times chunk k of s.
            k_reg = Signal(range(steps), name="mul_k")
            k = Signal(range(steps), name="mul_step")
            m.d.comb += [k.eq(Mux(self.mul_start, 0, k_reg)), self.mul_done.eq(k == steps - 1)]
            m.d.sync += k_reg.eq(Mux(k == steps - 1, 0, k + 1))
        lanes = [self.s[c] for c in range(self.lanes)]
        rsum = Signal(signed(32))
        rmax = Signal(signed(32))
        m.d.comb += [rsum.eq(_tree(lanes, lambda a, b: (a + b)[:32].as_signed())),
                     rmax.eq(_tree(lanes, lambda a, b: Mux(a > b, a, b)))]
        for c in range(self.lanes):
            d, s = self.d[c], self.s[c]
            prod = Signal(signed(64), name=f"prod{c}")
            if b:
                m.d.comb += prod.eq(self._mul_step(m, c, d, s, k))
            else:
                m.d.comb += prod.eq(d * s)
            # (d << 1) >> sh: bits 32:1 are d >> sh, bit 0 the last bit shifted out.
            shifted = Signal(signed(33), name=f"shifted{c}")
            m.d.comb += shifted.eq((d << 1) >> s[:5])
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

    def _mul_step(self, m, c, d, s, k):
        """Lane ``c``'s sequential multiplier: after the step of chunk ``k`` (of the last
        one, in the mul_done cycle) the value is the 64-bit ``d * s``. Of the sum so far,
        ``hi`` holds the part above the bits already retired, ``lo`` those bits (shifted in
        from the top, so after the last step they are the low word)."""
        b = self.mul_bits
        steps = 32 // b
        hi = Signal(signed(33 + b), name=f"mul_hi{c}")
        lo = Signal(32, name=f"mul_lo{c}")
        chunk = s.as_unsigned().word_select(k, b)
        # d times the chunk as shifted adds, not a `*` that Yosys would put on a DSP. The
        # last chunk holds the sign bit: its weight is negative.
        term = Signal(signed(33 + b), name=f"mul_term{c}")
        top = Mux(k == steps - 1, -(d << (b - 1)), d << (b - 1))
        m.d.comb += term.eq(sum((Mux(chunk[i], d << i, 0) for i in range(b - 1)),
                                start=Mux(chunk[b - 1], top, 0)))
        total = Signal(signed(34 + b), name=f"mul_sum{c}")
        m.d.comb += total.eq(Mux(self.mul_start, 0, hi) + term)
        new_lo = Signal(32, name=f"mul_lo_next{c}")
        lo_in = Mux(self.mul_start, 0, lo)
        m.d.comb += new_lo.eq(Cat(lo_in[b:], total[:b]))
        m.d.sync += [hi.eq(total >> b), lo.eq(new_lo)]
        return Cat(new_lo, (total >> b)[:32])


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
