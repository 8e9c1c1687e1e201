"""Clocks for the SoC: an ECP5 PLL when the design cannot run at the board's oscillator.

:func:`ecp5_pll_params` chooses the ``EHXPLLL`` dividers as Trellis' ``ecppll`` does
(input divider, feedback divider through CLKOP, output divider; the phase-frequency
detector at 3.125 to 400 MHz, the VCO at 400 to 800 MHz) for the output closest to the
one asked for, with the VCO nearest the middle of its range. :class:`PLLTop` wraps a design: its ``sync`` domain runs from the PLL's
output and is held in reset until the PLL locks.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io

__all__ = ["ecp5_pll_params", "PLLTop"]

_PFD = (3.125, 400.0)
_VCO = (400.0, 800.0)


def ecp5_pll_params(in_mhz: float, out_mhz: float) -> dict[str, int | float]:
    """``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "out_mhz", "vco_mhz"}`` for
    an ECP5 PLL from ``in_mhz`` to as near ``out_mhz`` as the dividers allow (ValueError if
    nothing is within 1 %)."""
    if not (8 <= in_mhz <= 400 and 3.125 <= out_mhz <= 400):
        raise ValueError(f"an ECP5 PLL takes 8 to 400 MHz in and gives 3.125 to 400 MHz out, "
                         f"not {in_mhz} -> {out_mhz} MHz")
    best = None
    for ref in range(1, 129):
        pfd = in_mhz / ref
        if not _PFD[0] <= pfd <= _PFD[1]:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            if out > 400:
                break
            ops = [op for op in range(1, 129) if _VCO[0] <= out * op <= _VCO[1]]
            if not ops:
                continue
            op = min(ops, key=lambda d: abs(out * d - 600))   # the VCO mid-range
            key = (round(abs(out - out_mhz), 9), abs(out * op - 600))
            if best is None or key < best[0]:
                best = (key, ref, fb, op, out, out * op)
    if best is None or best[0][0] > 0.01 * out_mhz:
        raise ValueError(f"no ECP5 PLL setting makes {out_mhz} MHz from {in_mhz} MHz")
    _, ref, fb, op, out, vco = best
    return {"CLKI_DIV": ref, "CLKFB_DIV": fb, "CLKOP_DIV": op, "CLKOP_CPHASE": (op - 1) // 2,
            "out_mhz": out, "vco_mhz": vco}


class PLLTop(Elaboratable):
    """``design`` with its ``sync`` domain on an ECP5 PLL from the platform's default clock,
    set by ``params`` (from :func:`ecp5_pll_params`: build the design for its ``out_mhz``).
    """

    def __init__(self, design, params: dict) -> None:
        self.design = design
        self.params = params
        self.clk_hz = params["out_mhz"] * 1e6

    def elaborate(self, platform):
        m = Module()
        clk_in = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_in = buf = io.Buffer("i", clk_in)
        pll_out, locked = Signal(), Signal()
        p = self.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p["CLKFB_DIV"],
            a_FREQUENCY_PIN_CLKI=f"{platform.default_clk_frequency / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p['out_mhz']:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            i_RST=0, i_STDBY=0, i_CLKI=buf.i, o_CLKOP=pll_out, i_CLKFB=pll_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(pll_out), ResetSignal("sync").eq(~locked)]
        platform.add_clock_constraint(pll_out, self.clk_hz)
        m.submodules.design = self.design
        return m
