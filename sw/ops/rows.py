"""Row programs: integer algorithms over the feature rows of a token tensor, written once
and run two ways, by the golden (PyTorch int64 tensors with the ALU's int32 semantics) and
by the lowering (ALU instructions on accumulator rows), so the two cannot disagree.

A program works on registers. A *wide* register holds a row of the layer's features for
each token (in the accumulator: one set of rows per block of ``cols`` features); a
*narrow* one holds one value per token (in the accumulator: one set of rows, the value in
every lane, as the reductions ``RSUM`` and ``RMAX`` leave it). Each :class:`Step` is one
:class:`hw.isa.AluOp` with a register or an immediate as its second operand; a reduction
reads a wide register into a narrow one. Lanes past the features (the last block of a
layer whose features are not a multiple of ``cols``) are loaded with the input's
``x_pad`` and the mask's ``mask_pad`` (a constant from DRAM), which the program uses to
keep them out of its reductions; the golden has no such lanes.

Softmax (:mod:`sw.ops.softmax`) and LayerNorm (:mod:`sw.ops.layernorm`) are row programs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hw import isa

from ..golden import wrap_int32

__all__ = ["Step", "RowProgram", "run_rows", "lower_rows", "mask_bytes"]

_REDUCE = {"rsum": "add", "rmax": "max"}


@dataclass(frozen=True)
class Step:
    """``dst = op(dst, src or imm)``; ``masked``: needed only where the layer has a mask (on
    the lanes of real features with nothing masked it changes nothing: softmax's mask is 0
    there, LayerNorm's 1; so layers without a mask, and the golden of those, leave it out)."""
    op: str
    dst: str
    src: str | None = None
    imm: int | None = None
    masked: bool = False


@dataclass(frozen=True)
class RowProgram:
    """The steps, the wide registers (the first is the input, the second the mask), the
    narrow ones, the lanes' fill of the input and of the mask past the features, and the
    register stored."""
    steps: tuple[Step, ...]
    wide: tuple[str, ...]
    narrow: tuple[str, ...]
    x_pad: int
    mask_pad: int
    out: str

    def active(self, masked: bool) -> list[Step]:
        return [s for s in self.steps if masked or not s.masked]


def _clz(v: torch.Tensor) -> torch.Tensor:
    u = v & 0xFFFFFFFF
    n = torch.full_like(u, 32)
    for i in range(32):
        n = torch.where(((u >> i) & 1) == 1, torch.full_like(u, 31 - i), n)
    return n


def _apply(op: str, d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """One ALU lane operation on int64 tensors holding int32 values (docs/isa.md)."""
    sh = s & 31
    if op == "mov":
        return s.expand_as(d).clone()
    if op in ("add", "sub", "mul", "shl"):
        v = {"add": lambda: d + s, "sub": lambda: d - s, "mul": lambda: d * s,
             "shl": lambda: wrap_int32(d) << sh}[op]()
        return wrap_int32(v)
    if op == "max":
        return torch.maximum(d, s)
    if op == "min":
        return torch.minimum(d, s)
    if op == "shr":
        return d >> sh
    if op == "rshr":
        return (d >> sh) + ((d >> (sh - 1).clamp(min=0)) & 1) * (sh > 0)
    if op == "mulh":
        return (d * s) >> 32
    if op == "clz":
        return _clz(s).expand_as(d).clone()
    raise ValueError(f"row program: no ALU operation {op!r}")


def run_rows(prog: RowProgram, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The golden: ``prog`` on int input ``x`` ([..., F]) with ``mask`` (broadcastable to
    ``x``; None: zero, and the masked steps left out). Returns the output register (int64)."""
    x = x.to(torch.int64)
    lead = x.shape[:-1]
    regs = {name: torch.zeros_like(x) for name in prog.wide}
    regs.update({name: torch.zeros(*lead, 1, dtype=torch.int64) for name in prog.narrow})
    regs[prog.wide[0]] = x.clone()
    if mask is not None:
        regs[prog.wide[1]] = mask.to(torch.int64).expand_as(x).clone()
    for step in prog.active(mask is not None):
        if step.op in _REDUCE:
            src = regs[step.src]
            regs[step.dst] = (wrap_int32(src.sum(-1, keepdim=True)) if step.op == "rsum"
                              else src.amax(-1, keepdim=True))
            continue
        s = regs[step.src] if step.src is not None else torch.tensor(step.imm, dtype=torch.int64)
        regs[step.dst] = _apply(step.op, regs[step.dst], s)
    return regs[prog.out]


def lower_rows(c, node, layer_id: int, prog: RowProgram, src, out, *, mask_addr: int | None,
               mask_stride: int, params: list, group_of_block, out_zp: int) -> None:
    """Emit ``prog`` over the token tensor ``src`` ([T, F] per sample, T rows of F bytes) to
    ``out``: chunks of tokens, each loaded block by block (and the mask from ``mask_addr``,
    a [T or 1, F] byte constant ``mask_stride`` bytes a row, when not None), the steps,
    and a STORE per block through parameter group ``group_of_block(b)`` (``params``: their
    LOADs) with ``out_zp``."""
    c.check(src.flat, node, f"operand {src.name} {list(src.shape)} is a channel-last image "
                            f"(a model input of [batch, C, H, W]); this operator works on rows "
                            f"of the last dimension of a token-shaped or flat tensor")
    F, T, _ = src.geometry
    C = c.C
    nb = -(-F // C)
    per_token = len(prog.wide) * nb + len(prog.narrow)
    n_max = min(c.cfg.acc_depth // per_token, c.MAX_VECTORS)
    c.check(n_max >= 1, node, f"{F} features need {per_token} accumulator rows a token, the "
                              f"configuration has {c.cfg.acc_depth}")
    steps = prog.active(mask_addr is not None)
    first = True
    for t0 in range(0, T, n_max):
        n = min(n_max, T - t0)
        base = {}
        for i, name in enumerate(prog.wide):
            base[name] = [(i * nb + b) * n for b in range(nb)]
        for j, name in enumerate(prog.narrow):
            base[name] = [(len(prog.wide) * nb + j) * n]
        loads = []
        for b in range(nb):
            length = min(C, F - b * C)
            loads.append(c.acc_load(base[prog.wide[0]][b], src.addr + t0 * F + b * C, n, F, 1, 0,
                                    length, pad_value=prog.x_pad))
            if mask_addr is not None:
                loads.append(c.acc_load(base[prog.wide[1]][b], mask_addr + t0 * mask_stride + b * C,
                                        n, mask_stride, 1, 0, length, pad_value=prog.mask_pad))
        alus = []
        for step in steps:
            alus.extend(_emit(step, base, n))
        stores = []
        for b in range(nb):
            length = min(C, F - b * C)
            stores.append(isa.store(acc=base[prog.out][b], dram=out.addr + t0 * F + b * C, rows=n,
                                    stride=F, length=length, param=group_of_block(b),
                                    out_zp=out_zp, clamp_lo=-128, clamp_hi=127))
        c.chunk(layer_id, first, loads, params, alus, stores)
        first = False


def _emit(step: Step, base: dict, n: int) -> list[isa.Instruction]:
    """The ALU instructions of one step over ``n`` tokens."""
    def alu(op, dst, src=None):
        if src is None:
            return isa.alu(op=op, use_imm=1, imm=step.imm, dst=dst, count=n, dst_stride=1)
        return isa.alu(op=op, dst=dst, src=src, count=n, dst_stride=1, src_stride=1)

    if step.op in _REDUCE:
        (dst,), srcs = base[step.dst], base[step.src]
        if len(srcs) == 1:
            return [alu(step.op, dst, srcs[0])]
        return ([alu("mov", dst, srcs[0])] + [alu(_REDUCE[step.op], dst, s) for s in srcs[1:]]
                + [alu(step.op, dst, dst)])
    dsts = base[step.dst]
    if step.src is None:
        return [alu(step.op, d) for d in dsts]
    srcs = base[step.src]
    if len(srcs) == 1:
        srcs = srcs * len(dsts)                       # a narrow operand serves every block
    if len(srcs) != len(dsts):
        raise ValueError(f"row program: {step.op} of wide {step.src} into narrow {step.dst}")
    return [alu(step.op, d, s) for d, s in zip(dsts, srcs)]


def mask_bytes(mask: np.ndarray) -> bytes:
    """A 0/1 mask as the int8 bytes of a DRAM constant."""
    return np.asarray(mask, dtype=np.int8).tobytes()
