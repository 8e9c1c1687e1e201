"""What a program does to each memory, counted from its instruction words.

Every address and size the NPU touches is in its instructions, so one static
pass over a program gives, per layer (the ``CONFIG key=layer`` value in force
when an instruction is dispatched, as the functional model and the hardware
attribute their counters), the rows and bits read and written in the
scratchpad, the accumulator and the parameter memory, the DRAM bytes of LOADs
and STOREs, the array's MAC slots, and the vector and requantization lane
operations. The energy model (:mod:`sw.analysis.energy`) prices them.

MAC slots and DRAM bytes are the functional model's own
(:func:`sim.functional.instruction_cost`, what the hardware counters add). Per
instruction (``R``, ``C``: the array's rows and columns):

* LOAD into memory M: ``(pad_top + y_size + pad_bottom) * (pad_left + x_size +
  pad_right)`` rows of M written (padding rows too); ``y_size * x_size * length``
  elements read from DRAM.
* GEMM: ``C`` scratchpad rows read for the weights (unless ``keep_wgt``), ``m``
  for the activations; ``m`` accumulator rows written, and read first when
  ``accumulate``; ``m * R * C`` MAC slots.
* STORE: ``rows`` accumulator rows and one parameter group read; ``rows * C``
  requantization lanes; ``rows * length`` bytes written to DRAM.
* ALU: ``count`` destination rows read and written, ``count`` source rows read
  unless ``use_imm``; ``count * C`` lane operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable

from hw import isa
from hw.config import NPUConfig, require_config
from hw.isa import CfgKey, Instruction, Mem, Opcode
from sim.functional import instruction_cost

__all__ = ["MemoryTraffic", "Traffic", "count_traffic", "count_instruction", "MEMORIES"]

#: The on-chip memories, by the names the counts use.
MEMORIES = ("spad", "acc", "param")


@dataclass
class MemoryTraffic:
    """Rows and bits read and written in one memory."""
    read_rows: int = 0
    write_rows: int = 0
    read_bits: int = 0
    write_bits: int = 0

    def add(self, other: "MemoryTraffic") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Traffic:
    """Everything one layer (or a whole program) asks of the NPU."""
    mac_slots: int = 0
    alu_lanes: int = 0            #: 32-bit vector ALU lane operations
    requant_lanes: int = 0        #: store-path requantizations (a 32x32 multiply each)
    dram_read_bytes: int = 0      #: data bytes LOADs read (padding excluded)
    dram_write_bytes: int = 0     #: bytes STOREs write
    insn_bytes: int = 0           #: instruction bytes fetched
    instructions: int = 0
    memories: dict[str, MemoryTraffic] = field(
        default_factory=lambda: {m: MemoryTraffic() for m in MEMORIES})

    def add(self, other: "Traffic") -> None:
        for f in fields(self):
            if f.name != "memories":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for name, mem in other.memories.items():
            self.memories[name].add(mem)


_MEM_NAME = {Mem.SPAD: "spad", Mem.ACC: "acc", Mem.PARAM: "param"}


def count_traffic(words: Iterable[int], config: NPUConfig) -> tuple[Traffic, dict[int, Traffic]]:
    """Count a program's traffic, in total and per layer.

    ``words`` are its instruction words in order (``Program.words``: all its NPU
    segments, each ending in FINISH, when it has host operators). Raises :class:`hw.isa.ISAError` for a word that
    does not decode.
    """
    require_config(config)
    per_layer: dict[int, Traffic] = {}
    layer = 0
    for word in words:
        insn = isa.decode(word)
        if insn.opcode is Opcode.CONFIG and insn.key is CfgKey.LAYER:
            layer = insn.value
        t = per_layer.get(layer)
        if t is None:
            t = per_layer[layer] = Traffic()
        count_instruction(t, insn, config)
    total = Traffic()
    for t in per_layer.values():
        total.add(t)
    return total, per_layer


def count_instruction(t: Traffic, insn: Instruction, config: NPUConfig) -> None:
    """Add what one decoded instruction ``insn`` does (the rules above) to ``t``."""
    C = config.cols
    row_bits = {"spad": 8 * config.rows, "acc": 32 * C, "param": 32 * C}

    def read(mem: str, rows: int) -> None:
        t.memories[mem].read_rows += rows
        t.memories[mem].read_bits += rows * row_bits[mem]

    def write(mem: str, rows: int) -> None:
        t.memories[mem].write_rows += rows
        t.memories[mem].write_bits += rows * row_bits[mem]

    op = insn.opcode
    t.instructions += 1
    t.insn_bytes += isa.INSN_BYTES
    macs, dram_read, dram_write = instruction_cost(insn, config)
    t.mac_slots += macs
    t.dram_read_bytes += dram_read
    t.dram_write_bytes += dram_write
    if op is Opcode.LOAD:
        ny, nx = isa.load_grid(insn)
        write(_MEM_NAME[insn.mem], ny * nx)
    elif op is Opcode.GEMM:
        read("spad", insn.m + (0 if insn.keep_wgt else C))
        if insn.accumulate:
            read("acc", insn.m)
        write("acc", insn.m)
    elif op is Opcode.STORE:
        read("acc", insn.rows)
        read("param", isa.PARAM_GROUP_ROWS + (isa.table_rows(C) if insn.lut else 0))
        t.requant_lanes += insn.rows * C
    elif op is Opcode.ALU:
        read("acc", insn.count * (1 if insn.use_imm else 2))
        write("acc", insn.count)
        t.alu_lanes += insn.count * C
