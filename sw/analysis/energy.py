"""Energy from a per-operation table: MACs, vector and store-path lanes, SRAM, DRAM.

The default table is Horowitz's 45 nm figures (ISSCC 2014), kept with its
citation in ``data/energy_horowitz_45nm.json``; users give their own file of the
same form (``EnergyTable.load(path)``). An int8 MAC costs an 8-bit multiply and a
32-bit add; an ALU lane a 32-bit add; a requantization lane a 32-bit multiply
and a 32-bit add. An SRAM access of ``w`` bits to a bank of ``s`` bytes costs
``sram_64b(s) * w / 64``, where ``sram_64b`` is the power law through the
table's published sizes; a DRAM byte costs an eighth of a 64-bit DRAM access.
MACs are priced per MAC slot: a slot that a tile occupies with padding still
switches the multiplier and the adder.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

from hw.config import NPUConfig

from .traffic import MEMORIES, Traffic

__all__ = ["EnergyTable", "Energy", "estimate", "memory_bank_bytes", "DEFAULT_TABLE"]

DEFAULT_TABLE = pathlib.Path(__file__).resolve().parent / "data" / "energy_horowitz_45nm.json"
_OPS = ("int8_mult", "int32_add", "int32_mult")


@dataclass(frozen=True)
class EnergyTable:
    """Energies in pJ per operation, per 64-bit SRAM access by size, per 64-bit DRAM access."""
    name: str
    pj: dict[str, float]
    sram_64b_pj: dict[int, float]
    sram_exponent: float
    dram_64b_pj: float
    source: str = ""

    @classmethod
    def load(cls, path: str | pathlib.Path = DEFAULT_TABLE) -> "EnergyTable":
        """Read a table file; a clear :class:`ValueError` names what is missing or wrong."""
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"energy table {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"energy table {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"energy table {path}: expected a JSON object")
        missing = [k for k in ("pj", "sram_64b_pj", "sram_exponent", "dram_64b_pj") if k not in raw]
        if missing:
            raise ValueError(f"energy table {path}: missing {', '.join(missing)}")
        pj = raw["pj"]
        lacking = [op for op in _OPS if op not in pj]
        if lacking:
            raise ValueError(f"energy table {path}: 'pj' lacks {', '.join(lacking)}")
        try:
            sram = {int(k): float(v) for k, v in raw["sram_64b_pj"].items()}
            table = cls(name=str(raw.get("name", path.stem)),
                        pj={k: float(v) for k, v in pj.items()}, sram_64b_pj=sram,
                        sram_exponent=float(raw["sram_exponent"]),
                        dram_64b_pj=float(raw["dram_64b_pj"]), source=str(raw.get("source", "")))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"energy table {path}: {exc}") from None
        values = [*table.pj.values(), *table.sram_64b_pj.values(), table.dram_64b_pj]
        if not sram or any(not v > 0 for v in values) or min(sram) <= 0:
            raise ValueError(f"energy table {path}: energies and sizes must be positive")
        return table

    def sram_64b(self, bank_bytes: int) -> float:
        """pJ of a 64-bit access to an SRAM of ``bank_bytes``: the power law through the
        table's smallest published size."""
        size, pj = min(self.sram_64b_pj.items())
        return pj * (bank_bytes / size) ** self.sram_exponent

    @property
    def mac_pj(self) -> float:
        return self.pj["int8_mult"] + self.pj["int32_add"]


@dataclass
class Energy:
    """An energy breakdown in pJ."""
    mac: float = 0.0
    alu: float = 0.0
    requant: float = 0.0
    sram: dict[str, float] = field(default_factory=lambda: {m: 0.0 for m in MEMORIES})
    dram: float = 0.0

    @property
    def total(self) -> float:
        return self.mac + self.alu + self.requant + sum(self.sram.values()) + self.dram

    def as_dict(self) -> dict[str, float]:
        d = {"mac": self.mac, "alu": self.alu, "requant": self.requant}
        d.update({f"sram_{m}": v for m, v in self.sram.items()})
        d.update(dram=self.dram, total=self.total)
        return d


def memory_bank_bytes(config: NPUConfig) -> dict[str, int]:
    """Bytes of one bank of each on-chip memory (what one access activates)."""
    return {
        "spad": config.spad_depth * config.rows // config.spad_banks,
        "acc": config.acc_depth * config.cols * 4 // config.acc_banks,
        "param": config.param_depth * config.cols * 4,
    }


def estimate(traffic: Traffic, config: NPUConfig, table: EnergyTable | None = None) -> Energy:
    """Price ``traffic`` (from :func:`sw.analysis.traffic.count_traffic`) with ``table``."""
    table = table or EnergyTable.load()
    pj = table.pj
    banks = memory_bank_bytes(config)
    sram = {}
    for name in MEMORIES:
        mem = traffic.memories[name]
        sram[name] = (mem.read_bits + mem.write_bits) / 64 * table.sram_64b(banks[name])
    dram_bytes = traffic.dram_read_bytes + traffic.dram_write_bytes + traffic.insn_bytes
    return Energy(
        mac=traffic.mac_slots * table.mac_pj,
        alu=traffic.alu_lanes * pj["int32_add"],
        requant=traffic.requant_lanes * (pj["int32_mult"] + pj["int32_add"]),
        sram=sram,
        dram=dram_bytes / 8 * table.dram_64b_pj)
