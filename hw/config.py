"""The one parameter description of an NPU instance.

Hardware generators, the compiler, the functional model and the driver all take
an :class:`NPUConfig`. It is frozen and keyword-only; every field is validated
when it is built, with a message naming the field, the value and what is allowed.
Its :attr:`~NPUConfig.hash` (32 bits) is readable from the NPU's ID registers, so
the driver can refuse a program compiled for another configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .isa import FIELD_MAX, LUT_ENTRIES, PARAM_GROUP_ROWS, Opcode, table_rows

__all__ = ["NPUConfig", "ConfigError", "PRESETS", "require_config"]


class ConfigError(ValueError):
    """An :class:`NPUConfig` field, or a combination of fields, is invalid."""


# Address fields of the ISA are fixed width (see hw/isa.py); depths must fit them: every
# scratchpad and accumulator row is addressable by LOAD.sram, and every parameter group by
# STORE.param.
_ADDR_LIMIT = 1 + min(FIELD_MAX[Opcode.LOAD]["sram"], FIELD_MAX[Opcode.GEMM]["inp"],
                      FIELD_MAX[Opcode.GEMM]["acc"], FIELD_MAX[Opcode.STORE]["acc"],
                      FIELD_MAX[Opcode.ALU]["dst"])
_PARAM_ADDR_LIMIT = PARAM_GROUP_ROWS * (FIELD_MAX[Opcode.STORE]["param"] + 1)


def _is_pow2(value: int) -> bool:
    return value > 0 and (value & (value - 1)) == 0


@dataclass(frozen=True, kw_only=True)
class NPUConfig:
    """Parameters of one NPU instance.

    Parameters
    ----------
    rows:
        Rows of the systolic array: the reduction (K) dimension of one GEMM tile,
        and the width in int8 elements of a scratchpad row.
    cols:
        Columns of the systolic array: output channels (N) of one GEMM tile, and
        the width in int32 elements of an accumulator row.
    operand_width:
        Bits of an activation or weight operand. The ISA defines int8 (8).
    acc_width:
        Bits of an accumulator element. The ISA defines int32 (32).
    spad_depth, spad_banks:
        Scratchpad rows, and the banks they are split into so that DMA writes and
        array reads go to different banks in the same cycle.
    acc_depth, acc_banks:
        Accumulator rows and banks.
    param_depth:
        Rows of the parameter memory (bias, multiplier, shift; three rows per
        group of ``cols`` output channels).
    dma_data_width:
        Data width in bits of the AXI4 master.
    dma_burst_len:
        Longest AXI4 INCR burst, in beats.
    insn_queue_depth:
        Depth of each of the load, compute and store instruction queues.
    token_queue_depth:
        Capacity of each of the four dependency-token queues.
    table_write_bytes:
        Where the store path keeps a STORE's activation table (``lut``), and how fast it
        loads it. 0 (the default): in registers, a parameter row per cycle (``table_rows``
        cycles), one 256-to-1 multiplexer per lane. A power of two N that divides
        ``4 * cols`` (a parameter row's bytes): in block RAM, one memory per lane (256 entries, N per word), written
        N entries per cycle (``256 / N`` cycles), read through one synchronous port per
        lane: the small FPGAs' option (on the iCE40UP5K the registers alone are 2,048 of
        its 5,280 cells).

    alu_mul_bits:
        How the vector ALU multiplies (``MUL``, ``MULH``). 0 (the default): a 32 x 32
        multiplier per lane, a row a cycle. 1, 2, 4, 8 or 16: sequentially, that many bits
        of the source a cycle, on an adder per lane (``32 / alu_mul_bits`` cycles a row):
        the option for FPGAs whose few DSPs the array and the requantizer need (a 32 x 32
        product takes 4 of the iCE40UP5K's 8).

    requant_lanes:
        Lanes of the store path's requantizer (each a 32 x 32 product: 4 of the
        iCE40UP5K's 8 DSPs). 0 (the default): ``cols``, a row a cycle. A divisor L of
        ``cols``: each row in ``cols / L`` passes, a cycle each.

    Fields added after the first release (``table_write_bytes``, ``alu_mul_bits``,
    ``requant_lanes``) are left out of the
    canonical form, and so of the hash, while at their default: every configuration
    that existed before keeps its hash.
    """

    rows: int = 16
    cols: int = 16
    operand_width: int = 8
    acc_width: int = 32
    spad_depth: int = 4096
    spad_banks: int = 2
    acc_depth: int = 1024
    acc_banks: int = 2
    param_depth: int = 192
    dma_data_width: int = 128
    dma_burst_len: int = 16
    insn_queue_depth: int = 8
    token_queue_depth: int = 8
    table_write_bytes: int = field(default=0, metadata={"omit_default": True})
    alu_mul_bits: int = field(default=0, metadata={"omit_default": True})
    requant_lanes: int = field(default=0, metadata={"omit_default": True})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(
                    f"NPUConfig.{f.name} must be an int, not {type(value).__name__} {value!r}")
        self._check_range("rows", 2, 64)
        self._check_range("cols", 2, 64)
        if self.operand_width != 8:
            raise ConfigError(
                f"NPUConfig.operand_width is {self.operand_width}; the ISA defines int8 operands, "
                f"so only 8 is allowed")
        if self.acc_width != 32:
            raise ConfigError(
                f"NPUConfig.acc_width is {self.acc_width}; the ISA defines int32 accumulation, "
                f"so only 32 is allowed")
        self._check_pow2_range("spad_banks", 1, 8)
        self._check_pow2_range("acc_banks", 1, 8)
        self._check_range("spad_depth", 16, _ADDR_LIMIT)
        self._check_range("acc_depth", 16, _ADDR_LIMIT)
        self._check_range("param_depth", 3, _PARAM_ADDR_LIMIT)
        for name, banks in (("spad_depth", "spad_banks"), ("acc_depth", "acc_banks")):
            depth, nbanks = getattr(self, name), getattr(self, banks)
            if depth % nbanks:
                raise ConfigError(
                    f"NPUConfig.{name} is {depth}, which {banks}={nbanks} does not divide; "
                    f"it must be a multiple of {banks}")
        if self.param_depth % PARAM_GROUP_ROWS:
            raise ConfigError(
                f"NPUConfig.param_depth is {self.param_depth}; it must be a multiple of "
                f"{PARAM_GROUP_ROWS} "
                f"(bias, multiplier and shift rows of each channel group)")
        if self.dma_data_width not in (32, 64, 128, 256, 512):
            raise ConfigError(
                f"NPUConfig.dma_data_width is {self.dma_data_width}; allowed: 32, 64, 128, 256, 512")
        if self.dma_data_width // 8 < 4:
            raise ConfigError("NPUConfig.dma_data_width must carry at least one int32")
        self._check_pow2_range("dma_burst_len", 1, 256)
        self._check_pow2_range("insn_queue_depth", 2, 256)
        self._check_range("token_queue_depth", 1, 255)
        if self.table_write_bytes and not (_is_pow2(self.table_write_bytes)
                                           and (4 * self.cols) % self.table_write_bytes == 0):
            # Each parameter row (4 * cols bytes) is written in whole words.
            raise ConfigError(
                f"NPUConfig.table_write_bytes is {self.table_write_bytes}; allowed: 0 (the "
                f"activation table in registers) or a power of two that divides 4 * cols "
                f"= {4 * self.cols}")

        if self.alu_mul_bits not in (0, 1, 2, 4, 8, 16):
            raise ConfigError(
                f"NPUConfig.alu_mul_bits is {self.alu_mul_bits}; allowed: 0 (a 32 x 32 "
                f"multiplier per lane) or 1, 2, 4, 8, 16 (bits of the source a cycle)")
        if self.requant_lanes and (self.requant_lanes < 0 or self.cols % self.requant_lanes):
            raise ConfigError(
                f"NPUConfig.requant_lanes is {self.requant_lanes}; allowed: 0 (cols) or a "
                f"divisor of cols = {self.cols}")

    def _check_range(self, name: str, lo: int, hi: int) -> None:
        value = getattr(self, name)
        if not lo <= value <= hi:
            raise ConfigError(f"NPUConfig.{name} is {value}; allowed: {lo} to {hi}")

    def _check_pow2_range(self, name: str, lo: int, hi: int) -> None:
        value = getattr(self, name)
        if not (_is_pow2(value) and lo <= value <= hi):
            raise ConfigError(
                f"NPUConfig.{name} is {value}; allowed: a power of two from {lo} to {hi}")

    # Derived parameters ---------------------------------------------------------------

    @property
    def dma_bytes(self) -> int:
        """Bytes per AXI4 data beat."""
        return self.dma_data_width // 8

    @property
    def param_groups(self) -> int:
        return self.param_depth // PARAM_GROUP_ROWS

    @property
    def table_load_cycles(self) -> int:
        """Cycles a STORE with ``lut`` spends loading its activation table, after its
        parameter group (the performance model's figure)."""
        if self.table_write_bytes:
            return LUT_ENTRIES // self.table_write_bytes
        return table_rows(self.cols)

    @property
    def alu_mul_cycles(self) -> int:
        """Cycles the vector ALU spends on a row of ``MUL`` or ``MULH`` (1 with the
        default multiplier; the performance model's figure)."""
        return 32 // self.alu_mul_bits if self.alu_mul_bits else 1

    @property
    def requant_passes(self) -> int:
        """Cycles the store path's requantizer takes a row (1 with the default lanes)."""
        return self.cols // self.requant_lanes if self.requant_lanes else 1

    @property
    def macs(self) -> int:
        """Multiply-accumulate units in the array."""
        return self.rows * self.cols

    # Canonical form, hash, JSON ----------------------------------------------------------

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def canonical(self) -> str:
        """The canonical text form: JSON, keys sorted, no spaces. The hash is of this.

        Fields marked ``omit_default`` (those added later) are left out at their default,
        so that adding them changed no existing configuration's hash."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if not (f.metadata.get("omit_default") and getattr(self, f.name) == f.default)}
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> int:
        """A stable 32-bit hash of the canonical form (first 4 bytes of its SHA-256)."""
        digest = hashlib.sha256(self.canonical().encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NPUConfig":
        """Build from a mapping; unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"an NPUConfig is described by a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown NPUConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "NPUConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"NPUConfig JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def preset(cls, name: str, **overrides: int) -> "NPUConfig":
        """A named preset (``tiny``, ``small``, ``default``, ``large``), with overrides."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None
        return dataclasses.replace(base, **overrides)

    def replace(self, **changes: int) -> "NPUConfig":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (f"{self.rows}x{self.cols} array, spad {self.spad_depth}x{self.rows} B, "
                f"acc {self.acc_depth}x{self.cols} int32, AXI {self.dma_data_width} bit, "
                f"hash {self.hash:08x}")


PRESETS: dict[str, NPUConfig] = {
    "tiny": NPUConfig(rows=4, cols=4, spad_depth=256, acc_depth=128, param_depth=96,
                      dma_data_width=32, dma_burst_len=8, insn_queue_depth=4,
                      token_queue_depth=4),
    "small": NPUConfig(rows=8, cols=8, spad_depth=1024, acc_depth=256, param_depth=48,
                       dma_data_width=64),
    "default": NPUConfig(),
    "large": NPUConfig(rows=32, cols=32, spad_depth=8192, acc_depth=2048, param_depth=384,
                       dma_data_width=256),
}


def require_config(config: object) -> NPUConfig:
    """``config`` itself when it is an :class:`NPUConfig`; :class:`TypeError` otherwise (what
    every generator, model and device that takes one says)."""
    if not isinstance(config, NPUConfig):
        raise TypeError(f"config must be an NPUConfig, not {type(config).__name__}")
    return config
