"""A hand-scheduled GEMM program, emitted as assembly text (a test and benchmark helper).

:func:`gemm_kernel` lowers ``Y = requant(A @ W.T + bias)`` (int8 A [M, K] with a
row stride, int8 W [N, K], per-channel int32 bias, multiplier and shift) to a
program: tiles of ``rows`` x ``cols``, activations and weights double-buffered
in the scratchpad, accumulator tiles double-buffered so that stores overlap
compute, all ordered by dependency tokens. It is the stimulus of the functional-model and RTL
tests (tests/sim/) and of the GEMM benchmarks (bench/utilization.py,
bench/rtl_speed.py); models go through the compiler (:mod:`sw.compiler`), whose
GEMM schedule generalizes this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import NPUConfig
from hw.isa import (PARAM_ELEM_BYTES, PARAM_GROUP_ROWS, Instruction, Opcode, assemble, field_max,
                    words_to_bytes)

from sw.compiler.memory import DramImage

__all__ = ["GemmKernel", "gemm_kernel"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class GemmKernel:
    """A GEMM program and where its tensors live in DRAM."""
    config: NPUConfig
    text: str                  #: the program as assembly
    insns: list[Instruction]   #: assembled
    dram: np.ndarray           #: the initial DRAM image (instructions included)
    insn_base: int
    a_addr: int
    w_addr: int
    param_addr: int
    y_addr: int
    shape: tuple[int, int, int]  #: M, K, N
    m_tile: int

    @property
    def insn_count(self) -> int:
        return len(self.insns)

    def read_output(self, dram: np.ndarray) -> np.ndarray:
        m, _, n = self.shape
        return dram[self.y_addr:self.y_addr + m * n].view(np.int8).reshape(m, n).copy()


def gemm_kernel(config: NPUConfig, a: np.ndarray, w: np.ndarray, bias: np.ndarray,
                mult: np.ndarray, shift: np.ndarray, *, out_zp: int = 0,
                clamp: tuple[int, int] = (-128, 127), a_stride: int | None = None,
                m_tile: int | None = None) -> GemmKernel:
    """Build the program and DRAM image for one requantized GEMM.

    ``a``: int8 [M, K]; ``w``: int8 [N, K]; ``bias``, ``mult``, ``shift``: int32 [N].
    ``a_stride``: DRAM bytes between rows of A (default K; larger leaves gaps).
    ``m_tile``: accumulator rows per tile (default: the largest that fits).
    """
    a = np.asarray(a)
    w = np.asarray(w)
    if a.dtype != np.int8 or w.dtype != np.int8 or a.ndim != 2 or w.ndim != 2:
        raise ValueError("gemm_kernel: a and w must be 2-D int8 arrays")
    m, k = a.shape
    n, k2 = w.shape
    if k != k2:
        raise ValueError(f"gemm_kernel: a is [{m}, {k}] but w is [{n}, {k2}]; K must agree")
    for name, vec in (("bias", bias), ("mult", mult), ("shift", shift)):
        if np.asarray(vec).shape != (n,):
            raise ValueError(f"gemm_kernel: {name} must have shape ({n},)")
    R, C = config.rows, config.cols
    kt, nt = _ceil_div(k, R), _ceil_div(n, C)
    if nt > config.param_groups:
        raise ValueError(f"gemm_kernel: N={n} needs {nt} parameter groups; the config has "
                         f"{config.param_groups}")
    a_stride = k if a_stride is None else a_stride
    if a_stride < k:
        raise ValueError(f"gemm_kernel: a_stride={a_stride} is below K={k}")
    # Scratchpad: two activation slots of kt*mt rows, two weight slots of C rows.
    max_mt = min((config.spad_depth - 2 * C) // (2 * kt), config.acc_depth // 2,
                 field_max(Opcode.LOAD, "y_size"))
    if max_mt < 1:
        raise ValueError(f"gemm_kernel: K={k} does not fit the scratchpad of {config.spad_depth} rows")
    if m_tile is None:
        # Balanced blocks: 512 rows with at most 63 per block is 9 blocks of 57, not 8x63 + 8.
        mt = -(-m // -(-m // max_mt))
    else:
        mt = m_tile
    if not 1 <= mt <= max_mt:
        raise ValueError(f"gemm_kernel: m_tile={m_tile} must be 1 to {max_mt}")
    mb_count = _ceil_div(m, mt)
    a_slot = [0, kt * mt]
    w_slot = [2 * kt * mt, 2 * kt * mt + C]
    acc_slot = [0, mt]

    img = DramImage()
    a_rows = np.zeros((m, a_stride), dtype=np.int8)
    a_rows[:, :k] = a
    a_addr = img.alloc(m * a_stride, a_rows.tobytes())
    w_addr = img.alloc(n * k, w.astype(np.int8).tobytes())
    params = np.zeros((nt, PARAM_GROUP_ROWS, C), dtype="<i4")
    for j in range(nt):
        sl = slice(j * C, min(n, (j + 1) * C))
        cnt = sl.stop - sl.start
        params[j, 0, :cnt] = np.asarray(bias)[sl]
        params[j, 1, :cnt] = np.asarray(mult)[sl]
        params[j, 2, :cnt] = np.asarray(shift)[sl]
    param_addr = img.alloc(params.nbytes, params.tobytes())
    y_addr = img.alloc(m * n)

    lines = [f"# GEMM {m}x{k}x{n} on {R}x{C}: m_tile={mt}, {kt} k-tiles, {nt} n-tiles"]
    # Parameters for every n-tile, loaded once.
    for j in range(nt):
        row_bytes = PARAM_ELEM_BYTES * C
        lines.append(f"LOAD mem=param sram={PARAM_GROUP_ROWS * j} "
                     f"dram={param_addr + j * PARAM_GROUP_ROWS * row_bytes} "
                     f"y_size={PARAM_GROUP_ROWS} x_size=1 y_stride={row_bytes} length={C}")
    lo, hi = clamp
    gemm_index = 0
    tile_index = 0
    for mb in range(mb_count):
        m0 = mb * mt
        rows = min(mt, m - m0)
        aslot = a_slot[mb % 2]
        for j in range(nt):
            accs = acc_slot[tile_index % 2]
            for kk in range(kt):
                k0 = kk * R
                klen = min(R, k - k0)
                wslot = w_slot[gemm_index % 2]
                pop = " +pop_next" if gemm_index >= 2 else ""
                if j == 0:
                    # The activation block of this m-block, one k-tile after another.
                    # Loaded with the first weight tile of the block, after the C2L token
                    # that frees both its weight slot and (two blocks back) its A slot.
                    first_pop = pop if kk == 0 else ""
                    lines.append(
                        f"LOAD{first_pop} mem=spad sram={aslot + kk * mt} "
                        f"dram={a_addr + m0 * a_stride + k0} y_size={rows} x_size=1 "
                        f"y_stride={a_stride} length={klen}")
                    pop = "" if kk == 0 else pop
                nrows = min(C, n - j * C)
                lines.append(
                    f"LOAD{pop} +push_next mem=spad sram={wslot} dram={w_addr + j * C * k + k0} "
                    f"y_size={nrows} x_size=1 y_stride={k} length={klen}")
                deps = " +pop_prev +push_prev"
                if kk == 0 and tile_index >= 2:
                    deps += " +pop_next"
                last = kk == kt - 1
                if last:
                    deps += " +push_next"
                lines.append(
                    f"GEMM{deps} wgt={wslot} inp={aslot + kk * mt} acc={accs} m={rows} "
                    f"accumulate={0 if kk == 0 else 1}")
                gemm_index += 1
            lines.append(
                f"STORE +pop_prev +push_prev acc={accs} dram={y_addr + m0 * n + j * C} "
                f"rows={rows} stride={n} length={min(C, n - j * C)} param={j} "
                f"out_zp={out_zp} clamp_lo={lo} clamp_hi={hi}")
            tile_index += 1
    lines.append("FINISH")
    text = "\n".join(lines) + "\n"
    insns = assemble(text)
    blob = words_to_bytes(i.encode() for i in insns)
    insn_base = img.alloc(len(blob), blob)
    return GemmKernel(config=config, text=text, insns=insns, dram=img.to_array(),
                      insn_base=insn_base, a_addr=a_addr, w_addr=w_addr, param_addr=param_addr,
                      y_addr=y_addr, shape=(m, k, n), m_tile=mt)
