"""The NPU instruction set, defined once.

Every instruction is 128 bits. Its formats are the ``amaranth.lib.data`` layouts
and ``amaranth.lib.enum`` enums below; the RTL decoder views instruction words
through them, and the Python encoder and decoder, the assembler, the
disassembler, the functional model and ``docs/isa.md`` are all derived from the
same objects, so they cannot disagree.

Dependency tokens follow VTA: the load, compute and store queues each run in
order; ``pop_*`` waits for (and takes) a token from a neighbouring queue before
the instruction runs, ``push_*`` gives one after it completes. For the load
queue "next" is compute; for compute "prev" is load and "next" is store; for
store "prev" is compute.

Run ``python -m hw.isa`` to print the ISA document.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any, Iterable, Iterator

from amaranth.hdl import Shape
from amaranth.lib import data, enum

__all__ = [
    "INSN_BITS", "INSN_BYTES", "DEP_FLAGS", "FIELD_MAX", "field_max", "field_bits",
    "PARAM_ROWS", "PARAM_GROUP_ROWS", "PARAM_ELEM_BYTES", "DRAM_ELEM_BYTES", "row_elements",
    "LUT_ENTRIES", "table_rows",
    "load_grid", "load_extent", "store_extent", "words_to_bytes", "bytes_to_words", "encode_bytes",
    "Opcode", "Mem", "AluOp", "Queue", "CfgKey", "ErrorCode", "TokenQueue",
    "HEADER", "LAYOUTS", "INSTRUCTION", "FIELD_DOCS", "Instruction", "ISAError",
    "encode", "decode", "queue_of", "allowed_deps", "TOKEN_POPS", "TOKEN_PUSHES", "fields_of", "isa_markdown",
    "load", "store", "gemm", "alu", "config", "sync", "finish",
]

INSN_BITS = 128
#: Bytes of one instruction in DRAM (little-endian words, one after the other).
INSN_BYTES = INSN_BITS // 8
#: The dependency flags of the header, in field order.
DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


class _IdentityHash:
    """Hash enum members by identity (each is one object, compared by identity): the
    ``Enum`` default hashes the member's name in Python, which the functional model and
    the compiler paid for on every one of 100 000s of lookups keyed by a member."""
    __hash__ = object.__hash__


class Opcode(_IdentityHash, enum.Enum, shape=3):
    """Instruction class."""
    LOAD = 0
    STORE = 1
    GEMM = 2
    ALU = 3
    CONFIG = 4
    SYNC = 5
    FINISH = 6


class Mem(_IdentityHash, enum.Enum, shape=2):
    """Target memory of a LOAD."""
    SPAD = 0   #: scratchpad: int8 elements, rows of ``rows`` elements
    ACC = 1    #: accumulator: int8 elements from DRAM, sign-extended to int32, rows of ``cols``
    PARAM = 2  #: parameter memory: int32 elements, rows of ``cols``


class AluOp(_IdentityHash, enum.Enum, shape=4):
    """Operation of an ALU instruction on int32 accumulator rows: element-wise, except the
    reductions RSUM and RMAX, which combine the source row's lanes and write the result to
    every lane (what softmax and LayerNorm need, I-BERT style: docs/numerics.md)."""
    MOV = 0    #: d = s
    ADD = 1    #: d = d + s (wraps)
    SUB = 2    #: d = d - s (wraps)
    MUL = 3    #: d = low 32 bits of d * s
    MAX = 4    #: d = max(d, s)
    MIN = 5    #: d = min(d, s)
    SHR = 6    #: d = d >> (s & 31), arithmetic (rounds toward minus infinity)
    SHL = 7    #: d = d << (s & 31) (wraps)
    RSUM = 8   #: d = the sum of the row's lanes of s, in every lane (wraps)
    RMAX = 9   #: d = the largest of the row's lanes of s, in every lane
    CLZ = 10   #: d = leading zero bits of s as a 32-bit word (32 for 0)
    MULH = 11  #: d = high 32 bits of the signed 64-bit product d * s
    RSHR = 12  #: d = d >> (s & 31), arithmetic, rounding half up (bit (s & 31) - 1 added)


class Queue(_IdentityHash, enum.Enum, shape=2):
    """An instruction queue."""
    LOAD = 0
    COMPUTE = 1
    STORE = 2


class CfgKey(_IdentityHash, enum.Enum, shape=4):
    """Register written by CONFIG."""
    LAYER = 0  #: current layer id, for per-layer performance accounting


class ErrorCode(_IdentityHash, enum.Enum, shape=4):
    """Why the NPU stopped in the error state (read from the ERROR CSR)."""
    NONE = 0
    ILLEGAL_OPCODE = 1   #: opcode not in :class:`Opcode`, or an enum field with no member
    FIELD_RANGE = 2      #: a field out of its allowed range for this configuration
    DMA_WINDOW = 3       #: a DRAM access (instruction fetch included) outside the DMA window
    DEADLOCK = 4         #: every queue waits for a token that nothing can give
    BUS_ERROR = 5        #: the memory answered a DMA access with an error response


class TokenQueue(_IdentityHash, enum.Enum, shape=2):
    """The four dependency-token queues, named producer to consumer."""
    L2C = 0
    C2L = 1
    C2S = 2
    S2C = 3


#: The rows of one parameter group, in order: a STORE with ``param=g`` reads parameter rows
#: ``PARAM_GROUP_ROWS*g + i`` for ``i, name in enumerate(PARAM_ROWS)``.
PARAM_ROWS = ("bias", "mult", "shift")
PARAM_GROUP_ROWS = len(PARAM_ROWS)
#: Bytes of one parameter element in DRAM (int32, little-endian).
PARAM_ELEM_BYTES = 4
#: Bytes per element a LOAD reads from DRAM, by target memory.
DRAM_ELEM_BYTES: dict[Mem, int] = {Mem.SPAD: 1, Mem.ACC: 1, Mem.PARAM: PARAM_ELEM_BYTES}


#: Entries of an activation table (one per int8 input value, -128 first).
LUT_ENTRIES = 256


def table_rows(cols: int) -> int:
    """Parameter rows holding an activation table (four int8 entries per int32 element):
    a STORE with ``lut=1`` and ``param=g`` reads them after its group, rows
    ``PARAM_GROUP_ROWS*g + PARAM_GROUP_ROWS + i``."""
    return -(-LUT_ENTRIES // (PARAM_ELEM_BYTES * cols))


def row_elements(mem: Mem, rows: int, cols: int) -> int:
    """Elements in one row of memory ``mem`` of a ``rows`` x ``cols`` array."""
    return rows if mem is Mem.SPAD else cols


HEADER = data.StructLayout({
    "opcode": Opcode,
    "pop_prev": 1,
    "pop_next": 1,
    "push_prev": 1,
    "push_next": 1,
})

LAYOUTS: dict[Opcode, data.StructLayout] = {
    Opcode.LOAD: data.StructLayout({
        "hdr": HEADER,
        "mem": Mem,
        "sram": 14,
        "dram": 32,
        "y_size": 10,
        "x_size": 10,
        "y_stride": 18,
        "x_stride": 12,
        "length": 7,
        "pad_top": 2,
        "pad_bottom": 2,
        "pad_left": 2,
        "pad_right": 2,
        "pad_value": Shape(8, True),
    }),
    Opcode.STORE: data.StructLayout({
        "hdr": HEADER,
        "acc": 14,
        "dram": 32,
        "rows": 12,
        "stride": 18,
        "length": 7,
        "param": 10,
        "out_zp": Shape(8, True),
        "clamp_lo": Shape(8, True),
        "clamp_hi": Shape(8, True),
        "lut": 1,
    }),
    Opcode.GEMM: data.StructLayout({
        "hdr": HEADER,
        "wgt": 14,
        "inp": 14,
        "acc": 14,
        "m": 14,
        "accumulate": 1,
        "keep_wgt": 1,
    }),
    Opcode.ALU: data.StructLayout({
        "hdr": HEADER,
        "op": AluOp,
        "use_imm": 1,
        "dst": 14,
        "src": 14,
        "count": 14,
        "dst_stride": 8,
        "src_stride": 8,
        "imm": Shape(32, True),
    }),
    Opcode.CONFIG: data.StructLayout({
        "hdr": HEADER,
        "key": CfgKey,
        "value": 32,
    }),
    Opcode.SYNC: data.StructLayout({
        "hdr": HEADER,
        "queue": Queue,
    }),
    Opcode.FINISH: data.StructLayout({
        "hdr": HEADER,
    }),
}

#: The 128-bit instruction word, viewable as any of the formats (for the RTL decoder).
INSTRUCTION = data.UnionLayout({
    "raw": INSN_BITS,
    **{op.name.lower(): layout for op, layout in LAYOUTS.items()},
})

for _op, _layout in LAYOUTS.items():
    if _layout.size > INSN_BITS:  # pragma: no cover - a definition error, caught at import
        raise RuntimeError(f"{_op.name} layout is {_layout.size} bits, over {INSN_BITS}")

#: Header fields, common to every format.
HEADER_DOCS: dict[str, str] = {
    "opcode": "instruction class (Opcode)",
    "pop_prev": "wait for and take a token from the previous queue before running",
    "pop_next": "wait for and take a token from the next queue before running",
    "push_prev": "give a token to the previous queue when done",
    "push_next": "give a token to the next queue when done",
}

#: What every field of every format means, per format (the same name can mean different
#: things in two formats: LOAD's ``dram`` is read from, STORE's written to).
FIELD_DOCS: dict[Opcode, dict[str, str]] = {
    Opcode.LOAD: {
        "mem": "target memory (Mem)",
        "sram": "first target row in the memory named by `mem`",
        "dram": "DRAM byte address read for pattern vector (0, 0)",
        "y_size": "vectors along y (rows of the 2D pattern), at least 1",
        "x_size": "vectors along x (per pattern row), at least 1",
        "y_stride": "DRAM bytes between pattern rows",
        "x_stride": "DRAM bytes between vectors of one pattern row",
        "length": "elements read from DRAM per vector (1 to the row width); the rest of the "
                  "row is filled with `pad_value`",
        "pad_top": "whole padding rows of vectors before the pattern",
        "pad_bottom": "whole padding rows of vectors after the pattern",
        "pad_left": "padding vectors at the start of each pattern row",
        "pad_right": "padding vectors at the end of each pattern row",
        "pad_value": "fill value of padding (the input zero point), sign-extended",
    },
    Opcode.STORE: {
        "acc": "first accumulator row read",
        "dram": "DRAM byte address written for stored row 0",
        "rows": "accumulator rows stored, at least 1",
        "stride": "DRAM bytes between stored rows",
        "length": "int8 elements written per row (1 to `cols`), from lane 0",
        "param": f"parameter group: {', '.join(PARAM_ROWS)} are parameter rows "
                 + ", ".join(f"{PARAM_GROUP_ROWS}*param+{i}" for i in range(PARAM_GROUP_ROWS)),
        "out_zp": "output zero point added after requantization",
        "clamp_lo": "lower clamp of the int8 output (fused ReLU: the zero point)",
        "clamp_hi": "upper clamp of the int8 output (fused ReLU6: quantized 6)",
        "lut": "1: map each clamped int8 output v through the activation table, "
               "table[v + 128]; the table is the `table_rows` parameter rows after the group "
               "(their DRAM bytes in order: entry e is byte e % 4 of element e // 4)",
    },
    Opcode.GEMM: {
        "wgt": "first of `cols` scratchpad rows holding the weight tile transposed (row n = W[:, n])",
        "inp": "first of `m` scratchpad rows of activations",
        "acc": "first of `m` accumulator rows written",
        "m": "activation rows streamed through the array, at least 1",
        "accumulate": "1: add to the accumulator rows; 0: overwrite them",
        "keep_wgt": "1: reuse the weights already in the array; `wgt` is ignored",
    },
    Opcode.ALU: {
        "op": "operation (AluOp)",
        "use_imm": "1: the second operand is `imm`; 0: it is accumulator row `src + i*src_stride`",
        "dst": "first destination (and first operand) accumulator row",
        "src": "first source accumulator row",
        "count": "rows processed, at least 1",
        "dst_stride": "destination row step",
        "src_stride": "source row step",
        "imm": "immediate second operand",
    },
    Opcode.CONFIG: {
        "key": "register written (CfgKey)",
        "value": "value written",
    },
    Opcode.SYNC: {
        "queue": "queue the SYNC runs in (Queue)",
    },
    Opcode.FINISH: {},
}


def _field_doc(opcode: Opcode, name: str) -> str:
    return HEADER_DOCS[name] if name in HEADER_DOCS else FIELD_DOCS[opcode][name]


class ISAError(ValueError):
    """An instruction, a field value or an instruction word is invalid."""


def _shape(field_shape: Any) -> Shape:
    return Shape.cast(field_shape)


def _is_enum(field_shape: Any) -> bool:
    return isinstance(field_shape, type) and issubclass(field_shape, enum.Enum)


def fields_of(opcode: Opcode) -> list[tuple[str, Any, int, int]]:
    """The fields of an instruction format, flattened: ``(name, shape, offset, width)``.

    Header fields come first; ``opcode`` itself is included.
    """
    out = []

    def walk(layout: data.StructLayout, base: int) -> None:
        for name, fld in layout:
            if isinstance(fld.shape, data.Layout):
                walk(fld.shape, base + fld.offset)
            else:
                out.append((name, fld.shape, base + fld.offset, fld.width))

    walk(LAYOUTS[opcode], 0)
    return out


_FIELDS = {op: fields_of(op) for op in LAYOUTS}
_USER_FIELDS = {op: [f for f in flds if f[0] != "opcode"] for op, flds in _FIELDS.items()}
_DEP_FLAGS = DEP_FLAGS

for _op in LAYOUTS:  # pragma: no cover - a definition error, caught at import
    _missing = [f[0] for f in _USER_FIELDS[_op] if f[0] not in HEADER_DOCS
                and f[0] not in FIELD_DOCS[_op]]
    if _missing:
        raise RuntimeError(f"{_op.name} fields without documentation: {', '.join(_missing)}")


def field_bits(opcode: Opcode, name: str) -> int:
    """Width in bits of field ``name`` of format ``opcode``."""
    for fname, _, _, width in _FIELDS[opcode]:
        if fname == name:
            return width
    raise ISAError(f"{opcode.name} has no field {name!r}")


#: The largest value of every unsigned integer field, per format (what the compiler may put
#: there and what bounds the memories a configuration may have).
FIELD_MAX: dict[Opcode, dict[str, int]] = {
    op: {name: (1 << width) - 1 for name, shape, _, width in flds
         if not _is_enum(shape) and not _shape(shape).signed}
    for op, flds in _FIELDS.items()
}


def field_max(opcode: Opcode, name: str) -> int:
    """The largest value unsigned integer field ``name`` of ``opcode`` holds."""
    try:
        return FIELD_MAX[opcode][name]
    except KeyError:
        raise ISAError(f"{opcode.name} has no unsigned integer field {name!r}") from None


def queue_of(opcode: Opcode, queue_field: Queue | None = None) -> Queue | None:
    """The queue an instruction runs in; ``None`` for FINISH (handled by the dispatcher)."""
    if opcode is Opcode.LOAD:
        return Queue.LOAD
    if opcode is Opcode.STORE:
        return Queue.STORE
    if opcode is Opcode.SYNC:
        return queue_field
    if opcode is Opcode.FINISH:
        return None
    return Queue.COMPUTE


#: Which token queue each dependency flag of each queue takes a token from (pops) and
#: gives one to (pushes). The RTL's readiness checks and the functional model use these.
TOKEN_POPS: dict[Queue, dict[str, TokenQueue]] = {
    Queue.LOAD: {"pop_next": TokenQueue.C2L},
    Queue.COMPUTE: {"pop_prev": TokenQueue.L2C, "pop_next": TokenQueue.S2C},
    Queue.STORE: {"pop_prev": TokenQueue.C2S},
}
TOKEN_PUSHES: dict[Queue, dict[str, TokenQueue]] = {
    Queue.LOAD: {"push_next": TokenQueue.L2C},
    Queue.COMPUTE: {"push_prev": TokenQueue.C2L, "push_next": TokenQueue.C2S},
    Queue.STORE: {"push_prev": TokenQueue.S2C},
}


def allowed_deps(queue: Queue | None) -> tuple[str, ...]:
    """Dependency flags meaningful in a queue (others must be 0)."""
    if queue is None:
        return ()
    return tuple(f for f in _DEP_FLAGS if f in TOKEN_POPS[queue] or f in TOKEN_PUSHES[queue])


# LOAD and STORE geometry, shared by the functional model, its planner and the compiler.

def load_grid(insn: "Instruction") -> tuple[int, int]:
    """A LOAD's pattern with its padding: (rows of vectors, vectors per row)."""
    f = insn.fields
    return (f["pad_top"] + f["y_size"] + f["pad_bottom"],
            f["pad_left"] + f["x_size"] + f["pad_right"])


def load_extent(insn: "Instruction") -> tuple[int, int]:
    """The DRAM bytes ``[first, end)`` a LOAD reads from."""
    f = insn.fields
    last = f["dram"] + (f["y_size"] - 1) * f["y_stride"] + (f["x_size"] - 1) * f["x_stride"]
    return f["dram"], last + f["length"] * DRAM_ELEM_BYTES[f["mem"]]


def store_extent(insn: "Instruction") -> tuple[int, int]:
    """The DRAM bytes ``[first, end)`` a STORE writes to."""
    f = insn.fields
    return f["dram"], f["dram"] + (f["rows"] - 1) * f["stride"] + f["length"]


class Instruction:
    """One decoded instruction: an opcode and a value for every field of its format.

    Fields are read as attributes (``insn.sram``). Enum fields hold enum members,
    signed fields Python ints in their signed range.
    """

    __slots__ = ("opcode", "fields")

    def __init__(self, opcode: Opcode, **fields: Any) -> None:
        if not isinstance(opcode, Opcode):
            raise ISAError(f"opcode must be an Opcode, not {opcode!r}")
        object.__setattr__(self, "opcode", opcode)
        object.__setattr__(self, "fields", _BUILDERS[opcode](**fields).fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.opcode.name} instruction has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Instruction is immutable; use .replace()")

    def replace(self, **changes: Any) -> "Instruction":
        rules = _RULES[self.opcode]
        if not changes.keys() <= rules.keys():
            return Instruction(self.opcode, **{**self.fields, **changes})   # names the field
        new = object.__new__(Instruction)
        object.__setattr__(new, "opcode", self.opcode)
        # The other fields were checked when this instruction was made.
        values = self.fields.copy()
        for name, value in changes.items():
            rule = rules[name]
            if type(value) is not int or rule[1] is None or not rule[1] <= value <= rule[2]:
                value = _check_field(self.opcode, name, rule, value)
            values[name] = value
        object.__setattr__(new, "fields", values)
        return new

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Instruction) and self.opcode is other.opcode
                and self.fields == other.fields)

    def __hash__(self) -> int:
        return hash((self.opcode, tuple(sorted(self.fields.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        return f"Instruction({disassemble_one(self)!r})"

    @property
    def queue(self) -> Queue | None:
        return queue_of(self.opcode, self.fields.get("queue"))

    def encode(self) -> int:
        return encode(self)


def _field_rule(shape: Any) -> tuple:
    """What a field's values must be: ``(shape, None, None)`` for an enum field, else
    ``(Shape, lo, hi)`` (computed once per field: casting shapes is slow)."""
    if _is_enum(shape):
        return shape, None, None
    sh = _shape(shape)
    if sh.signed:
        return sh, -(1 << (sh.width - 1)), (1 << (sh.width - 1)) - 1
    return sh, 0, (1 << sh.width) - 1


#: enum -> member name -> member, for fields given by name (``mem="spad"``); faster than
#: the enum's own lookup.
_MEMBERS = {cls: {m.name: m for m in cls} for cls in (Mem, AluOp, Queue, CfgKey)}

#: opcode -> field name -> its rule (:func:`_field_rule`), in layout order.
_RULES = {op: {name: _field_rule(shape) for name, shape, _, _ in flds}
          for op, flds in _USER_FIELDS.items()}


def _check_field(opcode: Opcode, name: str, rule: tuple, value: Any) -> Any:
    """``value`` as field ``name`` holds it (an enum member, a Python int), or ISAError."""
    shape, lo, hi = rule
    if lo is not None and type(value) is int and lo <= value <= hi:
        return value                                     # the common case, quickly
    if lo is None:
        if isinstance(value, shape):
            return value
        if isinstance(value, str):
            member = _MEMBERS[shape].get(value.upper())
            if member is not None:
                return member
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return shape(value)
            except ValueError:
                pass
        raise ISAError(
            f"{opcode.name}.{name} = {value!r} is not a {shape.__name__}; "
            f"allowed: {', '.join(m.name.lower() for m in shape)}")
    sh = shape
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise ISAError(f"{opcode.name}.{name} must be an integer, not {value!r}")
    value = int(value)                                   # an int subclass (numpy's, an enum)
    if not lo <= value <= hi:
        raise ISAError(
            f"{opcode.name}.{name} = {value} does not fit its {sh.width}-bit "
            f"{'signed' if sh.signed else 'unsigned'} field ({lo} to {hi})")
    return value


#: opcode -> every field at 0 (an enum field at its member 0), in layout order: what
#: :class:`Instruction` starts from before the fields it is given.
_DEFAULTS: dict[Opcode, dict[str, Any]] = {
    op: {name: _check_field(op, name, rule, 0) for name, rule in rules.items()}
    for op, rules in _RULES.items()}


def encode(insn: Instruction) -> int:
    """Encode an instruction to its 128-bit word (an int)."""
    return _ENCODERS[insn.opcode](insn.fields)


def _encoder(opcode: Opcode):
    """The encoder of one format: a function of an instruction's fields giving its word,
    generated from the layout as one expression of masks and shifts (as ``dataclasses``
    generates methods), twice as fast as a loop over the fields."""
    terms = [str(opcode.value)]
    for name, shape, offset, width in _USER_FIELDS[opcode]:
        value = f"f[{name!r}].value" if _is_enum(shape) else f"f[{name!r}]"
        terms.append(f"(({value}) & {(1 << width) - 1}) << {offset}")
    return eval(f"lambda f: {' | '.join(terms)}")   # noqa: S307 - text built above


#: opcode -> its encoder (:func:`_encoder`).
_ENCODERS = {op: _encoder(op) for op in LAYOUTS}


def _decode_table() -> dict[Opcode, list[tuple]]:
    table = {}
    for op in LAYOUTS:
        rows = []
        for name, shape, offset, width in _USER_FIELDS[op]:
            mask = (1 << width) - 1
            if _is_enum(shape):
                rows.append((name, offset, mask, 0, {m.value: m for m in shape}, shape))
            else:
                sign = 1 << (width - 1) if _shape(shape).signed else 0
                rows.append((name, offset, mask, sign, None, None))
        table[op] = rows
    return table


_DECODE = _decode_table()
_OPCODE_MASK = (1 << _shape(Opcode).width) - 1
_OPCODES = {op.value: op for op in Opcode}


def decode(word: int) -> Instruction:
    """Decode a 128-bit word. Raises :class:`ISAError` for an illegal opcode or enum value."""
    if not isinstance(word, int) or not 0 <= word < (1 << INSN_BITS):
        raise ISAError(f"an instruction word is an unsigned {INSN_BITS}-bit integer, not {word!r}")
    opcode = _OPCODES.get(word & _OPCODE_MASK)
    if opcode is None:
        raise ISAError(f"illegal opcode {word & _OPCODE_MASK}")
    # Decoded values are in range by construction, so the checks of __init__ are skipped.
    try:
        fields = _DECODERS[opcode](word)
    except KeyError:                       # an enum field with no member: say which
        fields = _decode_fields(opcode, word)
    insn = object.__new__(Instruction)
    object.__setattr__(insn, "opcode", opcode)
    object.__setattr__(insn, "fields", fields)
    return insn


def _decode_fields(opcode: Opcode, word: int) -> dict[str, Any]:
    """The fields of ``word`` one at a time, naming an enum field that has no member."""
    fields: dict[str, Any] = {}
    for name, offset, mask, sign, members, enum_cls in _DECODE[opcode]:
        value = (word >> offset) & mask
        if members is not None:
            member = members.get(value)
            if member is None:
                raise ISAError(f"{opcode.name}.{name} = {value} is not a {enum_cls.__name__}")
            value = member
        elif sign and value & sign:
            value -= mask + 1
        fields[name] = value
    return fields


def _decoder(opcode: Opcode):
    """The decoder of one format: a function of a word giving its fields, generated from
    the layout as one expression (as :func:`_encoder`); a KeyError for an enum field
    with no member."""
    items, members = [], {}
    for name, shape, offset, width in _USER_FIELDS[opcode]:
        value = f"(word >> {offset}) & {(1 << width) - 1}"
        if _is_enum(shape):
            members[name] = {m.value: m for m in shape}
            value = f"_members[{name!r}][{value}]"
        elif _shape(shape).signed:
            sign = 1 << (width - 1)
            value = f"(({value}) ^ {sign}) - {sign}"       # two's complement
        items.append(f"{name!r}: {value}")
    return eval(f"lambda word: {{{', '.join(items)}}}", {"_members": members})  # noqa: S307


#: opcode -> its decoder (:func:`_decoder`).
_DECODERS = {op: _decoder(op) for op in LAYOUTS}


# Builders --------------------------------------------------------------------------------

def _unknown_fields(opcode: Opcode, names: Iterable[str]) -> None:
    raise ISAError(f"{opcode.name} has no field(s) {', '.join(sorted(names))}; "
                   f"fields: {', '.join(_RULES[opcode])}")


def _builder(opcode: Opcode, doc: str):
    """The builder of one format: a function of its fields by keyword (0 where not given)
    that checks them (:func:`_check_field`) and returns the :class:`Instruction`.

    Generated from the layout as straight-line code (as ``dataclasses`` generates
    ``__init__``): a compiled network makes 100 000s of instructions, and a loop over the
    fields took most of the compiler's time. An int in range or an enum member passes with
    one comparison; anything else goes to :func:`_check_field`.
    """
    rules = _RULES[opcode]
    params, lines, items = [], [], []
    for name, (shape, lo, hi) in rules.items():
        params.append(f"{name}=_default[{name!r}]")
        if lo is None:
            test = f"type({name}) is not _rule[{name!r}][0]"
        else:
            test = f"type({name}) is not int or not {lo} <= {name} <= {hi}"
        lines.append(f"    if {test}:\n"
                     f"        {name} = _check(_opcode, {name!r}, _rule[{name!r}], {name})")
        items.append(f"{name!r}: {name}")
    source = (f"def {opcode.name.lower()}(*, {', '.join(params + ['**_other'])}):\n"
              f"    if _other:\n"
              f"        _unknown(_opcode, _other)\n"
              + "".join(line + "\n" for line in lines) +
              f"    insn = _new(_Instruction)\n"
              f"    _set_opcode(insn, _opcode)\n"
              f"    _set_fields(insn, {{{', '.join(items)}}})\n"
              f"    return insn\n")
    space = {"_default": _DEFAULTS[opcode], "_rule": rules, "_check": _check_field,
             "_unknown": _unknown_fields, "_opcode": opcode, "_new": object.__new__,
             "_Instruction": Instruction, "_set_opcode": Instruction.opcode.__set__,
             "_set_fields": Instruction.fields.__set__}
    exec(source, space)   # noqa: S102 - text built above from the layout
    build = space[opcode.name.lower()]
    build.__doc__ = doc
    return build


#: opcode -> its builder (:func:`_builder`).
_BUILDERS = {
    Opcode.LOAD: _builder(Opcode.LOAD, "LOAD: DRAM to scratchpad, accumulator or parameter "
                                       "memory (2D strided, padded)."),
    Opcode.STORE: _builder(Opcode.STORE, "STORE: accumulator rows + bias, requantized to int8, "
                                         "to DRAM."),
    Opcode.GEMM: _builder(Opcode.GEMM, "GEMM: acc[acc+i][n] (+)= sum_k spad[inp+i][k] * "
                                       "spad[wgt+n][k]."),
    Opcode.ALU: _builder(Opcode.ALU, "ALU: element-wise op on accumulator rows."),
    Opcode.CONFIG: _builder(Opcode.CONFIG, "CONFIG: write a register (the layer id)."),
    Opcode.SYNC: _builder(Opcode.SYNC, "SYNC: move tokens in the queue named by `queue`."),
    Opcode.FINISH: _builder(Opcode.FINISH, "FINISH: the end of the program."),
}
load = _BUILDERS[Opcode.LOAD]
store = _BUILDERS[Opcode.STORE]
gemm = _BUILDERS[Opcode.GEMM]
alu = _BUILDERS[Opcode.ALU]
config = _BUILDERS[Opcode.CONFIG]
sync = _BUILDERS[Opcode.SYNC]
finish = _BUILDERS[Opcode.FINISH]


# Text form ---------------------------------------------------------------------------------

def disassemble_one(insn: Instruction) -> str:
    """Canonical text of one instruction: every field, flags as ``+name``."""
    parts = [insn.opcode.name]
    for name, shape, _, width in _USER_FIELDS[insn.opcode]:
        value = insn.fields[name]
        if name in _DEP_FLAGS:
            if value:
                parts.append(f"+{name}")
            continue
        if _is_enum(shape):
            parts.append(f"{name}={value.name.lower()}")
        elif name == "dram":
            parts.append(f"{name}=0x{value:08x}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def disassemble(program: Iterable[Instruction | int], *, numbered: bool = False) -> str:
    """Text of a program (instructions or words), one per line."""
    lines = []
    for index, item in enumerate(program):
        insn = decode(item) if isinstance(item, int) else item
        text = disassemble_one(insn)
        lines.append(f"{index:5d}: {text}" if numbered else text)
    return "\n".join(lines) + ("\n" if lines else "")


class AssemblerError(ISAError):
    """Malformed assembly text; the message starts with the line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _parse_int(text: str) -> int:
    return int(text, 0)


def assemble_line(text: str, line: int = 1) -> Instruction | None:
    """Assemble one line; ``None`` for a blank or comment-only line."""
    code = text.split("#", 1)[0].split(";", 1)[0].strip()
    if not code:
        return None
    # A numbered listing ("   12: LOAD ...") assembles too.
    head, _, rest = code.partition(":")
    if rest and head.strip().isdigit():
        code = rest.strip()
    tokens = code.split()
    mnemonic = tokens[0].upper()
    try:
        opcode = Opcode[mnemonic]
    except KeyError:
        raise AssemblerError(
            line, f"unknown mnemonic {tokens[0]!r}; known: {', '.join(o.name for o in Opcode)}") from None
    fields: dict[str, Any] = {}
    known = {name: shape for name, shape, _, _ in _USER_FIELDS[opcode]}
    for tok in tokens[1:]:
        if tok.startswith("+"):
            name, value = tok[1:], 1
            if name not in _DEP_FLAGS:
                raise AssemblerError(line, f"unknown flag {tok!r}; flags: "
                                           + ", ".join("+" + f for f in _DEP_FLAGS))
        else:
            name, eq, raw = tok.partition("=")
            if not eq or not raw:
                raise AssemblerError(line, f"expected name=value or +flag, got {tok!r}")
            if name not in known:
                raise AssemblerError(
                    line, f"{opcode.name} has no field {name!r}; fields: {', '.join(known)}")
            if _is_enum(known[name]):
                value = raw
            else:
                try:
                    value = _parse_int(raw)
                except ValueError:
                    raise AssemblerError(line, f"{name}={raw!r} is not an integer") from None
        if name in fields:
            raise AssemblerError(line, f"field {name!r} given twice")
        fields[name] = value
    try:
        return Instruction(opcode, **fields)
    except ISAError as exc:
        raise AssemblerError(line, str(exc)) from None


def assemble(text: str) -> list[Instruction]:
    """Assemble a program text. Raises :class:`AssemblerError` naming the line."""
    program = []
    for number, line in enumerate(text.splitlines(), start=1):
        insn = assemble_line(line, number)
        if insn is not None:
            program.append(insn)
    return program


def words_to_bytes(words: Iterable[int]) -> bytes:
    """Instruction words as little-endian bytes (how they sit in DRAM)."""
    return b"".join(w.to_bytes(INSN_BYTES, "little") for w in words)


def encode_bytes(insns: Iterable[Instruction]) -> bytes:
    """The instructions as they sit in DRAM: ``words_to_bytes(i.encode() for i in insns)``
    in one pass."""
    encoders = _ENCODERS
    return b"".join(encoders[i.opcode](i.fields).to_bytes(INSN_BYTES, "little") for i in insns)


def bytes_to_words(blob: bytes) -> list[int]:
    """Little-endian instruction bytes as words; the length must be a whole number."""
    size = INSN_BYTES
    if len(blob) % size:
        raise ISAError(f"instruction bytes must be a multiple of {size}, got {len(blob)}")
    return [int.from_bytes(blob[i:i + size], "little") for i in range(0, len(blob), size)]


# The document ------------------------------------------------------------------------------

def _type_name(shape: Any) -> str:
    if _is_enum(shape):
        return shape.__name__
    sh = _shape(shape)
    return f"{'s' if sh.signed else 'u'}{sh.width}"


def _enum_table(cls: type) -> Iterator[str]:
    yield f"### {cls.__name__} ({_shape(cls).width} bits)"
    yield ""
    if cls.__doc__:
        yield inspect.cleandoc(cls.__doc__)
        yield ""
    docs = _member_docs(cls)
    if docs:
        yield "| value | name | meaning |"
        yield "|---|---|---|"
        for member in cls:
            yield f"| {member.value} | `{member.name}` | {docs.get(member.name, '')} |"
    else:
        yield "| value | name |"
        yield "|---|---|"
        for member in cls:
            yield f"| {member.value} | `{member.name}` |"
    yield ""


def _member_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments after an enum's members, by member name (the members' meaning
    written once, next to their values)."""
    found = re.findall(r"^\s*(\w+)\s*=\s*\d+\s*#:\s*(.+)$", inspect.getsource(cls), re.M)
    return {name: text.strip().replace("|", "\\|") for name, text in found}


def _neighbours(queue: Queue) -> tuple[str, str]:
    """The previous and next queue of ``queue``, read off the token tables."""
    prev = nxt = "-"
    for table in (TOKEN_POPS, TOKEN_PUSHES):
        for flag, tq in table[queue].items():
            producer, consumer = _TOKEN_ENDS[tq]
            other = consumer if producer is queue else producer
            if flag.endswith("_prev"):
                prev = other.name
            else:
                nxt = other.name
    return prev, nxt


#: Producer and consumer queue of every token queue (L2C: load to compute, ...).
_TOKEN_ENDS: dict[TokenQueue, tuple[Queue, Queue]] = {}
for _q, _flags in TOKEN_PUSHES.items():
    for _tq in _flags.values():
        _TOKEN_ENDS[_tq] = (_q, next(q for q, fl in TOKEN_POPS.items() if _tq in fl.values()))


def _token_table() -> list[str]:
    rows = ["| queue | prev | next | flags |", "|---|---|---|---|"]
    for queue in Queue:
        prev, nxt = _neighbours(queue)
        flags = [f"`{flag}` ({tq.name})"
                 for table in (TOKEN_POPS, TOKEN_PUSHES) for flag, tq in table[queue].items()]
        rows.append(f"| {queue.name} | {prev} | {nxt} | {', '.join(flags)} |")
    return rows


def isa_markdown() -> str:
    """The ISA document, generated from the definitions in this module."""
    out = [
        "# NPU instruction set",
        "",
        "<!-- Generated by `python -m hw.isa > docs/isa.md` from hw/isa.py; do not edit. "
        "tests/hw/test_isa.py fails when this file is stale. -->",
        "",
        f"Every instruction is {INSN_BITS} bits, stored little-endian in DRAM "
        f"({INSN_BYTES} bytes). Bit 0 is the least significant bit of the first byte. "
        "Fields not listed are zero. The header (opcode and dependency flags) is common to all.",
        "",
        "Queues: LOAD runs in the load queue; GEMM, ALU and CONFIG in the compute queue; "
        "STORE in the store queue; SYNC in the queue its `queue` field names; FINISH stops "
        "instruction fetch, and the NPU is done when all queues have drained.",
        "",
        "Dependency flags allowed per queue (others must be 0, or the NPU stops with "
        "`FIELD_RANGE`):",
        "",
        *_token_table(),
        "",
        "## Formats",
        "",
    ]
    for opcode, layout in LAYOUTS.items():
        out.append(f"### {opcode.name} (opcode {opcode.value}, {layout.size} bits used)")
        out.append("")
        out.append("| bits | field | type | meaning |")
        out.append("|---|---|---|---|")
        for name, shape, offset, width in _FIELDS[opcode]:
            bits = f"{offset}" if width == 1 else f"{offset + width - 1}:{offset}"
            out.append(f"| {bits} | `{name}` | {_type_name(shape)} | {_field_doc(opcode, name)} |")
        out.append("")
    out.append("## Enumerations")
    out.append("")
    for cls in (Opcode, Mem, AluOp, Queue, CfgKey, ErrorCode, TokenQueue):
        out.extend(_enum_table(cls))
    out.extend(_SEMANTICS)
    return "\n".join(out).rstrip() + "\n"


_SEMANTICS = f"""## Semantics

Let `R` = `rows`, `C` = `cols` of the configuration.

**LOAD** writes `(pad_top + y_size + pad_bottom) * (pad_left + x_size + pad_right)` rows of
memory `mem`, consecutively from row `sram`, in row-major order of the padded pattern.
Pattern vector `(y, x)` is read from DRAM at `dram + y*y_stride + x*x_stride`: `length`
elements ({DRAM_ELEM_BYTES[Mem.SPAD]} byte each for SPAD and ACC, {PARAM_ELEM_BYTES} bytes little-endian for PARAM). Row elements past
`length`, and all elements of padding vectors, are `pad_value` (sign-extended). ACC loads
sign-extend int8 to int32. Row width: `R` for SPAD, `C` for ACC and PARAM.

**GEMM** computes, for `i` in `0..m-1` and `n` in `0..C-1`,
`acc[acc+i][n] = (accumulate ? acc[acc+i][n] : 0) + sum_k spad[inp+i][k] * spad[wgt+n][k]`
with int32 wrap-around. Unless `keep_wgt`, the weight tile (scratchpad rows `wgt..wgt+C-1`)
is loaded into the array first; the hardware double-buffers it behind the previous GEMM.

**STORE** writes `rows` rows of `length` int8 bytes to DRAM at `dram + r*stride`:
`y[r][n] = clamp(MultiplyByQuantizedMultiplier(acc[acc+r][n] + bias[n], mult[n], shift[n])
+ out_zp, clamp_lo, clamp_hi)` where `bias`, `mult`, `shift` are parameter rows `{PARAM_GROUP_ROWS}*param`,
`{PARAM_GROUP_ROWS}*param+1`, `{PARAM_GROUP_ROWS}*param+2`. See docs/numerics.md for the rounding rule.

**ALU** for `i` in `0..count-1`: `d = acc[dst + i*dst_stride]`,
`s = use_imm ? imm : acc[src + i*src_stride]`, `acc[dst + i*dst_stride] = op(d, s)`.

**CONFIG** writes register `key` (LAYER: the layer id that performance counters are
attributed to). **SYNC** does nothing but move tokens. **FINISH** ends the program.

**Errors.** An opcode or enum value with no meaning is `ILLEGAL_OPCODE`. A field out of range
for the configuration (a memory row past the depth, `length` past the row width, a zero
size, a dependency flag not allowed in the queue, a parameter group past the parameter
memory) is `FIELD_RANGE`, detected when the instruction is dispatched. Any DRAM byte outside
the DMA window `[base, limit)` is `DMA_WINDOW`, detected before the access. A state where
no queue can proceed and the program has not finished is `DEADLOCK`. The NPU stops and
reports the code and the index of the failing instruction.
""".splitlines()


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m hw.isa", description="Print the NPU ISA document (Markdown).")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = isa_markdown()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
