"""The CSR map (defined once) and the AXI4-Lite register bank.

The map below is the single source for the RTL, the ``npu.json`` manifest, the
``npu.h`` C header and the Python driver. Registers are 32 bits; 64-bit counters
are two registers (``_LO`` at the lower address, then ``_HI``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature
from .isa import ErrorCode, Opcode

__all__ = ["Register", "REGISTERS", "REG", "COUNTERS", "CTRL_BITS", "STATUS_BITS", "NPU_ID",
           "NPU_VERSION", "CSRBank", "c_header", "join_counters"]

NPU_ID = 0x4E505531        # "NPU1"
NPU_VERSION = 0x00010000   # 1.0.0


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str   # "r", "rw", "w"
    doc: str


#: 64-bit performance counters, in address order from 0x040.
COUNTERS = [
    ("CYCLES", "cycles from START to DONE or ERROR"),
    ("ARRAY_BUSY", "cycles in which an activation row entered the array"),
    ("MACS", "MAC slots used: rows x cols per activation row"),
    ("DMA_RD_BYTES", "data bytes read by LOAD (padding excluded)"),
    ("DMA_WR_BYTES", "bytes written by STORE"),
    ("INSN_RD_BYTES", "bytes of instructions dispatched"),
    ("STALL_LOAD", "cycles the load queue waited for tokens"),
    ("STALL_COMPUTE", "cycles the compute queue waited for tokens"),
    ("STALL_STORE", "cycles the store queue waited for tokens"),
]

CTRL_BITS = {"START": 0, "SOFT_RESET": 1, "IRQ_ENABLE": 2}
STATUS_BITS = {"BUSY": 0, "DONE": 1, "ERROR": 2}

_BASE = [
    Register("ID", 0x000, "r", f"magic {NPU_ID:#010x} ('NPU1')"),
    Register("VERSION", 0x004, "r", "hardware version, major.minor.patch in bytes 2.1.0"),
    Register("CONFIG_HASH", 0x008, "r", "NPUConfig.hash of this instance"),
    Register("SHAPE", 0x00C, "r", "rows [7:0], cols [15:8], AXI bytes per beat [23:16]"),
    Register("CTRL", 0x010, "rw", "bit 0 START (write 1), bit 1 SOFT_RESET (write 1), "
                                  "bit 2 IRQ_ENABLE"),
    Register("STATUS", 0x014, "r", "bit 0 BUSY, bit 1 DONE, bit 2 ERROR"),
    Register("ERROR_CODE", 0x018, "r", "hw.isa.ErrorCode of the stop"),
    Register("ERROR_INDEX", 0x01C, "r", "index of the failing instruction"),
    Register("INSN_BASE", 0x020, "rw", "DRAM byte address of instruction 0 (16-byte aligned)"),
    Register("INSN_COUNT", 0x024, "rw", "instructions in the program"),
    Register("WINDOW_BASE", 0x028, "rw", "first DRAM byte the NPU may touch"),
    Register("WINDOW_LIMIT", 0x02C, "rw", "first DRAM byte past the window"),
    Register("LAYER", 0x030, "r", "last CONFIG layer id dispatched"),
]
_COUNTER_REGS = []
for _i, (_name, _doc) in enumerate(COUNTERS):
    _COUNTER_REGS.append(Register(f"{_name}_LO", 0x040 + 8 * _i, "r", _doc + " (low word)"))
    _COUNTER_REGS.append(Register(f"{_name}_HI", 0x044 + 8 * _i, "r", _doc + " (high word)"))
_INSN_REGS = [Register(f"INSNS_{op.name}", 0x0C0 + 4 * op.value, "r",
                       f"{op.name} instructions dispatched") for op in Opcode]

REGISTERS: list[Register] = _BASE + _COUNTER_REGS + _INSN_REGS
REG: dict[str, Register] = {r.name: r for r in REGISTERS}
CSR_ADDR_WIDTH = 12


def join_counters(regs: dict[str, int]) -> dict[str, int]:
    """Replace each counter's ``_LO``/``_HI`` register pair in ``regs`` by its 64-bit value."""
    for name, _ in COUNTERS:
        regs[name] = regs.pop(f"{name}_LO") | (regs.pop(f"{name}_HI") << 32)
    return regs


class CSRBank(wiring.Component):
    """AXI4-Lite slave over a flat register file.

    ``read_values[name]`` (inputs) are returned for readable registers; writes to
    ``rw`` registers update ``regs[name]`` (outputs); a write to CTRL pulses
    ``start`` / ``soft_reset`` for one cycle. Unknown addresses read 0 and
    ignore writes, answered OKAY (registers are sparse).
    """

    def __init__(self) -> None:
        ports = {"s_axil": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
                 "start": Out(1), "soft_reset": Out(1)}
        for r in REGISTERS:
            if r.access == "rw":
                ports[f"reg_{r.name.lower()}"] = Out(32)
            if "r" in r.access and r.access != "rw":
                ports[f"val_{r.name.lower()}"] = In(32)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil

        # Writes: take address and data together, answer on B.
        b_pending = Signal()
        m.d.comb += [
            bus.awready.eq(bus.awvalid & bus.wvalid & ~b_pending),
            bus.wready.eq(bus.awvalid & bus.wvalid & ~b_pending),
            bus.bvalid.eq(b_pending),
            bus.bresp.eq(0),
        ]
        m.d.sync += [self.start.eq(0), self.soft_reset.eq(0)]
        with m.If(bus.awready):
            m.d.sync += b_pending.eq(1)
            addr = bus.awaddr[2:]
            for r in REGISTERS:
                if r.access != "rw":
                    continue
                with m.If(addr == r.offset >> 2):
                    reg = getattr(self, f"reg_{r.name.lower()}")
                    if r.name == "CTRL":
                        m.d.sync += [
                            self.start.eq(bus.wdata[CTRL_BITS["START"]]),
                            self.soft_reset.eq(bus.wdata[CTRL_BITS["SOFT_RESET"]]),
                            reg.eq(bus.wdata & (1 << CTRL_BITS["IRQ_ENABLE"])),
                        ]
                    else:
                        m.d.sync += reg.eq(bus.wdata)
        with m.If(b_pending & bus.bready):
            m.d.sync += b_pending.eq(0)

        # Reads.
        r_pending = Signal()
        m.d.comb += [
            bus.arready.eq(~r_pending),
            bus.rvalid.eq(r_pending),
            bus.rresp.eq(0),
        ]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [r_pending.eq(1), bus.rdata.eq(0)]
            addr = bus.araddr[2:]
            for r in REGISTERS:
                src = getattr(self, f"reg_{r.name.lower()}") if r.access == "rw" else \
                    getattr(self, f"val_{r.name.lower()}")
                with m.If(addr == r.offset >> 2):
                    m.d.sync += bus.rdata.eq(src)
        with m.If(r_pending & bus.rready):
            m.d.sync += r_pending.eq(0)
        return m


def c_header(config_hash: int, macro_prefix: str = "NPU") -> str:
    """The register map as a C header for drivers."""
    lines = [
        "/* Generated by python -m hw.build from hw/csr.py; do not edit. */",
        f"#ifndef {macro_prefix}_REGS_H",
        f"#define {macro_prefix}_REGS_H",
        "",
        f"#define {macro_prefix}_ID_VALUE 0x{NPU_ID:08x}u",
        f"#define {macro_prefix}_VERSION_VALUE 0x{NPU_VERSION:08x}u",
        f"#define {macro_prefix}_CONFIG_HASH_VALUE 0x{config_hash:08x}u",
        "",
    ]
    for r in REGISTERS:
        lines.append(f"#define {macro_prefix}_REG_{r.name:<20} 0x{r.offset:03x}u  /* {r.access}: {r.doc} */")
    lines.append("")
    for name, bit in CTRL_BITS.items():
        lines.append(f"#define {macro_prefix}_CTRL_{name:<12} (1u << {bit})")
    for name, bit in STATUS_BITS.items():
        lines.append(f"#define {macro_prefix}_STATUS_{name:<10} (1u << {bit})")
    lines.append("")
    for code in ErrorCode:
        lines.append(f"#define {macro_prefix}_ERROR_{code.name:<16} {code.value}u")
    lines += ["", f"#endif /* {macro_prefix}_REGS_H */", ""]
    return "\n".join(lines)
