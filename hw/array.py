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
written through ``w_en``/``w_buf``/``w_col``/``w_data`` one column per cycle, in any order: a
write travels through the array as a vector does and takes effect for the vectors that
enter :data:`WEIGHT_WAVEFRONT` cycles after it or later.

How the products are built is an implementation option (:class:`MacOptions`), not part
of the array's function: every option computes the same outputs, so none is part of
:class:`~hw.NPUConfig` or its hash; only ``latency`` may change (one more cycle with a
product register, one more with operand registers), and everything downstream reads
``latency``.

* ``kind="generic"`` (the default): ``a * w`` in every PE, mapped by synthesis (one
  MULT18X18D per product on ECP5, one SB_MAC16 per product in its 16x16 mode with
  ``synth_ice40 -dsp``, LUTs otherwise).
* ``kind="ice40_dual"``: pairs of products share one hand-instantiated iCE40 ``SB_MAC16``
  in its two-8x8 mode (the mode Yosys never infers), so the UP5K's 8 DSPs give 16
  products. Products are numbered column by column (``c * rows + r``); products ``2k`` and
  ``2k+1`` share DSP ``k`` (rows ``2j`` and ``2j+1`` of one column when ``rows`` is even).
* ``product_register=True``: a register on each product before its add (what the
  MULT18X18D's output register and the SB_MAC16's 8x8 product registers hold), so the
  multiplier and the partial-sum adder are in different cycles; ``latency`` grows by one.
* ``operand_register=True``: a register on each multiplier's two operands (the
  activation and the weight its buffer select picks), so a multiplier's inputs come
  straight from flip-flops: the select's multiplexer and its routing leave the
  multiplier's cycle (on the ECP5-85F 16x16 hybrid they were 7.4 of its 17.9 ns critical
  path); ``latency`` grows by one more.
* ``dsp_products=N``: only the first ``N`` products (same numbering) use the DSP form; the
  rest are a shift-add in logic that no DSP inference recognizes (the hybrid for
  arrays with more products than the chip has DSPs).
* ``narrow_sums=True``: each partial-sum register is only as wide as its value can be
  (the sum of ``r + 1`` int8 products needs ``(16384 * (r + 1)).bit_length() + 1`` bits,
  17 to 22), sign-extended to int32 at the output: shorter carry chains, same results.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SystolicArray", "MacOptions", "MAC_KINDS", "MAC_PRESETS", "WEIGHT_WAVEFRONT"]

#: A weight write presented on ``w_*`` in cycle ``p`` is seen by the vectors that enter in
#: cycle ``p + WEIGHT_WAVEFRONT`` or later, and by none that entered before: the write
#: reaches PE ``(r, c)`` ``r + c`` cycles after it is presented, exactly as a vector does,
#: and lands in the PE's register a cycle after its enable is decoded. The compute unit's first
#: vector of a GEMM enters three cycles after its last weight column is presented, so the
#: wavefront costs no time.
WEIGHT_WAVEFRONT = 2

#: The ways a product can be built.
MAC_KINDS = ("generic", "ice40_dual")


@dataclass(frozen=True)
class MacOptions:
    """How the array builds its products (see the module docstring); the function never
    changes, so these are not part of :class:`~hw.NPUConfig`.

    kind: ``"generic"`` or ``"ice40_dual"``.
    product_register: a register between each multiplier and its add (latency + 1).
    operand_register: registers on each multiplier's operands (latency + 1).
    dsp_products: how many products (column by column) take the DSP form; the others are
        built in logic. ``None``: all of them.
    narrow_sums: partial-sum registers only as wide as their values.
    """

    kind: str = "generic"
    product_register: bool = False
    operand_register: bool = False
    dsp_products: int | None = None
    narrow_sums: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MAC_KINDS:
            raise ValueError(f"MacOptions kind must be one of {', '.join(MAC_KINDS)}, not {self.kind!r}")
        for name in ("product_register", "operand_register", "narrow_sums"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MacOptions {name} must be a bool, not {getattr(self, name)!r}")
        n = self.dsp_products
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ValueError(f"MacOptions dsp_products must be None or an int of at least 0, not {n!r}")

    @classmethod
    def cast(cls, mac: "MacOptions | str | None") -> "MacOptions":
        """``mac`` as options: a :class:`MacOptions`, ``None`` (the default) or a preset
        name from :data:`MAC_PRESETS`."""
        if mac is None:
            return cls()
        if isinstance(mac, cls):
            return mac
        if isinstance(mac, str) and mac in MAC_PRESETS:
            return MAC_PRESETS[mac]
        raise ValueError(f"mac must be a MacOptions or one of {', '.join(MAC_PRESETS)}, not {mac!r}")


#: Named option sets, for ``NPU(config, mac="...")`` and command lines.
MAC_PRESETS = {
    "generic": MacOptions(),
    "pipelined": MacOptions(product_register=True),
    "ice40_dual": MacOptions(kind="ice40_dual"),
    "ice40_dual_pipelined": MacOptions(kind="ice40_dual", product_register=True),
    #: operands and products registered: multipliers between flip-flops only.
    "registered": MacOptions(product_register=True, operand_register=True),
}


def _sum_width(n: int) -> int:
    """Bits of a signed sum of ``n`` int8 x int8 products (each in [-16256, 16384])."""
    return min(32, (16384 * n).bit_length() + 1)


def _logic_product(a, w):
    """``a * w`` (int8 each) as a tree of shifted, masked partial products: a form no DSP
    inference takes for a multiplication, so it stays in LUTs."""
    terms = []
    for i in range(8):
        term = a.as_signed() << i
        if i == 7:
            term = -term
        terms.append(Mux(w[i], term, 0))
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0][:16].as_signed()


def _sb_mac16_dual(m, name, a_hi, w_hi, a_lo, w_lo, registered):
    """One SB_MAC16 in its two-8x8 mode: returns ``(a_hi * w_hi, a_lo * w_lo)`` as int16.

    With ``A_SIGNED``/``B_SIGNED`` set and ``MODE_8x8``, the cell sign-extends each byte
    of A and B (Yosys's ``cells_sim.v``, checked against Lattice's model since Yosys #1212),
    so both halves are signed 8x8 products; the 16x16 adder stage is bypassed
    (``TOPOUTPUT_SELECT``/``BOTOUTPUT_SELECT`` = 2: the 8x8 products, registered by
    ``TOP_8x8_MULT_REG``/``BOT_8x8_MULT_REG`` when ``registered``).
    """
    out = Signal(32, name=f"{name}_o")
    reg = Const(int(registered), 1)
    m.submodules[name] = Instance(
        "SB_MAC16",
        p_NEG_TRIGGER=Const(0, 1), p_C_REG=Const(0, 1), p_A_REG=Const(0, 1),
        p_B_REG=Const(0, 1), p_D_REG=Const(0, 1),
        p_TOP_8x8_MULT_REG=reg, p_BOT_8x8_MULT_REG=reg,
        p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(0, 1),
        p_TOPOUTPUT_SELECT=Const(2, 2), p_TOPADDSUB_LOWERINPUT=Const(0, 2),
        p_TOPADDSUB_UPPERINPUT=Const(0, 1), p_TOPADDSUB_CARRYSELECT=Const(0, 2),
        p_BOTOUTPUT_SELECT=Const(2, 2), p_BOTADDSUB_LOWERINPUT=Const(0, 2),
        p_BOTADDSUB_UPPERINPUT=Const(0, 1), p_BOTADDSUB_CARRYSELECT=Const(0, 2),
        p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
        i_CLK=ClockSignal("sync"), i_CE=Const(1, 1),
        i_A=Cat(a_lo, a_hi), i_B=Cat(w_lo, w_hi),
        i_C=Const(0, 16), i_D=Const(0, 16),
        i_AHOLD=Const(0, 1), i_BHOLD=Const(0, 1), i_CHOLD=Const(0, 1), i_DHOLD=Const(0, 1),
        i_IRSTTOP=Const(0, 1), i_IRSTBOT=Const(0, 1), i_ORSTTOP=Const(0, 1), i_ORSTBOT=Const(0, 1),
        i_OLOADTOP=Const(0, 1), i_OLOADBOT=Const(0, 1), i_ADDSUBTOP=Const(0, 1),
        i_ADDSUBBOT=Const(0, 1), i_OHOLDTOP=Const(0, 1), i_OHOLDBOT=Const(0, 1),
        i_CI=Const(0, 1), i_ACCUMCI=Const(0, 1), i_SIGNEXTIN=Const(0, 1),
        o_O=out,
    )
    return out[16:32].as_signed(), out[0:16].as_signed()


class SystolicArray(wiring.Component):
    """Weight-stationary int8 x int8 -> int32 array.

    Parameters
    ----------
    rows, cols:
        Array size (2 to 64 each).
    mac:
        How products are built: a :class:`MacOptions`, a name from :data:`MAC_PRESETS`
        or ``None`` (``"generic"``). Never changes the outputs; ``latency`` is one more
        with a product register.

    Ports
    -----
    a_valid, a, a_sel: input vector, its validity and weight buffer.
    w_en, w_buf, w_col, w_data: write weight column ``w_col`` of buffer ``w_buf``
        (``w_data[r]`` goes to PE ``(r, w_col)``).
    out_valid, out: the result vector, ``latency`` cycles after its input.

    Raises
    ------
    ValueError: a size out of range, an unknown ``mac``, or ``dsp_products`` above
        ``rows * cols``.
    """

    def __init__(self, *, rows: int, cols: int, mac: MacOptions | str | None = None) -> None:
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 2 <= value <= 64:
                raise ValueError(f"SystolicArray {name} must be an int from 2 to 64, not {value!r}")
        self.rows = rows
        self.cols = cols
        self.mac = MacOptions.cast(mac)
        n = self.mac.dsp_products
        if n is not None and n > rows * cols:
            raise ValueError(f"MacOptions dsp_products is {n}, more than the {rows}x{cols} array's "
                             f"{rows * cols} products")
        self.dsp_products = rows * cols if n is None else n
        self.latency = rows + cols - 1 + int(self.mac.product_register) + \
            int(self.mac.operand_register)
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

    @property
    def dsp_count(self) -> int:
        """DSP cells the array instantiates itself (``SB_MAC16`` for ``ice40_dual``; 0 for
        ``generic``, whose multiplications synthesis maps)."""
        return (self.dsp_products + 1) // 2 if self.mac.kind == "ice40_dual" else 0

    def _products(self, m, operands):
        """The int16 product of every PE, ``operands[r][c] = (a, w)`` (the PE's input and
        selected weight), built as the options say; registered when ``product_register``."""
        R, C = self.rows, self.cols
        opt = self.mac
        order = [(r, c) for c in range(C) for r in range(R)]
        on_dsp = order[:self.dsp_products]
        prod = {}
        if opt.kind == "ice40_dual":
            for k in range(0, len(on_dsp), 2):
                lo, hi = on_dsp[k], on_dsp[k + 1] if k + 1 < len(on_dsp) else None
                a_lo, w_lo = operands[lo[0]][lo[1]]
                a_hi, w_hi = operands[hi[0]][hi[1]] if hi else (Const(0, signed(8)),) * 2
                p_hi, p_lo = _sb_mac16_dual(m, f"mac16_{k // 2}", a_hi, w_hi, a_lo, w_lo,
                                            opt.product_register)
                prod[lo] = p_lo
                if hi:
                    prod[hi] = p_hi
        else:
            for r, c in on_dsp:
                a, w = operands[r][c]
                prod[r, c] = a * w
        for r, c in order[self.dsp_products:]:
            a, w = operands[r][c]
            prod[r, c] = _logic_product(a, w)
        registered_inside = opt.kind == "ice40_dual"
        if opt.product_register:
            for r, c in order:
                if registered_inside and (r, c) in on_dsp:
                    continue
                reg = Signal(signed(16), name=f"pe_m_{r}_{c}")
                m.d.sync += reg.eq(prod[r, c])
                prod[r, c] = reg
        return prod

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        width = [_sum_width(r + 1) if self.mac.narrow_sums else 32 for r in range(R)]

        # Weight registers, two buffers per PE, written by a wavefront that travels as the
        # inputs do (WEIGHT_WAVEFRONT): row r's data enters r cycles late and moves right one
        # column a cycle; each column's buffer enables are decoded once, at row 0, from a
        # control word that moves right along row 0, and move down their column one row a
        # cycle. Every net of the write path joins neighbouring PEs, so none spans the
        # array (on the ECP5-85F 16x16 a decoded column enable was the critical path:
        # 13-15 ns of routing across the chip, registered or not).
        w = [[[Signal(signed(8), name=f"w{b}_{r}_{c}") for c in range(C)] for r in range(R)]
             for b in range(2)]
        ctl_layout = data.StructLayout({"en": 1, "buf": 1, "col": range(C)})
        ctl = Signal(ctl_layout, name="w_ctl_0")
        m.d.comb += [ctl.en.eq(self.w_en), ctl.buf.eq(self.w_buf), ctl.col.eq(self.w_col)]
        we_row = []              # the enables of row 0: [column][buffer]
        for c in range(C):
            if c:
                nxt = Signal(ctl_layout, name=f"w_ctl_{c}")
                m.d.sync += nxt.eq(ctl)
                ctl = nxt
            col = []
            for b in range(2):
                we = Signal(name=f"w_we{b}_0_{c}")
                m.d.sync += we.eq(ctl.en & (ctl.buf == b) & (ctl.col == c))
                col.append(we)
            we_row.append(col)
        we_at = [[[None] * C for _ in range(R)] for _ in range(2)]
        for c in range(C):
            for b in range(2):
                we = we_row[c][b]
                for r in range(R):
                    if r:
                        nxt = Signal(name=f"w_we{b}_{r}_{c}")
                        m.d.sync += nxt.eq(we)
                        we = nxt
                    we_at[b][r][c] = we
        for r in range(R):
            d = self.w_data[r]
            for k in range(r + 1):      # r cycles of skew, then the enables' decode register
                reg = Signal(signed(8), name=f"w_skew{r}_{k}")
                m.d.sync += reg.eq(d)
                d = reg
            for c in range(C):
                if c:
                    reg = Signal(signed(8), name=f"w_d{r}_{c}")
                    m.d.sync += reg.eq(d)
                    d = reg
                for b in range(2):
                    with m.If(we_at[b][r][c]):
                        m.d.sync += w[b][r][c].eq(d)

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

        # Inputs travel right; each PE multiplies its input by its selected weight.
        operands = [[None] * C for _ in range(R)]
        for r in range(R):
            a_in, s_in = skew_a[r], skew_s[r]
            for c in range(C):
                weight = Signal(signed(8), name=f"pe_w_{r}_{c}")
                m.d.comb += weight.eq(Mux(s_in, w[1][r][c], w[0][r][c]))
                if self.mac.operand_register:
                    a_op = Signal(signed(8), name=f"pe_ra_{r}_{c}")
                    w_op = Signal(signed(8), name=f"pe_rw_{r}_{c}")
                    m.d.sync += [a_op.eq(a_in), w_op.eq(weight)]
                    operands[r][c] = (a_op, w_op)
                else:
                    operands[r][c] = (a_in, weight)
                a_reg = Signal(signed(8), name=f"pe_a_{r}_{c}")
                s_reg = Signal(1, name=f"pe_s_{r}_{c}")
                m.d.sync += [a_reg.eq(a_in), s_reg.eq(s_in)]
                a_in, s_in = a_reg, s_reg
        prod = self._products(m, operands)

        # Partial sums travel down (a product register delays every row alike).
        psum = [[None] * C for _ in range(R)]
        for r in range(R):
            for c in range(C):
                p_reg = Signal(signed(width[r]), name=f"pe_p_{r}_{c}")
                p_in = psum[r - 1][c] if r > 0 else 0
                m.d.sync += p_reg.eq(p_in + prod[r, c])
                psum[r][c] = p_reg

        # Output deskew: column c is delayed by cols-1-c more cycles.
        for c in range(C):
            p = psum[R - 1][c]
            for d in range(C - 1 - c):
                p_reg = Signal(signed(width[R - 1]), name=f"deskew_{c}_{d}")
                m.d.sync += p_reg.eq(p)
                p = p_reg
            m.d.comb += self.out[c].eq(p)

        # Validity travels alongside.
        v = self.a_valid
        for d in range(self.latency):
            v_reg = Signal(name=f"valid_{d}")
            m.d.sync += v_reg.eq(v)
            v = v_reg
        m.d.comb += self.out_valid.eq(v)
        return m
