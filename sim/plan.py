"""Execution plans: how the functional model runs a whole network in a fraction of a second.

Interpreting a program costs tens of microseconds per instruction in Python,
and a ResNet-18 is 150 000 instructions. But what the scheduler decides (the
order of execution, every address, every check, every count) depends on the
instruction words alone, never on data. So the first run of a program works
that out once and records a *plan*, which later runs replay:

* The scratchpad is *versioned*: every row a LOAD writes gets a new slot in
  a large array, so slots are never overwritten and all the loads between two
  stores become one gather from DRAM (plus a fix-up for partial rows).
* An *accumulation chain* (a GEMM that overwrites accumulator rows and the
  GEMMs that then accumulate into exactly those rows) becomes one matrix
  product over the concatenated reduction: ``A[m, K*rows] @ W[K*rows, cols]``.
  Int32 wrap-around is modular, so summing a chain exactly and wrapping once is
  bit-exact with wrapping after every GEMM. A chain is computed when something
  reads or overwrites its rows (a STORE, an ALU operation, a LOAD into the
  accumulator, a GEMM that does not continue it) or at the end.
* STOREs, ALU operations and loads into the accumulator or parameter memory
  run one at a time, in schedule order, with the interpreter's own code.

Products are computed in float32 over reductions of at most 1024 terms, so every
partial sum is an integer of magnitude <= 2**24 and exact in any summation order;
the chunks are added in int64.

Programs that stop with an error, and programs that store into their own
instructions, are not planned: the model interprets them, which gives the exact
state at the error. ``tests/sim/test_plan.py`` checks plans against the
interpreter on random programs of every instruction and on a compiled model.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
from dataclasses import dataclass, field

import numpy as np

from hw.isa import (INSN_BYTES, Instruction, Mem, Opcode, bytes_to_words, load_extent, load_grid,
                    store_extent)

from .functional import Counts, FunctionalModel, NPUError, alu_rows

__all__ = ["PlannedModel", "Plan"]

_EXACT_TERMS = 1 << 10        # float32: 2**10 products of |x| <= 2**14 stay below 2**24
_MAX_PLANS = 4                # plans kept per model (programs differ by their words)

#: BLAS threads for the chain products of a run (``NPU_BLAS_THREADS``; 0: the library's
#: default). The products are many and small (at most 1024-term reductions into 16 to 64
#: columns), where threads cost more than they give: ResNet-18's replay on 16x16 took
#: 0.25-0.34 s with one thread and 0.69-1.33 s with OpenBLAS's default of two, the other
#: core busy (``python bench/func_threads.py``).
BLAS_THREADS = int(os.environ.get("NPU_BLAS_THREADS", "1"))
_blas = None


def _blas_limit():
    """A context that holds BLAS at :data:`BLAS_THREADS` threads (threadpoolctl's)."""
    global _blas
    if BLAS_THREADS <= 0:
        return contextlib.nullcontext()
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas.limit(limits=BLAS_THREADS, user_api="blas")


class _Unplannable(Exception):
    """The program cannot be replayed from a plan (it stores into its instructions)."""


@dataclass(eq=False)
class _Chain:
    start: int                 # first accumulator row
    m: int                     # rows
    from_zero: bool            # the first GEMM overwrote the rows (else: added to them)
    inputs: list = field(default_factory=list)     # per GEMM: slots of its m input rows
    weights: list = field(default_factory=list)    # per GEMM: slots of its weight tile


@dataclass
class Plan:
    """What one program does, worked out from its instruction words."""
    words: bytes               # the instruction bytes it was made from
    steps: list                # ("gather"|"mm"|"load"|"store"|"alu", ...) in order
    slots: int                 # versioned scratchpad rows
    spad_slots: np.ndarray     # scratchpad row -> slot at the end
    weight_slots: np.ndarray   # the array's weight tile at the end
    layer: int                 # CONFIG LAYER value at the end
    counts: object             # Counts


class _Planner:
    """Follows the model's schedule, recording steps instead of computing."""

    def __init__(self, model, dram_bytes: int, insn_range: tuple[int, int]) -> None:
        cfg = model.config
        self.model = model
        self.rows, self.cols = cfg.rows, cfg.cols
        self.n = dram_bytes
        self.insn_range = insn_range
        self.zero_slot = cfg.spad_depth            # a row of zeros: the weights after START
        self.next_slot = cfg.spad_depth + 1
        self.spad_slots = np.arange(cfg.spad_depth, dtype=np.int64)
        self.weight_slots = np.full(cfg.cols, self.zero_slot, dtype=np.int64)
        self.chain_of_row: list[_Chain | None] = [None] * cfg.acc_depth
        self.steps: list = []
        self.gather_first = self.next_slot         # first slot of the pending gather
        self.gather_loads: list[tuple] = []      # the LOADs of the pending gather
        self.partial: dict[tuple[int, int], list] = {}   # (length, pad) -> slots

    # Recording ------------------------------------------------------------------------------

    def execute(self, index: int, insn: Instruction) -> None:
        op = insn.opcode
        if op is Opcode.LOAD:
            first, end = load_extent(insn)
            if first < self.model._lo or end > self.model._hi:
                self.model.check_window(index, first, end, "LOAD")     # raises
            ny, nx = load_grid(insn)
            if insn.fields["mem"] is Mem.SPAD:
                self._load_spad(insn, nx, ny * nx)
            else:
                if insn.mem is Mem.ACC:
                    self._settle(range(insn.sram, insn.sram + ny * nx))
                self.steps.append(("load", index, insn))
        elif op is Opcode.GEMM:
            self._gemm(insn)
        elif op is Opcode.STORE:
            first, end = store_extent(insn)
            self.model.check_window(index, first, end, "STORE")
            if first < self.insn_range[1] and end > self.insn_range[0]:
                raise _Unplannable("a STORE writes into the program's instructions")
            self._flush_gather()                   # loads before it read the old DRAM
            self._settle(range(insn.acc, insn.acc + insn.rows))
            self.steps.append(("store", index, insn))
        elif op is Opcode.ALU:
            rows = alu_rows(insn)
            touched = set(rows[0].tolist())
            if rows[1] is not None:
                touched.update(rows[1].tolist())
            self._settle(touched)
            self.steps.append(("alu", index, insn, rows))

    def _load_spad(self, insn: Instruction, nx: int, count: int) -> None:
        f = insn.fields
        first = self.next_slot
        self.next_slot += count
        # Row offsets are worked out for all the loads of a gather at once.
        self.gather_loads.append((f["dram"], f["y_size"], f["x_size"], f["y_stride"],
                                  f["x_stride"], f["pad_top"], f["pad_left"], nx, count,
                                  self.n + (f["pad_value"] & 0xFF) * self.rows))
        slots = np.arange(first, first + count)
        if f["length"] < self.rows:
            self.partial.setdefault((f["length"], f["pad_value"]), []).append(slots)
        sram = f["sram"]
        self.spad_slots[sram:sram + count] = slots

    def _gemm(self, insn: Instruction) -> None:
        f = insn.fields
        if not f["keep_wgt"]:
            self.weight_slots = self.spad_slots[f["wgt"]:f["wgt"] + self.cols].copy()
        start, m, accumulate = f["acc"], f["m"], f["accumulate"]
        inputs = self.spad_slots[f["inp"]:f["inp"] + m].copy()
        chain = self.chain_of_row[start]
        if accumulate and chain is not None and chain.start == start and chain.m == m:
            chain.inputs.append(inputs)
            chain.weights.append(self.weight_slots)
            return
        rows = range(start, start + m)
        if accumulate:
            self._settle(rows)
        else:                                      # chains wholly overwritten are dead
            for old in {self.chain_of_row[i] for i in rows} - {None}:
                if old.start >= start and old.start + old.m <= start + m:
                    self._forget(old)
            self._settle(rows)
        chain = _Chain(start, m, from_zero=not accumulate,
                       inputs=[inputs], weights=[self.weight_slots])
        self.chain_of_row[start:start + m] = [chain] * m

    def _forget(self, chain: _Chain) -> None:
        self.chain_of_row[chain.start:chain.start + chain.m] = [None] * chain.m

    def _settle(self, rows) -> None:
        """Compute the chains that hold any of ``rows``, before something reads them."""
        chains = {self.chain_of_row[i] for i in rows} - {None}
        if not chains:
            return
        self._flush_gather()
        for chain in sorted(chains, key=lambda c: c.start):
            self._forget(chain)
            a = np.stack(chain.inputs, axis=1)      # [m, K] slots
            w = np.stack(chain.weights)             # [K, cols] slots
            self.steps.append(("mm", chain.start, chain.m, chain.from_zero, a, w))

    def _flush_gather(self) -> None:
        if not self.gather_loads:
            return
        (dram, ys, xs, ystr, xstr, pt, pl, nx, count, pad_row) = (
            np.array(self.gather_loads, dtype=np.int64).T)
        # Row j of load i: (y, x) = divmod(j, nx); data if inside the unpadded box.
        load = np.repeat(np.arange(len(count)), count)
        j = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        y = j // nx[load] - pt[load]
        x = j % nx[load] - pl[load]
        data = (y >= 0) & (y < ys[load]) & (x >= 0) & (x < xs[load])
        offsets = np.where(data, dram[load] + y * ystr[load] + x * xstr[load], pad_row[load])
        partial = [(length, pad, np.concatenate(slots))
                   for (length, pad), slots in self.partial.items()]
        self.steps.append(("gather", self.gather_first, offsets, partial))
        self.gather_first = self.next_slot
        self.gather_loads, self.partial = [], {}

    def finish(self) -> None:
        self._settle(range(len(self.chain_of_row)))
        self._flush_gather()


class PlannedModel(FunctionalModel):
    """The functional model, running programs from execution plans.

    The same results, memories, DRAM, errors and counts as
    :class:`~sim.functional.FunctionalModel`, which it extends: the first run of a
    program is scheduled once to record its :class:`Plan`, and every run replays
    the plan while the program's instruction words are unchanged (a plan is keyed
    by the program's place and checked against its words on every run). Programs
    that stop with an error and programs that store into their own instructions
    are interpreted one instruction at a time.

    :attr:`last_run` says how the last run went (``"planned"`` or
    ``"interpreted"``); :attr:`plan_count` is the number of plans kept.
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self._plans: dict[tuple, Plan] = {}
        # The versioned scratchpad (int8: a quarter of the bytes of float32 to fill and
        # gather from) and the DRAM with the padding rows after it, kept between runs
        # (allocating them anew each run made the kernel clear their pages each time).
        self._buffer: np.ndarray | None = None
        self._work: np.ndarray | None = None
        self._gathered = np.empty(0, dtype=np.int8)       # a chain's gathered inputs
        self._scratch = np.empty(0, dtype=np.float32)     # the same as float32
        self.last_run: str | None = None

    @property
    def plan_count(self) -> int:
        return len(self._plans)

    def run(self, dram: np.ndarray, insn_base: int, insn_count: int,
            window: tuple[int, int] | None = None) -> Counts:
        """Run a program as :meth:`FunctionalModel.run` does, from its plan when it has one."""
        with _blas_limit():
            return self._run(dram, insn_base, insn_count, window)

    def _run(self, dram, insn_base, insn_count, window) -> Counts:
        window = self.check_args(dram, insn_base, insn_count, window)
        key = (insn_base, insn_count, window, len(dram))
        plan = self._plans.get(key)
        words = dram[insn_base:insn_base + insn_count * INSN_BYTES].tobytes()
        if plan is not None and plan.words != words:
            plan = None
        if plan is None:
            try:
                plan = self._make_plan(dram, insn_base, insn_count, window, words)
            except (NPUError, _Unplannable):
                self.last_run = "interpreted"
                return self.interpret(dram, insn_base, insn_count, window)
            while len(self._plans) >= _MAX_PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        self._replay(plan, dram, window)
        self.last_run = "planned"
        return copy.deepcopy(plan.counts)

    def _make_plan(self, dram: np.ndarray, insn_base: int, insn_count: int,
                   window: tuple[int, int], words: bytes) -> Plan:
        """Work out the plan of a program whose instruction bytes are ``words``
        (raises NPUError or _Unplannable); the memories are left as they were."""
        planner = _Planner(self, len(dram), (insn_base, insn_base + insn_count * INSN_BYTES))
        saved_layer, saved_weights = self.layer, self.weights
        self.begin(dram, window)
        # Decoding makes an object per distinct word and no cyclic garbage: the collector
        # would walk them all again and again.
        collecting = gc.isenabled()
        gc.disable()
        try:
            # The planner writes no DRAM: the words can be read at once (when they are all
            # inside the window; else the schedule reports the fetch that is not).
            first, end = insn_base, insn_base + insn_count * INSN_BYTES
            fetched = None
            if window[0] <= first and end <= window[1] and first % INSN_BYTES == 0:
                fetched = bytes_to_words(words)
            counts = self.schedule(dram, insn_base, insn_count, planner.execute, fetched)
            final_layer = self.layer
        finally:
            if collecting:
                gc.enable()
            self.layer = saved_layer
            self.set_weights(saved_weights)
        planner.finish()
        return Plan(words, planner.steps, planner.next_slot, planner.spad_slots,
                    planner.weight_slots, final_layer, counts)

    def _replay(self, plan: Plan, dram: np.ndarray, window: tuple[int, int]) -> None:
        cfg = self.config
        r = cfg.rows
        n = len(dram)
        # DRAM followed by 256 rows holding each byte value: the padding rows of the gathers.
        work = self._work
        if work is None or len(work) != n + 256 * r:
            work = self._work = np.empty(n + 256 * r, dtype=np.uint8)
        work[:n] = dram
        work[n:] = np.repeat(np.arange(256, dtype=np.uint8), r)
        # Every byte offset as the start of an r-byte record: a gather copies whole rows.
        rows_at = np.ndarray(buffer=work, dtype=np.dtype((np.void, r)),
                             shape=(n + 255 * r + 1,), strides=(1,))
        vs = self._buffer
        if vs is None or vs.shape[0] < plan.slots or vs.shape[1] != r:
            vs = self._buffer = np.empty((plan.slots, r), dtype=np.int8)
        vs[:cfg.spad_depth] = self.spad
        vs[cfg.spad_depth] = 0
        self.begin(work, window)
        acc = self.acc
        for step in plan.steps:
            kind = step[0]
            if kind == "gather":
                _, first, offsets, partial = step
                block = vs[first:first + len(offsets)]
                block[...] = rows_at[offsets].view(np.int8).reshape(-1, r)
                for length, pad, slots in partial:
                    vs[slots, length:] = pad
            elif kind == "mm":
                _, start, m, from_zero, a_slots, w_slots = step
                need = m * min(a_slots.shape[1], max(1, _EXACT_TERMS // r)) * r
                if len(self._scratch) < need:
                    self._scratch = np.empty(need, dtype=np.float32)
                    self._gathered = np.empty(need, dtype=np.int8)
                total = _chain_product(vs, a_slots, w_slots, self._gathered, self._scratch)
                if not from_zero:
                    total += acc[start:start + m]
                acc[start:start + m] = ((total + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            elif kind == "store":
                self.store(step[1], step[2])
            elif kind == "alu":
                self.alu(step[2], step[3])
            else:  # load into the accumulator or the parameter memory
                self.load(step[1], step[2])
        dram[:] = work[:n]
        self.begin(dram, window)
        self.spad[...] = vs[plan.spad_slots]
        self.set_weights(vs[plan.weight_slots].astype(np.int8))
        self.layer = plan.layer


def _chain_product(vs: np.ndarray, a_slots: np.ndarray, w_slots: np.ndarray,
                   gathered: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """sum_k vs[a_slots[:, k]] @ vs[w_slots[k]].T, exactly, as int64 [m, cols].

    ``gathered`` (int8) and ``scratch`` (float32, each at least m * 1024 elements)
    receive the gathered inputs, so that no large temporary is allocated per chain."""
    m, k = a_slots.shape
    r = vs.shape[1]
    step = max(1, _EXACT_TERMS // r)
    total = None
    for k0 in range(0, k, step):
        idx = a_slots[:, k0:k0 + step]
        n = idx.size * r
        np.take(vs, idx, axis=0, out=gathered[:n].reshape(m, idx.shape[1], r))
        a = scratch[:n].reshape(m, -1)
        a[...] = gathered[:n].reshape(m, -1)
        w = vs[w_slots[k0:k0 + step]]                     # [k, cols, rows]
        w = w.transpose(0, 2, 1).reshape(-1, w.shape[1]).astype(np.float32)  # [k * rows, cols]
        part = (a @ w).astype(np.int64)
        total = part if total is None else total + part
    return total
