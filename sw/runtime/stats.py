"""Typed statistics, derived from the one counter schema (:data:`hw.csr.COUNTERS`).

:class:`Counters` has one field per hardware counter, named by :func:`stat_key`
(``MACS`` is ``macs``, ``DMA_RD_BYTES`` is ``dram_read_bytes``, a counter added to
the schema later gets its name in lower case). Every backend fills the same
fields; one that does not measure a figure leaves it ``None`` (shown as ``-``).
"""

from __future__ import annotations

import dataclasses

from hw.csr import COUNTERS

__all__ = ["Counters", "stat_key", "COUNTER_KEYS", "LAYER_KEYS"]

# The names users already read in ``device.stats``; other counters: their name in lower case.
_KEYS = {
    "CYCLES": "cycles",
    "ARRAY_BUSY": "array_busy_cycles",
    "MACS": "macs",
    "DMA_RD_BYTES": "dram_read_bytes",
    "DMA_WR_BYTES": "dram_write_bytes",
    "INSN_RD_BYTES": "insn_read_bytes",
    "STALL_LOAD": "stall_load_cycles",
    "STALL_COMPUTE": "stall_compute_cycles",
    "STALL_STORE": "stall_store_cycles",
}


def stat_key(counter: str) -> str:
    """The statistics key of the hardware counter named ``counter``."""
    return _KEYS.get(counter, counter.lower())


#: Statistics key of each counter, in the schema's order.
COUNTER_KEYS: dict[str, str] = {name: stat_key(name) for name, _ in COUNTERS}

#: The keys of each entry of ``stats["layers"]``, on every backend. ``macs`` is the
#: model's real MACs, ``mac_slots`` the array's (what the layer's tiles occupy, as the
#: MACS counter adds them); ``utilization`` is real MACs per cycle over the array's,
#: ``slot_utilization`` the same for MAC slots.
LAYER_KEYS = ("id", "name", "op", "macs", "mac_slots", "dram_read_bytes", "dram_write_bytes",
              "insns", "cycles", "utilization", "slot_utilization")


def _from_registers(cls, registers: dict[str, int]) -> "Counters":
    """The counters of a run from its registers (counters joined, as hw.driver reads them)."""
    return cls(**{key: registers[name] for name, key in COUNTER_KEYS.items()})


def _add(self, other: "Counters") -> "Counters":
    # A figure one of the two does not measure is not measured in the sum either.
    return type(self)(**{
        f.name: None if getattr(self, f.name) is None or getattr(other, f.name) is None
        else getattr(self, f.name) + getattr(other, f.name)
        for f in dataclasses.fields(self)})


def _as_dict(self) -> dict[str, int | None]:
    return dataclasses.asdict(self)


Counters = dataclasses.make_dataclass(
    "Counters",
    [(key, int | None, dataclasses.field(default=None, metadata={"counter": name, "doc": doc}))
     for (name, doc), key in zip(COUNTERS, COUNTER_KEYS.values())],
    namespace={"from_registers": classmethod(_from_registers), "__add__": _add,
               "as_dict": _as_dict},
    frozen=True)
Counters.__module__ = __name__
Counters.__doc__ = ("What one or more runs did, one field per hardware counter "
                    "(hw.csr.COUNTERS); None where the backend does not measure it.")
