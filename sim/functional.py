"""The functional model: the executable specification of the NPU ISA.

It runs a program (instruction words in DRAM, plus the data) bit-exactly as the
hardware must, with the same decoupled load / compute / store queues and
dependency tokens, the same error codes and the same counts. It is written in
numpy, independently of the PyTorch golden in ``sw.golden``, so that each checks
the other.

Timing is not modelled: among the instructions whose tokens are available, the
order of execution does not change the result of a correctly synchronised
program. A program whose tokens can never be satisfied is reported as a
deadlock, naming the oldest blocked instruction.

This module reads alone: it interprets one instruction at a time and knows
nothing of execution plans. :class:`sim.plan.PlannedModel` wraps it to replay a
whole program from a plan worked out on its first run (the ``func`` backend uses
that); the interpreter here is the reference the plans are tested against.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from hw.config import NPUConfig, require_config
from hw.isa import (table_rows, DEP_FLAGS, DRAM_ELEM_BYTES, INSN_BYTES, PARAM_ELEM_BYTES, PARAM_GROUP_ROWS,
                    TOKEN_POPS, TOKEN_PUSHES, AluOp, CfgKey, ErrorCode, Instruction, ISAError, Mem,
                    Opcode, Queue, TokenQueue, allowed_deps, decode, load_extent, load_grid,
                    store_extent, words_to_bytes)

__all__ = ["NPUError", "Counts", "FunctionalModel", "check_instruction", "requantize_np",
           "alu_rows", "place_program", "instruction_cost"]

_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


class NPUError(RuntimeError):
    """The NPU stopped in the error state.

    Attributes: ``code`` (:class:`ErrorCode`), ``index`` (the failing
    instruction's index in the program), ``detail`` (what was wrong).
    """

    def __init__(self, code: ErrorCode, index: int, detail: str) -> None:
        super().__init__(f"{code.name} at instruction {index}: {detail}")
        self.code = code
        self.index = index
        self.detail = detail


@dataclass
class Counts:
    """What a program did, as the hardware's performance counters see it."""
    macs: int = 0                    #: MAC slots used: m * rows * cols per GEMM
    insns: dict[str, int] = field(default_factory=lambda: {op.name: 0 for op in Opcode})
    dram_read_bytes: int = 0         #: data bytes read by LOAD (padding excluded)
    dram_write_bytes: int = 0        #: bytes written by STORE
    insn_read_bytes: int = 0         #: bytes of instructions fetched
    per_layer: dict[int, "Counts"] = field(default_factory=dict)

    def add(self, other: "Counts") -> None:
        self.macs += other.macs
        for k, v in other.insns.items():
            self.insns[k] = self.insns.get(k, 0) + v
        self.dram_read_bytes += other.dram_read_bytes
        self.dram_write_bytes += other.dram_write_bytes
        self.insn_read_bytes += other.insn_read_bytes

    def as_dict(self) -> dict:
        return {
            "macs": self.macs, "insns": dict(self.insns),
            "dram_read_bytes": self.dram_read_bytes, "dram_write_bytes": self.dram_write_bytes,
            "insn_read_bytes": self.insn_read_bytes,
        }


def _wrap32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64, copy=False)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def requantize_np(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                  out_zp: int, lo: int, hi: int) -> np.ndarray:
    """The store path in numpy (int32 in, int8 out); see docs/numerics.md.

    ``bias``, ``mult`` and ``shift`` are per column. The steps are TFLite's,
    each folded into its closed form (tests/sim/test_functional.py checks them
    against the golden's step-by-step definition):
    SaturatingRoundingDoublingHighMul(x, m) = (x*m + 2**30) >> 31, except
    x = m = -2**31, which saturates; RoundingDivideByPOT(q, e) =
    (q + 2**(e-1) - [q < 0 and e > 0]) >> e.
    """
    # int32 arrays wrap on overflow, like the hardware's adder.
    x = (np.asarray(acc, dtype=np.int32) + np.asarray(bias, dtype=np.int32)).astype(np.int64)
    sh = np.clip(np.asarray(shift, dtype=np.int64), -31, 30)
    left = np.maximum(sh, 0)
    right = np.maximum(-sh, 0)
    if left.any():
        x = _wrap32(np.left_shift(x, left))
    m = np.asarray(mult, dtype=np.int64)
    q = x * m
    q += 1 << 30
    q >>= 31
    if (m == _I32_MIN).any():
        q = np.where((x == _I32_MIN) & (m == _I32_MIN), _I32_MAX, q)
    if right.any():
        neg = q < 0
        if not right.all():
            neg &= right > 0
        q += (np.int64(1) << right) >> 1
        q -= neg
        q >>= right
    q += out_zp
    return np.minimum(np.maximum(q, lo), hi).astype(np.int8)


def _alu(op: AluOp, d: np.ndarray, s: np.ndarray | np.int32) -> np.ndarray:
    """One ALU operation on int32 rows; int32 numpy arithmetic wraps like the hardware."""
    if op is AluOp.MOV:
        return np.broadcast_to(s, d.shape).astype(np.int32)
    if op is AluOp.ADD:
        return d + s
    if op is AluOp.SUB:
        return d - s
    if op is AluOp.MUL:
        return d * s              # the low 32 bits
    if op is AluOp.MAX:
        return np.maximum(d, s)
    if op is AluOp.MIN:
        return np.minimum(d, s)
    if op is AluOp.RSUM:
        s = np.broadcast_to(s, d.shape).astype(np.int64)
        return np.broadcast_to(_wrap32(s.sum(axis=-1, keepdims=True)), d.shape).astype(np.int32)
    if op is AluOp.RMAX:
        s = np.broadcast_to(s, d.shape)
        return np.broadcast_to(s.max(axis=-1, keepdims=True), d.shape).astype(np.int32)
    if op is AluOp.CLZ:
        u = np.broadcast_to(s, d.shape).astype(np.int64) & 0xFFFFFFFF
        # frexp's exponent is the bit length (exact: u < 2**32 is a float64 integer).
        return (32 - np.frexp(u.astype(np.float64))[1]).astype(np.int32)
    if op is AluOp.MULH:
        return ((d.astype(np.int64) * np.asarray(s, dtype=np.int64)) >> 32).astype(np.int32)
    sh = np.asarray(s, dtype=np.int64) & 31
    if op is AluOp.SHR:
        return (d.astype(np.int64) >> sh).astype(np.int32)
    if op is AluOp.RSHR:
        d = d.astype(np.int64)
        return ((d >> sh) + ((d >> np.maximum(sh - 1, 0)) & (sh > 0))).astype(np.int32)
    return _wrap32(d.astype(np.int64) << sh).astype(np.int32)   # SHL


#: (queue, the four dependency flags) -> the token queues popped and pushed, as values.
_TOKENS: dict[tuple, tuple[tuple[int, ...], tuple[int, ...]]] = {}

#: queue (None: FINISH) -> the dependency flags allowed in it.
_ALLOWED_DEPS = {queue: frozenset(allowed_deps(queue)) for queue in (None, *Queue)}


def check_instruction(insn: Instruction, config: NPUConfig) -> str | None:
    """Range checks done at dispatch; returns what is wrong, or ``None``."""
    queue = insn.queue
    allowed = _ALLOWED_DEPS[queue]
    f = insn.fields
    for flag in DEP_FLAGS:
        if f[flag] and flag not in allowed:
            where = queue.name if queue is not None else insn.opcode.name
            return f"dependency flag {flag} is not allowed in the {where} queue"
    op = insn.opcode
    if op is Opcode.LOAD:
        width, depth = {
            Mem.SPAD: (config.rows, config.spad_depth),
            Mem.ACC: (config.cols, config.acc_depth),
            Mem.PARAM: (config.cols, config.param_depth),
        }[f["mem"]]
        if f["y_size"] < 1 or f["x_size"] < 1:
            return f"y_size={insn.y_size}, x_size={insn.x_size}: both must be at least 1"
        if not 1 <= f["length"] <= width:
            return f"length={insn.length} must be 1 to {width} ({insn.mem.name} row width)"
        ny, nx = load_grid(insn)
        total = ny * nx
        if f["sram"] + total > depth:
            return (f"rows {insn.sram}..{insn.sram + total - 1} are past the {insn.mem.name} "
                    f"depth {depth}")
    elif op is Opcode.STORE:
        if f["rows"] < 1:
            return "rows must be at least 1"
        if not 1 <= f["length"] <= config.cols:
            return f"length={insn.length} must be 1 to {config.cols}"
        if f["acc"] + f["rows"] > config.acc_depth:
            return (f"accumulator rows {insn.acc}..{insn.acc + insn.rows - 1} are past the "
                    f"depth {config.acc_depth}")
        if f["param"] >= config.param_groups:
            return f"param={insn.param} is past the {config.param_groups} parameter groups"
        if f["lut"]:
            end = PARAM_GROUP_ROWS * (f["param"] + 1) + table_rows(config.cols)
            if end > config.param_depth:
                return (f"the activation table of param={insn.param} (parameter rows "
                        f"{PARAM_GROUP_ROWS * (insn.param + 1)}..{end - 1}) is past the "
                        f"parameter depth {config.param_depth}")
        if f["clamp_lo"] > f["clamp_hi"]:
            return f"clamp_lo={insn.clamp_lo} is above clamp_hi={insn.clamp_hi}"
    elif op is Opcode.GEMM:
        if f["m"] < 1:
            return "m must be at least 1"
        if f["inp"] + f["m"] > config.spad_depth:
            return f"input rows {insn.inp}..{insn.inp + insn.m - 1} are past the scratchpad"
        if f["acc"] + f["m"] > config.acc_depth:
            return f"accumulator rows {insn.acc}..{insn.acc + insn.m - 1} are past the depth"
        if not f["keep_wgt"] and f["wgt"] + config.cols > config.spad_depth:
            return f"weight rows {insn.wgt}..{insn.wgt + config.cols - 1} are past the scratchpad"
    elif op is Opcode.ALU:
        if f["count"] < 1:
            return "count must be at least 1"
        last_dst = f["dst"] + (f["count"] - 1) * f["dst_stride"]
        if last_dst >= config.acc_depth:
            return f"destination row {last_dst} is past the accumulator depth {config.acc_depth}"
        if not f["use_imm"]:
            last_src = f["src"] + (f["count"] - 1) * f["src_stride"]
            if last_src >= config.acc_depth:
                return f"source row {last_src} is past the accumulator depth {config.acc_depth}"
    return None


class FunctionalModel:
    """Bit-exact executable model of one NPU instance.

    Memories are numpy arrays (``spad`` int8 [spad_depth, rows], ``acc`` int32
    [acc_depth, cols], ``param`` int32 [param_depth, cols], ``weights`` int8
    [cols, rows], the tile held by the array), readable and writable by tests.
    Memories persist between runs, as the hardware's SRAMs do; :meth:`reset`
    clears them.

    The pieces a program runs through are public, so that a wrapper (the planner
    of :mod:`sim.plan`) can drive the same code: :meth:`begin` (what START does),
    :meth:`schedule` (fetch, check, dispatch, tokens), :meth:`check_window`, the
    instruction semantics :meth:`load`, :meth:`store`, :meth:`gemm`, :meth:`alu`,
    and :meth:`set_weights`.
    """

    def __init__(self, config: NPUConfig) -> None:
        self.config = require_config(config)
        self._decoded: dict[int, tuple] = {}   # word -> (instruction, checks, queues, cost)
        self.reset()

    def reset(self) -> None:
        c = self.config
        self.spad = np.zeros((c.spad_depth, c.rows), dtype=np.int8)
        self.acc = np.zeros((c.acc_depth, c.cols), dtype=np.int32)
        self.param = np.zeros((c.param_depth, c.cols), dtype=np.int32)
        self.set_weights(np.zeros((c.cols, c.rows), dtype=np.int8))
        self.layer = 0

    # The program loop ----------------------------------------------------------------------

    def run(self, dram: np.ndarray, insn_base: int, insn_count: int,
            window: tuple[int, int] | None = None) -> Counts:
        """Run ``insn_count`` instructions fetched from ``dram`` at byte ``insn_base``.

        ``dram`` (a writable uint8 array, byte address = index) is read and
        written in place. ``window`` is the DMA window ``(base, limit)``; by
        default all of ``dram``. Raises :class:`NPUError` when the NPU would stop
        in the error state; otherwise returns the :class:`Counts`.

        Raises :class:`TypeError` for a ``dram`` that is not a 1-D uint8 array and
        :class:`ValueError` for a window outside it or a negative count.
        """
        lo, hi = self.check_args(dram, insn_base, insn_count, window)
        return self.interpret(dram, insn_base, insn_count, (lo, hi))

    def check_args(self, dram: np.ndarray, insn_base: int, insn_count: int,
                   window: tuple[int, int] | None) -> tuple[int, int]:
        """Validate the arguments of :meth:`run`; returns the DMA window."""
        if not isinstance(dram, np.ndarray) or dram.dtype != np.uint8 or dram.ndim != 1:
            raise TypeError("dram must be a 1-D numpy uint8 array")
        if window is None:
            window = (0, len(dram))
        lo, hi = window
        if not 0 <= lo <= hi <= len(dram):
            raise ValueError(f"DMA window [{lo:#x}, {hi:#x}) is not inside the DRAM of "
                             f"{len(dram):#x} bytes")
        if insn_count < 0:
            raise ValueError(f"insn_count must be >= 0, got {insn_count}")
        return lo, hi

    def interpret(self, dram: np.ndarray, insn_base: int, insn_count: int,
                  window: tuple[int, int]) -> Counts:
        """Run a program one instruction at a time (the reference for the plans)."""
        self.begin(dram, window)
        return self.schedule(dram, insn_base, insn_count, self._execute)

    def begin(self, dram: np.ndarray, window: tuple[int, int]) -> None:
        """What START does: the instructions that follow read and write ``dram``
        within ``window``; the array's weight registers and the layer register clear."""
        self.set_weights(np.zeros_like(self.weights))
        self._dram = dram
        self._lo, self._hi = window
        self.layer = 0

    def set_weights(self, weights: np.ndarray) -> None:
        """Put a weight tile (int8 [cols, rows]) into the array."""
        self.weights = weights.astype(np.int8, copy=False)
        self._weights_t = self.weights.astype(np.float64).T

    def schedule(self, dram: np.ndarray, insn_base: int, insn_count: int,
                 execute: Callable[[int, Instruction], None],
                 words: list[int] | None = None) -> Counts:
        """Fetch, check and dispatch a program; ``execute(index, insn)`` runs each
        instruction whose tokens are available. Returns the counts.

        Everything this loop decides (the order of execution, every check,
        every count) depends on the instruction words alone, which is what
        lets :mod:`sim.plan` work it out once per program. ``words``: the
        program's words, read beforehand by a caller whose ``execute`` never
        writes them (the planner); by default each is read from ``dram`` when it
        is fetched, as the hardware does (a STORE may write a later instruction).
        """
        lo, hi = self._lo, self._hi
        counts = Counts()
        # The (layer, word) of every instruction executed, counted at the end (in this
        # order, which is that of the layers' first instructions).
        ran: list[tuple[int, int]] = []
        decoded = self._decoded
        cfg = self.config
        fifos = [deque() for _ in Queue]          # indexed by Queue value
        tokens = [0] * len(TokenQueue)            # indexed by TokenQueue value
        depth = cfg.insn_queue_depth
        tok_depth = cfg.token_queue_depth
        if insn_base % INSN_BYTES:
            raise NPUError(ErrorCode.FIELD_RANGE, 0,
                           f"instruction base {insn_base:#x} is not {INSN_BYTES}-byte aligned")
        last_fetch = hi - INSN_BYTES                # the last address a fetch may start at
        pc = 0
        finished = False
        while True:
            progress = False
            # Dispatch, in program order, while the target queue has room.
            while not finished and pc < insn_count:
                addr = insn_base + pc * INSN_BYTES
                if not lo <= addr <= last_fetch:
                    raise NPUError(ErrorCode.DMA_WINDOW, pc,
                                   f"instruction fetch at {addr:#x} is outside the DMA window "
                                   f"[{lo:#x}, {hi:#x})")
                if words is None:
                    word = int.from_bytes(dram[addr:addr + INSN_BYTES].tobytes(), "little")
                else:
                    word = words[pc]
                cached = decoded.get(word)
                if cached is None:
                    cached = self._decode(word, pc)
                insn, problem, queue, pops, pushes, cost = cached
                if problem:
                    raise NPUError(ErrorCode.FIELD_RANGE, pc, f"{insn.opcode.name}: {problem}")
                if queue is None:   # FINISH
                    counts.insns["FINISH"] += 1
                    finished = True
                    pc += 1
                    progress = True
                    break
                if len(fifos[queue]) >= depth:
                    break
                if insn.opcode is Opcode.CONFIG and insn.key is CfgKey.LAYER:
                    self.layer = insn.value
                fifos[queue].append((pc, insn, pops, pushes, (self.layer, word)))
                pc += 1
                progress = True
            # Execute the head of each queue whose tokens are available.
            for fifo in fifos:
                while fifo:
                    index, insn, pops, pushes, key = fifo[0]
                    if pops and not all(map(tokens.__getitem__, pops)):
                        break
                    if pushes and max(map(tokens.__getitem__, pushes)) >= tok_depth:
                        break
                    for t in pops:
                        tokens[t] -= 1
                    execute(index, insn)
                    ran.append(key)
                    for t in pushes:
                        tokens[t] += 1
                    fifo.popleft()
                    progress = True
            if (finished or pc >= insn_count) and not any(fifos):
                counts.insn_read_bytes += INSN_BYTES * pc      # every instruction fetched
                for (layer, word), times in Counter(ran).items():
                    entry = decoded.get(word) or self._decode(word, 0)
                    _count(counts, layer, entry[0].opcode.name, entry[5], times)
                return counts
            if not progress:
                blocked = min(f[0][0] for f in fifos if f)
                waiting = ", ".join(
                    f"{Queue(q).name.lower()} queue at instruction {f[0][0]}"
                    for q, f in enumerate(fifos) if f)
                raise NPUError(ErrorCode.DEADLOCK, blocked,
                               f"no queue can proceed ({waiting}); tokens "
                               + ", ".join(f"{t.name}={tokens[t.value]}" for t in TokenQueue))

    def _decode(self, word: int, pc: int) -> tuple:
        """Decode and check a word once; the dispatch loop reuses the result."""
        try:
            insn = decode(word)
        except ISAError as exc:
            raise NPUError(ErrorCode.ILLEGAL_OPCODE, pc, str(exc)) from None
        problem = check_instruction(insn, self.config)
        queue = insn.queue
        if queue is None:
            entry = (insn, problem, None, (), (), (0, 0, 0))
        else:
            f = insn.fields
            deps = (queue, f["pop_prev"], f["pop_next"], f["push_prev"], f["push_next"])
            tokens = _TOKENS.get(deps)
            if tokens is None:
                tokens = _TOKENS[deps] = (
                    tuple(t.value for flag, t in TOKEN_POPS[queue].items() if f[flag]),
                    tuple(t.value for flag, t in TOKEN_PUSHES[queue].items() if f[flag]))
            entry = (insn, problem, queue.value, *tokens, instruction_cost(insn, self.config))
        if len(self._decoded) < 1 << 20:
            self._decoded[word] = entry
        return entry

    # Instructions ---------------------------------------------------------------------------

    def check_window(self, index: int, first: int, end: int, what: str) -> None:
        """Raise the DMA_WINDOW error unless ``[first, end)`` is inside the window."""
        if first < self._lo or end > self._hi:
            raise NPUError(ErrorCode.DMA_WINDOW, index,
                           f"{what} touches [{first:#x}, {end:#x}), outside the DMA window "
                           f"[{self._lo:#x}, {self._hi:#x})")

    def _execute(self, index: int, insn: Instruction) -> None:
        op = insn.opcode
        if op is Opcode.LOAD:
            self.load(index, insn)
        elif op is Opcode.STORE:
            self.store(index, insn)
        elif op is Opcode.GEMM:
            self.gemm(insn)
        elif op is Opcode.ALU:
            self.alu(insn)
        # CONFIG, SYNC: state already taken at dispatch / tokens only

    def load(self, index: int, insn: Instruction) -> None:
        """Execute a LOAD on the current DRAM and memories."""
        f = insn.fields
        mem = {Mem.SPAD: self.spad, Mem.ACC: self.acc, Mem.PARAM: self.param}[f["mem"]]
        esize = DRAM_ELEM_BYTES[f["mem"]]
        ny, nx = load_grid(insn)
        nbytes = f["length"] * esize
        self.check_window(index, *load_extent(insn), "LOAD")
        if f["x_size"] == 1 and f["y_stride"] == nbytes:
            # Contiguous rows (weight tiles, parameters): a plain slice.
            start = f["dram"]
            raw = self._dram[start:start + f["y_size"] * nbytes].reshape(f["y_size"], 1, nbytes)
        else:
            # A strided view of DRAM: [y, x, nbytes] without an index array (strides >= 0).
            raw = np.lib.stride_tricks.as_strided(
                self._dram[f["dram"]:], shape=(f["y_size"], f["x_size"], nbytes),
                strides=(f["y_stride"], f["x_stride"], 1), writeable=False)
        if esize == PARAM_ELEM_BYTES:
            vals = np.ascontiguousarray(raw).reshape(
                f["y_size"], f["x_size"], f["length"], esize).view("<i4")[..., 0]
        else:
            vals = raw.view(np.int8)
        width = mem.shape[1]
        if ny == f["y_size"] and nx == f["x_size"] and f["length"] == width:
            # No padding at all: straight copy.
            mem[f["sram"]:f["sram"] + ny * nx] = vals.reshape(ny * nx, width)
        else:
            block = np.full((ny, nx, width), f["pad_value"], dtype=mem.dtype)
            block[f["pad_top"]:f["pad_top"] + f["y_size"],
                  f["pad_left"]:f["pad_left"] + f["x_size"], :f["length"]] = vals
            mem[f["sram"]:f["sram"] + ny * nx] = block.reshape(ny * nx, width)

    def store(self, index: int, insn: Instruction) -> None:
        """Execute a STORE: requantize accumulator rows into DRAM."""
        n = insn.length
        first, end = store_extent(insn)
        self.check_window(index, first, end, "STORE")
        g = PARAM_GROUP_ROWS * insn.param
        out = requantize_np(self.acc[insn.acc:insn.acc + insn.rows, :n], self.param[g, :n],
                            self.param[g + 1, :n], self.param[g + 2, :n],
                            insn.out_zp, insn.clamp_lo, insn.clamp_hi)
        if insn.lut:
            t0 = g + PARAM_GROUP_ROWS
            table = self.param[t0:t0 + table_rows(self.config.cols)].reshape(-1).view(np.int8)
            out = table[out.astype(np.int64) + 128]
        out = out.view(np.uint8)
        if insn.rows == 1 or insn.stride >= n:
            # Rows do not overlap: one strided write.
            view = np.lib.stride_tricks.as_strided(
                self._dram[first:], shape=(insn.rows, n), strides=(insn.stride, 1))
            view[...] = out
        else:
            for r in range(insn.rows):  # in order, so overlapping rows behave as the hardware
                a = first + r * insn.stride
                self._dram[a:a + n] = out[r]

    def gemm(self, insn: Instruction) -> None:
        """Execute a GEMM on the scratchpad, the array's weights and the accumulator."""
        f = insn.fields
        cfg = self.config
        if not f["keep_wgt"]:
            self.set_weights(self.spad[f["wgt"]:f["wgt"] + cfg.cols].copy())
        a = self.spad[f["inp"]:f["inp"] + f["m"]].astype(np.float64)
        # float64 products are exact here: |sum| <= 2**14 * 64 < 2**53.
        prod = (a @ self._weights_t).astype(np.int64)
        rows = slice(f["acc"], f["acc"] + f["m"])
        base = self.acc[rows].astype(np.int64) if f["accumulate"] else 0
        self.acc[rows] = _wrap32(base + prod).astype(np.int32)

    def alu(self, insn: Instruction, rows: tuple | None = None) -> None:
        """Execute an ALU instruction on the accumulator (``rows``: :func:`alu_rows`)."""
        dst, src, sequential = rows if rows is not None else alu_rows(insn)
        imm = np.int32(insn.imm)
        if sequential:
            for k in range(insn.count):
                s = imm if src is None else self.acc[src[k]]
                self.acc[dst[k]] = _alu(insn.op, self.acc[dst[k]], s)
        else:
            s = imm if src is None else self.acc[src]
            self.acc[dst] = _alu(insn.op, self.acc[dst], s)


def alu_rows(insn: Instruction) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """An ALU instruction's destination rows, source rows (``None`` for an
    immediate) and whether it must run row by row: when it revisits a row, or
    a later source row is an earlier destination."""
    i = np.arange(insn.count)
    dst = insn.dst + i * insn.dst_stride
    src = None if insn.use_imm else insn.src + i * insn.src_stride
    sequential = len(set(dst.tolist())) != len(dst) or (
        src is not None and not np.array_equal(src, dst) and bool(np.isin(src, dst).any()))
    return dst, src, sequential


def instruction_cost(insn: Instruction, config: NPUConfig) -> tuple[int, int, int]:
    """(MAC slots, DRAM data bytes read, DRAM bytes written) of one instruction: what the
    hardware's MACS, DMA_RD_BYTES and DMA_WR_BYTES counters add for it."""
    op, f = insn.opcode, insn.fields
    if op is Opcode.LOAD:
        return 0, f["y_size"] * f["x_size"] * f["length"] * DRAM_ELEM_BYTES[f["mem"]], 0
    if op is Opcode.STORE:
        return 0, 0, f["rows"] * f["length"]
    if op is Opcode.GEMM:
        return f["m"] * config.rows * config.cols, 0, 0
    return 0, 0, 0


def _count(counts: Counts, layer: int, name: str, cost: tuple[int, int, int],
           times: int = 1) -> None:
    """Add ``times`` executions of an instruction of class ``name`` and ``cost`` in
    ``layer`` to ``counts`` and to its layer's."""
    per = counts.per_layer.get(layer)
    if per is None:
        per = counts.per_layer[layer] = Counts()
    macs, rd, wr = cost
    for c in (counts, per):
        c.insns[name] += times
        c.macs += macs * times
        c.dram_read_bytes += rd * times
        c.dram_write_bytes += wr * times


def place_program(dram: np.ndarray, base: int, insns: Iterable[Instruction | int]) -> int:
    """Write instructions into ``dram`` at ``base``; returns how many."""
    words = [i if isinstance(i, int) else i.encode() for i in insns]
    blob = words_to_bytes(words)
    if base < 0 or base + len(blob) > len(dram):
        raise ValueError(f"program of {len(blob)} bytes at {base:#x} does not fit the DRAM")
    dram[base:base + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    return len(words)
