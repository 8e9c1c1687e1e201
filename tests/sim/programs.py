"""Random NPU programs for the regression (test helpers, not product code)."""
from __future__ import annotations

import numpy as np
import torch

from hw import NPUConfig
from hw import isa
from hw.isa import AluOp, Mem
from sim.functional import FunctionalModel, NPUError, place_program
from sw import golden
from .gemm_kernel import gemm_kernel


class Case:
    """A program, its DRAM image, and what the functional model says it does."""

    def __init__(self, config, dram, insn_base, insn_count, window=None, name="case", extra=None):
        self.config = config
        self.dram = dram
        self.insn_base = insn_base
        self.insn_count = insn_count
        self.window = window
        self.name = name
        self.extra = extra or {}
        self.expect_dram = dram.copy()
        self.error = None
        try:
            self.counts = FunctionalModel(config).run(self.expect_dram, insn_base, insn_count,
                                                      window=window)
        except NPUError as exc:
            self.error = exc
            self.counts = None


def random_gemm(rng, m, k, n):
    """Random int8 operands and per-channel requantization parameters of an M x K x N GEMM."""
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    qm = [golden.quantize_multiplier(s) for s in rng.uniform(1e-4, 2e-2, n)]
    mult = np.array([q[0] for q in qm], dtype=np.int32)
    shift = np.array([q[1] for q in qm], dtype=np.int32)
    return a, w, bias, mult, shift


def golden_gemm(a, w, bias, mult, shift, zp=0, lo=-128, hi=127):
    """The golden's int8 output of the GEMM."""
    acc = golden.gemm(torch.from_numpy(a), torch.from_numpy(w))
    return golden.requantize(acc, torch.from_numpy(bias), torch.from_numpy(mult),
                             torch.from_numpy(shift), zp, lo, hi).numpy()


def gemm_case(cfg: NPUConfig, seed: int, shape, m_tile=None, a_pad=0, zp=0, clamp=(-128, 127)):
    a, w, bias, mult, shift = random_gemm(np.random.default_rng(seed), *shape)
    kern = gemm_kernel(cfg, a, w, bias, mult, shift, out_zp=zp, clamp=clamp,
                       a_stride=shape[1] + a_pad, m_tile=m_tile)
    case = Case(cfg, kern.dram, kern.insn_base, kern.insn_count, name=f"gemm{shape}")
    case.extra = {"kernel": kern, "golden": golden_gemm(a, w, bias, mult, shift, zp, *clamp)}
    return case


class Builder:
    """A DRAM image with data regions and a program placed at the end."""

    def __init__(self, cfg: NPUConfig, size: int = 8192):
        self.cfg = cfg
        self.dram = np.zeros(size, np.uint8)
        self.top = 0
        self.program: list[isa.Instruction] = []

    def data(self, blob: np.ndarray | bytes, align: int = 16) -> int:
        blob = np.frombuffer(bytes(blob), np.uint8) if not isinstance(blob, np.ndarray) else \
            blob.view(np.uint8).reshape(-1)
        addr = -(-self.top // align) * align
        self.dram[addr:addr + len(blob)] = blob
        self.top = addr + len(blob)
        return addr

    def reserve(self, nbytes: int, align: int = 16) -> int:
        addr = -(-self.top // align) * align
        self.top = addr + nbytes
        return addr

    def emit(self, *insns):
        self.program.extend(insns)

    def identity_params(self, group: int = 0, mult=1 << 30, shift=1):
        """Parameter group giving y = clamp(x) (docs/numerics.md: 2x * 0.5)."""
        C = self.cfg.cols
        rows = np.zeros((3, C), "<i4")
        rows[1] = mult
        rows[2] = shift
        addr = self.data(rows.tobytes())
        self.emit(isa.load(mem="param", sram=3 * group, dram=addr, y_size=3, x_size=1,
                           y_stride=4 * C, length=C))

    def case(self, name="case", window=None) -> Case:
        words = [i.encode() for i in self.program]
        base = self.reserve(16 * len(words))
        if base + 16 * len(words) > len(self.dram):
            raise ValueError("DRAM image too small")
        place_program(self.dram, base, words)
        return Case(self.cfg, self.dram, base, len(words), window=window, name=name)


def load_store_case(cfg: NPUConfig, seed: int, n_loads: int = 6) -> Case:
    """Random 2D, padded, unaligned LOADs into the accumulator, each stored back out."""
    rng = np.random.default_rng(seed)
    b = Builder(cfg, size=16384)
    src = b.data(rng.integers(0, 256, 3000, dtype=np.uint8))
    b.identity_params(0)
    row = 0
    for i in range(n_loads):
        pads = [int(v) for v in rng.integers(0, 3, 4)]
        ys, xs = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        ny, nx = pads[0] + ys + pads[1], pads[2] + xs + pads[3]
        if row + ny * nx > cfg.acc_depth:
            break
        length = int(rng.integers(1, cfg.cols + 1))
        b.emit(isa.load(mem="acc", sram=row, dram=src + int(rng.integers(0, 700)),
                        y_size=ys, x_size=xs, y_stride=int(rng.integers(0, 200)),
                        x_stride=int(rng.integers(0, 40)), length=length,
                        pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
                        pad_value=int(rng.integers(-128, 128)), push_next=1))
        b.emit(isa.sync(queue="compute", pop_prev=1, push_next=1))
        out = b.reserve(ny * nx * (cfg.cols + 3) + 5)
        b.emit(isa.store(acc=row, dram=out + int(rng.integers(0, 5)), rows=ny * nx,
                         stride=cfg.cols + int(rng.integers(0, 4)),
                         length=int(rng.integers(1, cfg.cols + 1)), param=0,
                         clamp_lo=-128, clamp_hi=127, pop_prev=1))
        row += ny * nx
    b.emit(isa.finish())
    return b.case(f"load_store{seed}")


def spad_gemm_case(cfg: NPUConfig, seed: int) -> Case:
    """Padded, strided LOADs into the scratchpad, through the array with identity weights."""
    rng = np.random.default_rng(seed)
    R, C = cfg.rows, cfg.cols
    b = Builder(cfg, size=16384)
    src = b.data(rng.integers(0, 256, 2000, dtype=np.uint8))
    eye = np.zeros((C, R), np.int8)
    for n in range(min(R, C)):
        eye[n, n] = 1
    w_addr = b.data(eye)
    b.identity_params(0)
    b.emit(isa.load(mem="spad", sram=0, dram=w_addr, y_size=C, x_size=1, y_stride=R, length=R))
    pads = [int(v) for v in rng.integers(0, 4, 4)]
    ys, xs = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    rows = (pads[0] + ys + pads[1]) * (pads[2] + xs + pads[3])
    b.emit(isa.load(mem="spad", sram=C, dram=src + int(rng.integers(0, 64)), y_size=ys, x_size=xs,
                    y_stride=int(rng.integers(0, 300)), x_stride=int(rng.integers(1, 50)),
                    length=int(rng.integers(1, R + 1)), pad_top=pads[0], pad_bottom=pads[1],
                    pad_left=pads[2], pad_right=pads[3], pad_value=int(rng.integers(-128, 128)),
                    push_next=1))
    b.emit(isa.gemm(wgt=0, inp=C, acc=0, m=rows, pop_prev=1, push_next=1))
    out = b.reserve(rows * C)
    b.emit(isa.store(acc=0, dram=out, rows=rows, stride=C, length=C, param=0, clamp_lo=-128,
                     clamp_hi=127, pop_prev=1))
    b.emit(isa.finish())
    return b.case(f"spad_gemm{seed}")


def alu_case(cfg: NPUConfig, seed: int, n_ops: int = 12) -> Case:
    """Every ALU op with rows and immediates, strides and reductions, then stored."""
    rng = np.random.default_rng(seed)
    C = cfg.cols
    b = Builder(cfg, size=16384)
    src = b.data(rng.integers(0, 256, 64 * C, dtype=np.uint8))
    b.identity_params(0)
    # A scaling group so that large int32 results still land in int8 informatively.
    params = np.zeros((3, C), "<i4")
    params[1] = rng.integers(1 << 30, 1 << 31, C)
    params[2] = rng.integers(-24, -8, C)
    p_addr = b.data(params.tobytes())
    b.emit(isa.load(mem="param", sram=3, dram=p_addr, y_size=3, x_size=1, y_stride=4 * C, length=C))
    b.emit(isa.load(mem="acc", sram=0, dram=src, y_size=48, x_size=1, y_stride=C, length=C,
                    push_next=1))
    b.emit(isa.sync(queue="compute", pop_prev=1))
    ops = list(isa.AluOp) + [isa.AluOp(int(v)) for v in rng.integers(0, len(isa.AluOp), n_ops)]
    for op in ops:
        use_imm = int(rng.integers(0, 2))
        imm = int(rng.integers(-40, 40)) if op in (isa.AluOp.SHR, isa.AluOp.SHL, isa.AluOp.RSHR) or rng.random() < .5 \
            else int(rng.integers(-2**31, 2**31))
        count = int(rng.integers(1, 8))
        dst_stride = int(rng.integers(0, 3))
        b.emit(isa.alu(op=op, use_imm=use_imm, imm=imm, dst=int(rng.integers(0, 24)),
                       src=int(rng.integers(0, 40)), count=count, dst_stride=dst_stride,
                       src_stride=int(rng.integers(0, 3))))
    b.emit(isa.sync(queue="compute", push_next=1))
    out = b.reserve(2 * 48 * C)
    b.emit(isa.store(acc=0, dram=out, rows=48, stride=C, length=C, param=1, clamp_lo=-128,
                     clamp_hi=127, pop_prev=1, push_prev=1))
    b.emit(isa.sync(queue="compute", pop_next=1, push_next=1))
    b.emit(isa.store(acc=0, dram=out + 48 * C, rows=48, stride=C, length=C, param=0,
                     clamp_lo=-128, clamp_hi=127, pop_prev=1))
    b.emit(isa.finish())
    return b.case(f"alu{seed}")


def random_program(cfg: NPUConfig, rng: np.random.Generator, n: int) -> list:
    """Valid instructions of every kind with random fields, no tokens, then FINISH.

    Data addresses stay below 4096 (loads below 2048 + their strides, stores
    below 3000 + theirs)."""
    r, c = cfg.rows, cfg.cols
    insns = []
    for _ in range(n):
        kind = rng.choice(["load", "load", "gemm", "gemm", "gemm", "alu", "store", "config"])
        if kind == "config":
            insns.append(isa.config(key="layer", value=int(rng.integers(0, 4))))
        elif kind == "load":
            mem = rng.choice([Mem.SPAD, Mem.SPAD, Mem.SPAD, Mem.ACC, Mem.PARAM])
            width, depth = {Mem.SPAD: (r, cfg.spad_depth), Mem.ACC: (c, cfg.acc_depth),
                            Mem.PARAM: (c, cfg.param_depth)}[mem]
            pads = [int(p) for p in rng.integers(0, 2, 4)]
            ys, xs = int(rng.integers(1, 5)), int(rng.integers(1, 4))
            rows = (pads[0] + ys + pads[1]) * (pads[2] + xs + pads[3])
            insns.append(isa.load(
                mem=mem, sram=int(rng.integers(0, depth - rows + 1)),
                dram=int(rng.integers(0, 2048)), y_size=ys, x_size=xs,
                y_stride=int(rng.integers(0, 200)), x_stride=int(rng.integers(0, 40)),
                length=int(rng.choice([width, width, rng.integers(1, width + 1)])),
                pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
                pad_value=int(rng.integers(-128, 128))))
        elif kind == "gemm":
            m = int(rng.integers(1, 9))
            insns.append(isa.gemm(
                wgt=int(rng.integers(0, cfg.spad_depth - c + 1)),
                inp=int(rng.integers(0, cfg.spad_depth - m + 1)),
                acc=int(rng.choice([0, 8, rng.integers(0, cfg.acc_depth - m + 1)])), m=m,
                accumulate=int(rng.random() < 0.7), keep_wgt=int(rng.random() < 0.3)))
        elif kind == "alu":
            count = int(rng.integers(1, 6))
            stride = int(rng.integers(0, 4))
            span = (count - 1) * max(stride, 1)
            insns.append(isa.alu(
                op=rng.choice(list(AluOp)), use_imm=int(rng.random() < 0.4),
                dst=int(rng.integers(0, cfg.acc_depth - span)), dst_stride=stride,
                src=int(rng.integers(0, cfg.acc_depth - span)), src_stride=stride,
                count=count, imm=int(rng.integers(-2**31, 2**31))))
        else:
            rows = int(rng.integers(1, 6))
            length = int(rng.integers(1, c + 1))
            lo = int(rng.integers(-128, 100))
            insns.append(isa.store(
                acc=int(rng.integers(0, cfg.acc_depth - rows + 1)),
                dram=int(rng.integers(0, 3000)), rows=rows,
                stride=int(rng.choice([length, rng.integers(0, 64)])), length=length,
                param=int(rng.integers(0, cfg.param_groups)), out_zp=int(rng.integers(-10, 10)),
                clamp_lo=lo, clamp_hi=int(rng.integers(lo, 128))))
    return insns + [isa.finish()]


def serialize(insns: list) -> list:
    """The same instructions made race-free: each waits, through dependency tokens,
    for the one before it to finish.

    Tokens pass between neighbouring queues only, so a LOAD and a STORE meet through
    a compute-queue SYNC; so do a GEMM and a following LOAD, because a GEMM hands its
    token to the load queue as soon as it has read the scratchpad, before its
    accumulator writes (which a LOAD into the accumulator would race)."""
    def queue(insn):
        return insn.queue.name.lower() if insn.queue is not None else None

    seq = []
    for insn in insns:
        if seq and queue(insn) is not None:
            prev = seq[-1]
            if ({queue(prev), queue(insn)} == {"load", "store"}
                    or (prev.opcode is isa.Opcode.GEMM and queue(insn) == "load")):
                seq.append(isa.sync(queue="compute"))
        seq.append(insn)
    flags = [dict() for _ in seq]
    direction = {("load", "compute"): ("push_next", "pop_prev"),
                 ("compute", "load"): ("push_prev", "pop_next"),
                 ("compute", "store"): ("push_next", "pop_prev"),
                 ("store", "compute"): ("push_prev", "pop_next")}
    for i in range(1, len(seq)):
        pair = (queue(seq[i - 1]), queue(seq[i]))
        if pair in direction:
            push, pop = direction[pair]
            flags[i - 1][push] = 1
            flags[i][pop] = 1
    return [insn.replace(**f) if f else insn for insn, f in zip(seq, flags)]


def fill_memories(cfg: NPUConfig, rng: np.random.Generator) -> list:
    """LOADs that write every row of the scratchpad, accumulator and parameter memory
    from DRAM below 4096: a program that starts with them reads nothing left over
    from an earlier program (the simulator's SRAMs keep their contents, as real ones do)."""
    insns = []
    for mem, depth, width in ((Mem.SPAD, cfg.spad_depth, cfg.rows),
                              (Mem.ACC, cfg.acc_depth, cfg.cols),
                              (Mem.PARAM, cfg.param_depth, cfg.cols)):
        for start in range(0, depth, 512):
            n = min(512, depth - start)
            xs = 8 if n % 8 == 0 else 1
            insns.append(isa.load(mem=mem, sram=start, dram=int(rng.integers(0, 1024)),
                                  y_size=n // xs, x_size=xs, y_stride=3 * xs + 1, x_stride=3,
                                  length=width))
    return insns


def fuzz_case(cfg: NPUConfig, seed: int, n: int = 120) -> Case:
    """A random race-free program over random DRAM: every instruction and field."""
    rng = np.random.default_rng(seed)
    b = Builder(cfg, size=32768)
    b.data(rng.integers(0, 256, 4096, dtype=np.uint8))
    body = fill_memories(cfg, rng) + random_program(cfg, rng, n)[:-1]
    # At the end, the whole accumulator through four parameter groups (bits 0-7,
    # 8-15, 16-23, 24-31, rounded and clamped), so that every GEMM and ALU result
    # that survives is compared, not only what the random STOREs wrote.
    c = cfg.cols
    params = np.zeros((12, c), "<i4")
    params[1::3] = 1 << 30
    params[2::3] = np.array([1, -7, -15, -23])[:, None]
    p_addr = b.data(params.tobytes())
    dump = b.reserve(4 * cfg.acc_depth * c)
    body.append(isa.load(mem="param", sram=0, dram=p_addr, y_size=12, x_size=1, y_stride=4 * c,
                         length=c))
    for g in range(4):
        body.append(isa.store(acc=0, dram=dump + g * cfg.acc_depth * c, rows=cfg.acc_depth,
                              stride=c, length=c, param=g, clamp_lo=-128, clamp_hi=127))
    b.emit(*serialize(body + [isa.finish()]))
    case = b.case(f"fuzz{seed}")
    case.extra["max_cycles"] = 400_000
    return case
