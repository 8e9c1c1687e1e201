import pathlib
import random

import pytest
from amaranth.hdl import Shape

from hw import isa
from hw.isa import AssemblerError, ISAError, Opcode

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def random_instruction(rng: random.Random) -> isa.Instruction:
    opcode = rng.choice(list(Opcode))
    fields = {}
    for name, shape, _, width in isa.fields_of(opcode):
        if name == "opcode":
            continue
        if isinstance(shape, type) and issubclass(shape, isa.enum.Enum):
            fields[name] = rng.choice(list(shape))
        elif Shape.cast(shape).signed:
            fields[name] = rng.randrange(-(1 << (width - 1)), 1 << (width - 1))
        else:
            fields[name] = rng.randrange(0, 1 << width)
    return isa.Instruction(opcode, **fields)


def test_layouts_fit_128_bits():
    for opcode, layout in isa.LAYOUTS.items():
        assert layout.size <= isa.INSN_BITS, opcode
        assert layout.size >= Shape.cast(Opcode).width
    assert isa.INSTRUCTION.size == 128


def test_random_encode_decode_round_trip():
    rng = random.Random(1)
    for _ in range(3000):
        insn = random_instruction(rng)
        word = insn.encode()
        assert 0 <= word < 1 << 128
        again = isa.decode(word)
        assert again == insn
        assert again.encode() == word


def reference_word(insn: isa.Instruction) -> int:
    """The word of ``insn`` straight from the layout: each field at its offset."""
    word = 0
    for name, shape, offset, width in isa.fields_of(insn.opcode):
        value = insn.opcode if name == "opcode" else insn.fields[name]
        if isinstance(value, isa.enum.Enum):
            value = value.value
        word |= (value % (1 << width)) << offset
    return word


def test_generated_encoder_and_decoder_follow_the_layouts():
    # The per-format encoders, decoders and builders are generated code: check them
    # against the layouts field by field, on every format.
    rng = random.Random(7)
    program = [random_instruction(rng) for _ in range(3000)]
    assert {insn.opcode for insn in program} == set(Opcode)
    words = [reference_word(insn) for insn in program]
    assert [insn.encode() for insn in program] == words
    assert isa.encode_bytes(program) == isa.words_to_bytes(words)
    assert isa.encode_bytes([]) == b""
    for insn, word in zip(program, words):
        again = isa.decode(word)
        assert again.fields == insn.fields and list(again.fields) == list(insn.fields)
        assert again.fields == isa._decode_fields(insn.opcode, word)


def test_builders_check_and_convert_their_fields():
    a = isa.load(mem="ACC", sram=True, pad_value=-128)
    b = isa.Instruction(Opcode.LOAD, mem=isa.Mem.ACC, sram=1, pad_value=-128)
    assert a == b and type(a.sram) is int and a.mem is isa.Mem.ACC and a.y_size == 0
    assert list(a.fields) == [n for n, *_ in isa.fields_of(Opcode.LOAD) if n != "opcode"]
    assert isa.alu().op is isa.AluOp.MOV and isa.sync(queue=2).queue is isa.Queue.STORE
    with pytest.raises(ISAError, match=r"LOAD has no field\(s\) bar, foo; fields: pop_prev"):
        isa.load(foo=1, bar=2, sram=1)
    with pytest.raises(ISAError, match=r"GEMM has no field\(s\) mem"):
        isa.Instruction(Opcode.GEMM, mem=1)
    with pytest.raises(ISAError, match="LOAD.sram = 16384 does not fit its 14-bit"):
        isa.load(sram=1 << 14)
    with pytest.raises(ISAError, match="LOAD.pad_value = 128 does not fit"):
        isa.load(pad_value=128)
    with pytest.raises(ISAError, match="LOAD.mem = 'dram' is not a Mem"):
        isa.load(mem="dram")
    with pytest.raises(ISAError, match="must be an integer"):
        isa.gemm(m=1.0)
    assert isa.gemm(m=3).replace(m=4, accumulate=True).fields == isa.gemm(m=4, accumulate=1).fields


def test_random_assemble_disassemble_round_trip():
    rng = random.Random(2)
    program = [random_instruction(rng) for _ in range(1000)]
    text = isa.disassemble(program)
    assert isa.assemble(text) == program
    assert isa.disassemble(isa.assemble(text)) == text
    numbered = isa.disassemble(program, numbered=True)
    assert isa.assemble(numbered) == program


def test_encoding_matches_layout_offsets():
    insn = isa.load(mem="acc", sram=5, dram=0xDEADBEEF, pad_value=-1, push_next=1)
    word = insn.encode()
    offsets = {name: (off, w) for name, _, off, w in isa.fields_of(Opcode.LOAD)}
    off, w = offsets["dram"]
    assert (word >> off) & ((1 << w) - 1) == 0xDEADBEEF
    off, w = offsets["pad_value"]
    assert (word >> off) & ((1 << w) - 1) == 0xFF
    off, _ = offsets["push_next"]
    assert (word >> off) & 1 == 1
    assert word & 7 == Opcode.LOAD.value


def test_words_bytes_round_trip():
    rng = random.Random(3)
    words = [random_instruction(rng).encode() for _ in range(50)]
    blob = isa.words_to_bytes(words)
    assert len(blob) == 16 * 50
    assert isa.bytes_to_words(blob) == words
    with pytest.raises(ISAError, match="multiple of 16"):
        isa.bytes_to_words(blob[:-1])


def test_illegal_opcode_and_enum_values():
    with pytest.raises(ISAError, match="illegal opcode 7"):
        isa.decode(7)
    # SYNC with queue=3 (no such Queue)
    offsets = {name: off for name, _, off, _ in isa.fields_of(Opcode.SYNC)}
    with pytest.raises(ISAError, match="SYNC.queue = 3 is not a Queue"):
        isa.decode(Opcode.SYNC.value | (3 << offsets["queue"]))
    with pytest.raises(ISAError, match="unsigned 128-bit"):
        isa.decode(1 << 128)


def test_field_range_errors():
    with pytest.raises(ISAError, match=r"LOAD.sram = 16384 does not fit its 14-bit unsigned field"):
        isa.load(sram=1 << 14)
    with pytest.raises(ISAError, match=r"STORE.out_zp = 128 does not fit its 8-bit signed field"):
        isa.store(out_zp=128)
    with pytest.raises(ISAError, match="GEMM has no field"):
        isa.gemm(bogus=1)
    with pytest.raises(ISAError, match="ALU.op = 'pow' is not a AluOp"):
        isa.alu(op="pow")


@pytest.mark.parametrize("text, line, message", [
    ("FINISH\nFROB x=1\n", 2, "unknown mnemonic 'FROB'"),
    ("# comment\n\nLOAD sram=1 sram=2\n", 3, "field 'sram' given twice"),
    ("LOAD sram=zz\n", 1, "sram='zz' is not an integer"),
    ("GEMM m\n", 1, "expected name=value or +flag"),
    ("GEMM +pop_everything\n", 1, "unknown flag '+pop_everything'"),
    ("SYNC\nSYNC queue=memory\n", 2, "is not a Queue"),
    ("STORE\nSTORE\nSTORE rows=5000\n", 3, "STORE.rows = 5000 does not fit"),
    ("ALU dest=1\n", 1, "ALU has no field 'dest'"),
])
def test_malformed_text_names_line(text, line, message):
    with pytest.raises(AssemblerError) as info:
        isa.assemble(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert message in str(info.value)


def test_assembler_accepts_comments_hex_and_case():
    prog = isa.assemble("load mem=SPAD dram=0x40 length=4  ; a comment\n"
                        "  gemm +pop_prev m=3 # another\nFinish\n")
    assert [i.opcode for i in prog] == [Opcode.LOAD, Opcode.GEMM, Opcode.FINISH]
    assert prog[0].dram == 0x40 and prog[0].mem is isa.Mem.SPAD
    assert prog[1].pop_prev == 1 and prog[1].m == 3


def test_queue_assignment():
    assert isa.load().queue is isa.Queue.LOAD
    assert isa.store().queue is isa.Queue.STORE
    assert isa.gemm().queue is isa.Queue.COMPUTE
    assert isa.alu().queue is isa.Queue.COMPUTE
    assert isa.config().queue is isa.Queue.COMPUTE
    assert isa.sync(queue="store").queue is isa.Queue.STORE
    assert isa.finish().queue is None


def test_isa_document_is_current():
    assert DOC.read_text() == isa.isa_markdown(), (
        "docs/isa.md is stale: run `python -m hw.isa -o docs/isa.md`")


def test_token_table_is_generated_from_the_token_tables(monkeypatch):
    doc = isa.isa_markdown()
    assert "| LOAD | - | COMPUTE | `pop_next` (C2L), `push_next` (L2C) |" in doc
    assert "| STORE | COMPUTE | - | `pop_prev` (C2S), `push_prev` (S2C) |" in doc
    pops = {q: dict(f) for q, f in isa.TOKEN_POPS.items()}
    pops[isa.Queue.COMPUTE]["pop_prev"], pops[isa.Queue.COMPUTE]["pop_next"] = (
        isa.TokenQueue.S2C, isa.TokenQueue.L2C)
    monkeypatch.setattr(isa, "TOKEN_POPS", pops)
    assert isa.isa_markdown() != doc


def test_field_docs_are_per_format():
    doc = isa.isa_markdown()
    assert "| `dram` | u32 | DRAM byte address read for pattern vector (0, 0) |" in doc
    assert "| `dram` | u32 | DRAM byte address written for stored row 0 |" in doc
    assert "int8 elements written per row" in doc
    for opcode in Opcode:
        for name, *_ in isa.fields_of(opcode):
            assert name in isa.HEADER_DOCS or name in isa.FIELD_DOCS[opcode], (opcode, name)


def test_field_limits_and_layout_constants():
    assert isa.INSN_BYTES == 16
    assert isa.field_max(Opcode.LOAD, "pad_top") == 3
    assert isa.field_max(Opcode.LOAD, "y_stride") == (1 << 18) - 1
    assert isa.field_max(Opcode.LOAD, "x_stride") == (1 << 12) - 1
    assert isa.field_max(Opcode.LOAD, "y_size") == 1023
    assert isa.field_max(Opcode.STORE, "param") == 1023
    assert isa.field_bits(Opcode.GEMM, "m") == 14
    with pytest.raises(ISAError, match="no unsigned integer field 'pad_value'"):
        isa.field_max(Opcode.LOAD, "pad_value")
    assert isa.PARAM_ROWS == ("bias", "mult", "shift") and isa.PARAM_GROUP_ROWS == 3
    assert isa.DRAM_ELEM_BYTES == {isa.Mem.SPAD: 1, isa.Mem.ACC: 1, isa.Mem.PARAM: 4}


def test_load_and_store_geometry():
    ld = isa.load(mem="param", dram=100, y_size=3, x_size=2, y_stride=64, x_stride=16, length=4,
                  pad_top=1, pad_left=2, pad_right=1)
    assert isa.load_grid(ld) == (4, 5)
    assert isa.load_extent(ld) == (100, 100 + 2 * 64 + 16 + 4 * 4)
    st = isa.store(dram=8, rows=3, stride=10, length=5)
    assert isa.store_extent(st) == (8, 8 + 2 * 10 + 5)
