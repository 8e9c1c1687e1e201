"""The functional model against the PyTorch golden and naive references."""
import zlib

import numpy as np
import pytest
import torch

from hw import NPUConfig
from hw import isa
from hw.isa import ErrorCode
from sim.functional import FunctionalModel, NPUError, place_program, requantize_np
from sw import golden
from .gemm_kernel import gemm_kernel

from .programs import golden_gemm, random_gemm

CONFIGS = {
    "tiny": NPUConfig.preset("tiny"),
    "4x6": NPUConfig.preset("tiny", cols=6),
    "small": NPUConfig.preset("small"),
    "default": NPUConfig(),
}


@pytest.mark.parametrize("cfg_name, shape, m_tile, a_pad", [
    ("tiny", (1, 1, 1), None, 0),
    ("tiny", (9, 7, 10), 4, 0),        # partial tiles in every dimension
    ("tiny", (13, 16, 8), 3, 5),       # strided A rows, many m-blocks
    ("4x6", (10, 9, 13), None, 2),     # non-square array
    ("small", (33, 20, 17), 8, 0),
    ("small", (40, 64, 24), None, 3),
    ("default", (70, 100, 40), 16, 0),
])
def test_random_gemm_programs_equal_golden(cfg_name, shape, m_tile, a_pad):
    cfg = CONFIGS[cfg_name]
    # A seed fixed by the case (str hashes differ between processes).
    rng = np.random.default_rng(zlib.crc32(f"{cfg_name}{shape}".encode()))
    a, w, bias, mult, shift = random_gemm(rng, *shape)
    zp, lo, hi = int(rng.integers(-20, 20)), -100, 110
    kern = gemm_kernel(cfg, a, w, bias, mult, shift, out_zp=zp, clamp=(lo, hi),
                       a_stride=shape[1] + a_pad, m_tile=m_tile)
    # The program went through the assembler, and its text round-trips.
    assert isa.assemble(isa.disassemble(kern.insns)) == kern.insns
    dram = kern.dram.copy()
    counts = FunctionalModel(cfg).run(dram, kern.insn_base, kern.insn_count)
    y = kern.read_output(dram)
    assert np.array_equal(y, golden_gemm(a, w, bias, mult, shift, zp, lo, hi))
    m, k, n = shape
    kt, nt = -(-k // cfg.rows), -(-n // cfg.cols)
    assert counts.insns["GEMM"] == kt * nt * -(-m // kern.m_tile)
    assert counts.macs == kt * nt * m * cfg.rows * cfg.cols
    assert counts.dram_write_bytes == m * n
    assert counts.insn_read_bytes == 16 * kern.insn_count
    # A is read once; W once per m-block; 12 bytes of parameters per channel slot
    mb = -(-m // kern.m_tile)
    assert counts.dram_read_bytes == m * k + mb * n * k + nt * 3 * cfg.cols * 4


def naive_load(dram, insn, width, esize):
    """The LOAD rule written out with loops."""
    rows = []
    ny = insn.pad_top + insn.y_size + insn.pad_bottom
    nx = insn.pad_left + insn.x_size + insn.pad_right
    for yy in range(ny):
        for xx in range(nx):
            y, x = yy - insn.pad_top, xx - insn.pad_left
            row = [insn.pad_value] * width
            if 0 <= y < insn.y_size and 0 <= x < insn.x_size:
                addr = insn.dram + y * insn.y_stride + x * insn.x_stride
                for e in range(insn.length):
                    raw = bytes(dram[addr + e * esize: addr + (e + 1) * esize])
                    row[e] = int.from_bytes(raw, "little", signed=True)
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("mem", ["spad", "acc", "param"])
def test_random_loads_with_strides_and_padding(mem):
    cfg = CONFIGS["4x6"]
    rng = np.random.default_rng({"spad": 1, "acc": 2, "param": 3}[mem])
    fm = FunctionalModel(cfg)
    target = {"spad": fm.spad, "acc": fm.acc, "param": fm.param}[mem]
    width = target.shape[1]
    esize = 4 if mem == "param" else 1
    for trial in range(40):
        dram = rng.integers(0, 256, 4096, dtype=np.uint8)
        small = mem == "param"  # 24 rows only
        pads = rng.integers(0, 2 if small else 4, 4)
        y_size, x_size = int(rng.integers(1, 4)), int(rng.integers(1, 3 if small else 4))
        nrows = (pads[0] + y_size + pads[1]) * (pads[2] + x_size + pads[3])
        insn = isa.load(
            mem=mem, sram=int(rng.integers(0, target.shape[0] - nrows + 1)), dram=int(rng.integers(0, 1024)),
            y_size=y_size, x_size=x_size, y_stride=int(rng.integers(0, 300)),
            x_stride=int(rng.integers(0, 60)), length=int(rng.integers(1, width + 1)),
            pad_top=int(pads[0]), pad_bottom=int(pads[1]), pad_left=int(pads[2]),
            pad_right=int(pads[3]), pad_value=int(rng.integers(-128, 128)))
        before = target.copy()
        prog_at = 3072
        place_program(dram, prog_at, [insn, isa.finish()])
        counts = fm.run(dram, prog_at, 2)
        expect = naive_load(dram, insn, width, esize)
        got = target[insn.sram:insn.sram + nrows]
        assert np.array_equal(got, expect), trial
        untouched = np.ones(len(target), bool)
        untouched[insn.sram:insn.sram + nrows] = False
        assert np.array_equal(target[untouched], before[untouched])
        assert counts.dram_read_bytes == y_size * x_size * insn.length * esize


@pytest.mark.parametrize("op", list(isa.AluOp))
@pytest.mark.parametrize("use_imm", [0, 1])
def test_alu_ops(op, use_imm):
    cfg = CONFIGS["tiny"]
    rng = np.random.default_rng(op.value * 2 + use_imm)
    fm = FunctionalModel(cfg)
    fm.acc[:] = rng.integers(-2**31, 2**31, fm.acc.shape, dtype=np.int64).astype(np.int32)
    fm.acc[:8] = rng.integers(-300, 300, (8, cfg.cols))
    before = fm.acc.astype(np.int64).copy()
    imm = int(rng.integers(-2**31, 2**31))
    insn = isa.alu(op=op, use_imm=use_imm, dst=10, src=40, count=5, dst_stride=3,
                   src_stride=2, imm=imm)
    dram = np.zeros(256, np.uint8)
    place_program(dram, 0, [insn])
    fm.run(dram, 0, 1)
    for i in range(5):
        d = before[10 + 3 * i]
        s = np.full(cfg.cols, imm, np.int64) if use_imm else before[40 + 2 * i]
        expect = [_alu_lane(op, int(a), int(b), [int(v) for v in s]) for a, b in zip(d, s)]
        assert fm.acc[10 + 3 * i].tolist() == expect, op.name


def _alu_lane(op, d, s, row):
    """One lane of an ALU operation in Python integers (``row``: the source's lanes)."""
    def wrap(v):
        return ((v + 2**31) % 2**32) - 2**31
    sh = s & 31
    return {
        "MOV": lambda: s, "ADD": lambda: wrap(d + s), "SUB": lambda: wrap(d - s),
        "MUL": lambda: wrap(d * s), "MAX": lambda: max(d, s), "MIN": lambda: min(d, s),
        "SHR": lambda: d >> sh, "SHL": lambda: wrap(d << sh),
        "RSUM": lambda: wrap(sum(row)), "RMAX": lambda: max(row),
        "CLZ": lambda: 32 - (s % 2**32).bit_length(), "MULH": lambda: (d * s) >> 32,
        "RSHR": lambda: (d + ((1 << sh) >> 1)) >> sh,
    }[op.name]()


def test_alu_reduction_is_sequential():
    """dst_stride=0 folds rows into one: max-pooling."""
    cfg = CONFIGS["tiny"]
    fm = FunctionalModel(cfg)
    fm.acc[0:9] = np.arange(36).reshape(9, 4) % 11 - 5
    dram = np.zeros(256, np.uint8)
    place_program(dram, 0, [isa.alu(op="mov", dst=20, src=0, count=1),
                            isa.alu(op="max", dst=20, src=1, src_stride=1, count=8)])
    fm.run(dram, 0, 2)
    assert fm.acc[20].tolist() == fm.acc[0:9].max(axis=0).tolist()
    # A shifted overlap reads rows it has already written: acc[i+1] += acc[i]
    fm.acc[30:34] = 1
    place_program(dram, 0, [isa.alu(op="add", dst=31, src=30, count=3, dst_stride=1, src_stride=1)])
    fm.run(dram, 0, 1)
    assert fm.acc[30:34, 0].tolist() == [1, 2, 3, 4]


def test_config_layer_attributes_counts():
    cfg = CONFIGS["tiny"]
    dram = np.zeros(512, np.uint8)
    place_program(dram, 0, [isa.config(key="layer", value=1), isa.gemm(m=3),
                            isa.config(key="layer", value=2), isa.gemm(m=5), isa.gemm(m=1),
                            isa.finish()])
    counts = FunctionalModel(cfg).run(dram, 0, 6)
    assert counts.per_layer[1].macs == 3 * 16
    assert counts.per_layer[2].macs == 6 * 16
    assert counts.per_layer[2].insns["GEMM"] == 2


def run_program(cfg, insns, size=1024, window=None, base=0):
    dram = np.zeros(size, np.uint8)
    n = place_program(dram, base, insns)
    return FunctionalModel(cfg).run(dram, base, n, window=window)


def test_error_illegal_opcode():
    dram = np.zeros(256, np.uint8)
    place_program(dram, 0, [isa.gemm(m=1), isa.gemm(m=1), 7])
    with pytest.raises(NPUError) as info:
        FunctionalModel(CONFIGS["tiny"]).run(dram, 0, 3)
    assert info.value.code is ErrorCode.ILLEGAL_OPCODE and info.value.index == 2
    assert "illegal opcode 7" in str(info.value)


@pytest.mark.parametrize("insn, message", [
    (isa.load(mem="spad", sram=250, y_size=2, x_size=4, length=1), "past the SPAD depth 256"),
    (isa.load(mem="spad", y_size=1, x_size=1, length=5), "length=5 must be 1 to 4"),
    (isa.load(mem="acc", y_size=0, x_size=1, length=1), "at least 1"),
    (isa.gemm(m=200, inp=100), "input rows 100..299 are past the scratchpad"),
    (isa.gemm(m=1, acc=128), "accumulator rows 128..128"),
    (isa.store(rows=1, length=1, param=32), "param=32 is past the 32 parameter groups"),
    (isa.store(rows=1, length=1, clamp_lo=3, clamp_hi=2), "clamp_lo=3 is above clamp_hi=2"),
    (isa.alu(count=3, dst=120, dst_stride=5), "destination row 130"),
    (isa.load(y_size=1, x_size=1, length=1, pop_prev=1), "pop_prev is not allowed in the LOAD queue"),
    (isa.store(rows=1, length=1, push_next=1), "push_next is not allowed in the STORE queue"),
    (isa.finish(pop_prev=1), "not allowed in the FINISH"),
])
def test_error_field_range(insn, message):
    with pytest.raises(NPUError) as info:
        run_program(CONFIGS["tiny"], [isa.gemm(m=1), insn])
    assert info.value.code is ErrorCode.FIELD_RANGE and info.value.index == 1
    assert message in str(info.value)


def test_error_out_of_window():
    cfg = CONFIGS["tiny"]
    # A load reaching one byte past the window
    with pytest.raises(NPUError) as info:
        run_program(cfg, [isa.load(mem="spad", dram=0x3FD, y_size=1, x_size=1, length=4)],
                    window=(0, 0x400))
    assert info.value.code is ErrorCode.DMA_WINDOW and info.value.index == 0
    assert "[0x3fd, 0x401)" in str(info.value)
    # A store below the window base
    with pytest.raises(NPUError) as info:
        run_program(cfg, [isa.gemm(m=1), isa.store(dram=0xFE, rows=2, stride=4, length=4)],
                    window=(0x100, 0x400), base=0x200)
    assert info.value.code is ErrorCode.DMA_WINDOW and info.value.index == 1
    # The stride walks the last row past the end
    with pytest.raises(NPUError) as info:
        run_program(cfg, [isa.store(dram=0x300, rows=3, stride=0x80, length=4)],
                    window=(0, 0x400))
    assert info.value.code is ErrorCode.DMA_WINDOW and info.value.index == 0
    # Instruction fetch outside the window
    dram = np.zeros(1024, np.uint8)
    place_program(dram, 0, [isa.gemm(m=1)] * 4)
    with pytest.raises(NPUError) as info:
        FunctionalModel(cfg).run(dram, 0, 4, window=(0, 48))
    assert info.value.code is ErrorCode.DMA_WINDOW and info.value.index == 3
    with pytest.raises(ValueError, match="not inside the DRAM"):
        FunctionalModel(cfg).run(dram, 0, 1, window=(0, 4096))


def test_error_deadlock():
    cfg = CONFIGS["tiny"]
    # Compute waits for a token that the load queue never gives.
    with pytest.raises(NPUError) as info:
        run_program(cfg, [isa.load(y_size=1, x_size=1, length=1), isa.gemm(m=1, pop_prev=1),
                          isa.finish()])
    assert info.value.code is ErrorCode.DEADLOCK and info.value.index == 1
    assert "L2C=0" in str(info.value)
    # A cycle: load waits for compute, compute for load.
    with pytest.raises(NPUError) as info:
        run_program(cfg, [isa.load(y_size=1, x_size=1, length=1, pop_next=1, push_next=1),
                          isa.gemm(m=1, pop_prev=1, push_prev=1), isa.finish()])
    assert info.value.code is ErrorCode.DEADLOCK and info.value.index == 0
    # Pushing more tokens than the queue holds blocks the producer: with nothing
    # consuming them, that is a deadlock too.
    pushes = [isa.load(y_size=1, x_size=1, length=1, push_next=1)] * (cfg.token_queue_depth + 1)
    with pytest.raises(NPUError) as info:
        run_program(cfg, pushes)
    assert info.value.code is ErrorCode.DEADLOCK and info.value.index == cfg.token_queue_depth


def test_tokens_order_a_correct_program():
    """A store that waits for its compute sees the result, whatever the queue order."""
    cfg = CONFIGS["tiny"]
    dram = np.zeros(1024, np.uint8)
    fm = FunctionalModel(cfg)
    fm.param[0] = 0
    fm.param[1] = 1 << 30   # x 0.5
    fm.param[2] = 1         # << 1: x 1.0
    fm.spad[0:4] = np.eye(4, dtype=np.int8)          # weights = identity
    fm.spad[4] = [1, 2, 3, 4]
    place_program(dram, 0, [
        isa.store(acc=0, dram=512, rows=1, length=4, param=0, pop_prev=1, clamp_lo=-128,
                  clamp_hi=127),
        isa.gemm(wgt=0, inp=4, acc=0, m=1, push_next=1),
        isa.finish(),
    ])
    fm.run(dram, 0, 3)
    assert dram[512:516].view(np.int8).tolist() == [1, 2, 3, 4]


def test_requantize_closed_forms_equal_the_stepwise_golden():
    rng = np.random.default_rng(5)
    n = 4096
    edges = np.array([-2**31, 2**31 - 1, 0, 1, -1, 2**30, -2**30, 2**15, -2**15], np.int64)
    acc = np.concatenate([rng.integers(-2**31, 2**31, n), edges]).astype(np.int32)
    for shift in range(-31, 31):
        for mult in (2**31 - 1, 2**30, 1_234_567_891, 1, -2**31, -1_000_000_007):
            cols = 4
            a = acc[: (len(acc) // cols) * cols].reshape(-1, cols)
            bias = rng.integers(-2**31, 2**31, cols).astype(np.int32)
            mv = np.full(cols, mult, np.int32)
            sv = np.full(cols, shift, np.int32)
            got = requantize_np(a, bias, mv, sv, 3, -128, 127)
            want = golden.requantize(torch.from_numpy(a), torch.from_numpy(bias),
                                     torch.from_numpy(mv), torch.from_numpy(sv), 3)
            assert np.array_equal(got, want.numpy()), (shift, mult)
