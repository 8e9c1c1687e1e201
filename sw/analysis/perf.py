"""The performance model: the NPU's cycles from a compiled program's instruction words.

:func:`estimate` runs an event-driven simulation of the hardware in ``hw/core`` one
instruction at a time (not one cycle at a time): instruction fetch and in-order
dispatch into the three queues (their FIFO depths), the dependency-token counters
between the queues (their capacity), and each unit's timing as the RTL has it:

* **fetch** (:mod:`hw.core.fetch`): one read burst per 16-byte word on the AXI read
  port it shares with the load unit (fetch first), up to 8 words ahead of dispatch;
* **load unit** (:mod:`hw.core.load`): the 2D walk, one DMA read per data vector
  (its beats on the bus, one burst at a time), padding vectors written in the cycles
  no DMA response is written, the finish once the last response is written;
* **compute unit** (:mod:`hw.core.compute`): the front stage (token wait, the weight
  preload of ``cols`` scratchpad rows into the idle weight buffer once the array no
  longer uses it, the one-cycle bank collision with the activation streamer), the
  streamer (one activation row per cycle, back to back across GEMMs), the array's
  ``rows + cols - 1`` cycles of latency, the drain before ALU, CONFIG and SYNC, the ALU's
  one or two cycles per row (its two operands in one accumulator bank or two);
* **store unit** (:mod:`hw.core.store`): the parameter reads, the accumulator read and
  requantizer pipeline, and the DMA writer (address, data beats, the response), one
  row at a time.

The DRAM is the harness RAM the RTL is measured with (``sim/hdl/axi_ram_fast.sv``) by
default: the first read beat the cycle after the address, then one beat of
``config.dma_bytes`` per cycle, one burst at a time; a write's response the cycle after
its last beat. :class:`DramTiming` changes the latency and bytes per cycle (a DRAM of
``G`` GB/s at ``F`` MHz moves ``1000 G / F`` bytes per cycle).

Cycles are counted as the CYCLES counter counts them (START to DONE) and per layer as
the RTL harness attributes them (``sim/hdl/fast_main.cpp``): a cycle belongs to the layer
of the last CONFIG the compute unit has executed. A program's host segments run on the
host and add no NPU cycles (:attr:`PerfEstimate.host_segments` names them); its NPU
segments run one after the other.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from hw import isa
from hw.config import NPUConfig, require_config
from hw.isa import DRAM_ELEM_BYTES, INSN_BYTES, PARAM_GROUP_ROWS, Opcode, Queue, TokenQueue
from hw.core.fetch import FIFO_DEPTH as FETCH_DEPTH
from hw.requant import Requantizer

from .trace import QUEUE_NAMES, Span

__all__ = ["DramTiming", "LayerEstimate", "PerfEstimate", "estimate", "estimate_words"]

# Fixed pipeline depths of the RTL, in cycles (see the module docs of hw/core/*).
_FIFO_LATENCY = 2          # SyncFIFOBuffered: written in cycle t, readable in t + 2
_STORE_FIFO_DEPTH = 16     # hw/core/store.py _FIFO_DEPTH
_START_DELAY = 1           # START to the first instruction fetch
_TRACE_ORIGIN = 1          # the RTL trace's cycle 0 is the model's cycle 1 (measured)
_DONE_DELAY = 0            # the last unit idle to DONE


@dataclass(frozen=True)
class DramTiming:
    """How the DRAM answers the NPU's AXI port.

    ``latency``: cycles from a read address to its first data beat (the harness RAM: 1);
    ``bytes_per_cycle``: sustained bytes per cycle (``None``: one AXI beat,
    ``config.dma_bytes``, per cycle, the harness RAM). Beyond the harness RAM the model
    assumes the latency of one burst overlaps the previous burst's data.

    Raises ValueError for a latency under 1 or a rate that is not positive.
    """
    latency: int = 1
    bytes_per_cycle: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.latency, int) or isinstance(self.latency, bool) or self.latency < 1:
            raise ValueError(f"DramTiming.latency must be an int of at least 1, not {self.latency!r}")
        if self.bytes_per_cycle is not None and (
                not isinstance(self.bytes_per_cycle, (int, float)) or isinstance(self.bytes_per_cycle, bool)
                or not self.bytes_per_cycle > 0):
            raise ValueError(f"DramTiming.bytes_per_cycle must be a positive number or None, "
                             f"not {self.bytes_per_cycle!r}")

    @classmethod
    def from_bandwidth(cls, gbs: float, clock_mhz: float, *, latency: int = 1) -> "DramTiming":
        """The DRAM of ``gbs`` GB/s seen by an NPU clocked at ``clock_mhz`` MHz.

        Raises ValueError for a bandwidth or clock that is not positive.
        """
        for name, v in (("gbs", gbs), ("clock_mhz", clock_mhz)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"DramTiming.from_bandwidth {name} must be a positive number, not {v!r}")
        return cls(latency=latency, bytes_per_cycle=gbs * 1e3 / clock_mhz)


@dataclass(frozen=True)
class LayerEstimate:
    """One layer's cycles, attributed as the RTL harness does (``cycles``), and the
    cycles in which one of its activation rows entered the array."""
    id: int
    name: str
    cycles: int
    array_busy_cycles: int


@dataclass(frozen=True)
class PerfEstimate:
    """What :func:`estimate` predicts, with the meanings of the CSR counters
    (:data:`hw.csr.COUNTERS`): ``cycles`` is CYCLES summed over the NPU segments,
    ``array_busy_cycles`` ARRAY_BUSY, ``stall_*_cycles`` STALL_LOAD / STALL_COMPUTE /
    STALL_STORE (cycles a queue's head waited for tokens)."""
    cycles: int
    array_busy_cycles: int
    mac_slots: int                        #: MACS: rows x cols per array-busy cycle
    stall_load_cycles: int
    stall_compute_cycles: int
    stall_store_cycles: int
    layers: tuple[LayerEstimate, ...]     #: the program's layers, in its order
    other_cycles: int                     #: cycles of no listed layer (before the first CONFIG)
    npu_segments: int                     #: NPU instruction streams run
    host_segments: tuple[str, ...]        #: host operators: no NPU cycles counted for them
    dram: DramTiming
    #: The timeline, compact: (queue, index, layer, begin, end, stall) rows and every opcode.
    _span_rows: tuple = field(default=((), ()), repr=False, compare=False)

    @cached_property
    def spans(self) -> tuple[Span, ...]:
        """One :class:`~sw.analysis.trace.Span` per load, compute and store instruction,
        in the order they start (made on first use: a sweep needs none)."""
        rows, ops = self._span_rows
        names = {q.value: QUEUE_NAMES[q] for q in Queue}
        opnames = {op.value: op.name for op in Opcode}
        # In the order of sw.analysis.trace.spans_from_events: by start, then queue.
        return tuple(Span(queue=names[q], index=j, opcode=opnames[ops[j]], layer=layer,
                          begin=int(math.ceil(b)), end=int(math.ceil(e)), stall=int(math.ceil(st)))
                     for q, j, layer, b, e, st in sorted(rows, key=lambda r: (r[3], r[0])))

    def utilization(self, config: NPUConfig) -> float:
        """MAC slots used over those available in ``cycles`` (0 for no cycles)."""
        return self.mac_slots / (self.cycles * config.macs) if self.cycles else 0.0


# ----------------------------------------------------------------------------- helpers
@lru_cache(maxsize=65536)
def _run_beats(offset: int, stride: int, nbytes: int, n: int, beat: int) -> tuple[int, int, int]:
    """Beats of ``n`` vectors of ``nbytes`` at byte offsets ``offset + k * stride`` (mod
    ``beat``): (total, beats of the last, beats of the one before it or 0)."""
    total = 0
    last = prev = 0
    for k in range(n):
        prev = last
        last = ((offset + k * stride) % beat + nbytes + beat - 1) // beat
        total += last
    return total, last, prev


def _pads(pend: list, c, k: int):
    """The walk's cycle after ``k`` padding vectors from cycle ``c``: one per cycle in
    which no DMA response (cycles ``pend``) is written."""
    for p in pend:
        if c <= p < c + k:
            k += 1
    return c + k


_PAGE = 4096   # AXI bursts do not cross 4 KiB


def _crossings(base: int, stride: int, nbytes: int, n: int) -> tuple[int, int]:
    """Of ``n`` vectors of ``nbytes`` at ``base + k * stride``, those that cross a 4 KiB
    boundary, and whether the last one does."""
    last = base + (n - 1) * stride
    last_crosses = int(last % _PAGE + nbytes > _PAGE)
    if stride == 0:
        return (n if last_crosses else 0), last_crosses
    count = 0
    # Vector k crosses boundary X when X - nbytes < base + k * stride < X.
    for x in range((base // _PAGE + 1) * _PAGE, last + nbytes, _PAGE):
        lo = max(0, (x - nbytes - base) // stride + 1)
        hi = min(n - 1, (x - 1 - base) // stride)
        if hi >= lo:
            count += hi - lo + 1
    return count, last_crosses


def _beats(addr: int, nbytes: int, beat: int) -> int:
    return (addr % beat + nbytes + beat - 1) // beat


# Queues and token queues as list indices (hw.isa.Queue / TokenQueue values).
_LQ, _CQ, _SQ = Queue.LOAD.value, Queue.COMPUTE.value, Queue.STORE.value
_L2C, _C2L, _C2S, _S2C = (TokenQueue.L2C.value, TokenQueue.C2L.value, TokenQueue.C2S.value,
                          TokenQueue.S2C.value)
_FLAG_BIT = {flag: 1 << i for i, flag in enumerate(isa.DEP_FLAGS)}
#: Per queue: the token queues popped and pushed, by the header bit that asks for each.
_POPS = [[(_FLAG_BIT[flag], t.value) for flag, t in isa.TOKEN_POPS[q].items()] for q in Queue]
_PUSHES = [[(_FLAG_BIT[flag], t.value) for flag, t in isa.TOKEN_PUSHES[q].items()] for q in Queue]
_PP, _PN = _FLAG_BIT["push_prev"], _FLAG_BIT["push_next"]
#: The fields the model reads, per opcode, in the order of its records.
_RECORD_FIELDS = {
    Opcode.LOAD: ("mem", "dram", "y_size", "x_size", "y_stride", "x_stride", "length",
                  "pad_top", "pad_bottom", "pad_left", "pad_right"),
    Opcode.GEMM: ("wgt", "inp", "m", "keep_wgt"),
    Opcode.ALU: ("use_imm", "dst", "src", "count", "dst_stride", "src_stride", "op"),
    Opcode.STORE: ("dram", "rows", "stride", "length", "lut"),
    Opcode.CONFIG: ("key", "value"),
    Opcode.SYNC: ("queue",),
}
_ELEM_BYTES = {m.value: b for m, b in DRAM_ELEM_BYTES.items()}


def _decode(blob: bytes):
    """Instruction words (little-endian bytes) as columns: opcodes, dependency flags and,
    per opcode, the records of the fields the model reads (numpy, no per-word Python).

    Raises :class:`hw.isa.ISAError` for an illegal opcode."""
    import numpy as np
    raw = np.frombuffer(blob, dtype="<u8").reshape(-1, 2)
    lo, hi = raw[:, 0], raw[:, 1]

    def field(offset: int, width: int):
        mask = np.uint64((1 << width) - 1)
        if offset >= 64:
            return (hi >> np.uint64(offset - 64)) & mask
        if offset + width <= 64:
            return (lo >> np.uint64(offset)) & mask
        low = 64 - offset
        return ((lo >> np.uint64(offset)) | (hi << np.uint64(low))) & mask

    layout = {name: (offset, width) for name, _, offset, width in isa.fields_of(Opcode.LOAD)}
    ops = field(*layout["opcode"]).astype(np.int64)
    legal = np.isin(ops, [op.value for op in Opcode])
    if not legal.all():
        bad = int(np.flatnonzero(~legal)[0])
        raise isa.ISAError(f"illegal opcode {int(ops[bad])} in instruction {bad}")
    flags = np.zeros(len(ops), dtype=np.int64)
    for flag, bit in _FLAG_BIT.items():
        flags |= field(*layout[flag]).astype(np.int64) * bit
    records = [()] * len(ops)
    for op, names in _RECORD_FIELDS.items():
        where = np.flatnonzero(ops == op.value)
        if not len(where):
            continue
        offsets = {name: (offset, width) for name, _, offset, width in isa.fields_of(op)}
        cols = [field(*offsets[name])[where].tolist() for name in names]
        for i, rec in zip(where.tolist(), zip(*cols)):
            records[i] = rec
    return ops.tolist(), flags.tolist(), records


class _Model:
    """The simulation state of one NPU segment (instructions as :func:`_decode` gives them)."""

    def __init__(self, config: NPUConfig, dram: DramTiming, ops, flags, records,
                 extra_latency: int = 0) -> None:
        cfg = self.cfg = config
        self.ops, self.flags, self.records = ops, flags, records
        self.B = cfg.dma_bytes
        bpc = dram.bytes_per_cycle
        self.beat_cycles = 1 if bpc is None or bpc >= self.B else self.B / bpc
        self.lat = dram.latency - 1          # extra read latency over the harness RAM
        self.insn_beats = _beats(0, INSN_BYTES, self.B) * self.beat_cycles
        # The array's latency; a register after each product adds one cycle.
        self.L = cfg.rows + cfg.cols - 1 + extra_latency
        self.table_cycles = cfg.table_load_cycles
        self.depth = cfg.insn_queue_depth
        self.tok_depth = cfg.token_queue_depth
        n = len(ops)
        self.n = n
        self.fetch = []                      # AR cycle of each word fetched
        self.disp = []                       # dispatch cycle of each word
        self.qlist = [[], [], []]            # instruction indices per queue, in order
        self.take = [[], [], []]             # cycle each was taken from its queue
        self.ptr = [0, 0, 0]
        self.ready = [0, 0, 0]               # the unit's IDLE: the earliest take
        self.pushes = [[], [], [], []]       # give cycle of each push, per token queue
        self.pushes_started = [0, 0, 0, 0]
        self.pops = [[], [], [], []]         # start cycle of each pop
        self.stall = [0, 0, 0]
        self.blocked = None                  # (queue, take index) dispatch waits for
        self.spans = []                      # (queue, index, begin, end, stall)
        self.span = (0, 0)                   # the last instruction's span
        # Each word's queue (-1: FINISH) and the layer the dispatcher holds for it (a
        # CONFIG belongs to the layer it starts).
        self.qof = qof = []
        self.layer_of = layer_of = []
        layer = 0
        for op, rec in zip(ops, records):
            if op == _LOAD:
                qof.append(_LQ)
            elif op == _STORE:
                qof.append(_SQ)
            elif op == _SYNC:
                qof.append(rec[0])
            elif op == _FINISH:
                qof.append(-1)
            else:
                qof.append(_CQ)
                if op == _CONFIG and rec[0] == _LAYER_KEY:
                    layer = rec[1]
            layer_of.append(layer)
        # compute unit
        self.last_buf = 0
        self.buf_free = [0, 0]               # first cycle the weight buffer may be written
        self.s_h = -10 ** 9                  # handoff cycle of the GEMM streaming last
        self.s_m = 0
        self.s_inp = 0
        self.pipe_empty = 0
        self.array_busy = 0
        self.busy_by_layer = {}
        self.cu_layer = 0
        self.layer_changes = []              # (cycle, layer) as the compute unit sees them
        # load bus
        self.ram_free = 0
        self.end = 0
        self._walks = {}                     # walk timings by pattern, from a free port

    # ------------------------------------------------------------ fetch and dispatch
    def _dispatch_all(self) -> None:
        blocked = self.blocked
        if blocked is not None:
            if len(self.take[blocked[0]]) <= blocked[1]:
                return
            self.blocked = None
        qof, depth, n = self.qof, self.depth, self.n
        fetch, disp, qlist, take = self.fetch, self.disp, self.qlist, self.take
        beats = self.insn_beats
        arrive = self.lat + beats + 1 + _FIFO_LATENCY
        while len(disp) < n:
            j = len(disp)
            if j >= len(fetch):
                self._fetch_ahead()
            t = fetch[j] + arrive
            if j and disp[-1] + 1 > t:
                t = disp[-1] + 1
            q = qof[j]
            if q >= 0:
                ql = qlist[q]
                k = len(ql) - depth
                if k >= 0:
                    taken = take[q]
                    if k >= len(taken):
                        self.blocked = (q, k)    # the queue is full until its unit takes one
                        return
                    if taken[k] + 1 > t:
                        t = taken[k] + 1
                ql.append(j)
            disp.append(t)
            # The word leaving the fetch FIFO lets word j + FETCH_DEPTH be fetched.
            if len(fetch) < n:
                f = fetch[-1] + beats
                fetch.append(t + 1 if t + 1 > f else f)

    def _fetch_ahead(self) -> None:
        """Time every fetch the dispatched words make room for (the fetch unit keeps up
        to ``FETCH_DEPTH`` words fetched and not dispatched)."""
        fetch, disp = self.fetch, self.disp
        top = min(self.n, len(disp) + FETCH_DEPTH)
        beats = self.insn_beats
        while len(fetch) < top:
            j = len(fetch)
            f = _START_DELAY if j == 0 else fetch[-1] + beats
            if j >= FETCH_DEPTH and disp[j - FETCH_DEPTH] + 1 > f:
                f = disp[j - FETCH_DEPTH] + 1
            fetch.append(f)

    # ------------------------------------------------------------ tokens
    def _wait(self, q: int, j: int, t):
        """The cycle ``j`` (taken in ``t``) takes its tokens, or None when a token it
        needs is not yet known."""
        fl = self.flags[j]
        w = t + 1
        if fl:
            pops, pushes = self.pops, self.pushes
            for bit, tq in _POPS[q]:
                if fl & bit:
                    k = len(pops[tq])
                    if k >= len(pushes[tq]):
                        return None
                    if pushes[tq][k] + 1 > w:
                        w = pushes[tq][k] + 1
            for bit, tq in _PUSHES[q]:
                if fl & bit:
                    k = self.pushes_started[tq] - self.tok_depth
                    if k >= 0:
                        if k >= len(pops[tq]):
                            return None
                        if pops[tq][k] + 1 > w:
                            w = pops[tq][k] + 1
            for bit, tq in _POPS[q]:
                if fl & bit:
                    pops[tq].append(w)
            for bit, tq in _PUSHES[q]:
                if fl & bit:
                    self.pushes_started[tq] += 1
        return w

    # ------------------------------------------------------------ the units
    def step(self, q: int) -> bool:
        """Run the next instruction of queue ``q`` if it can be timed now."""
        k = self.ptr[q]
        ql = self.qlist[q]
        if k >= len(ql):
            return False
        j = ql[k]
        taken = self.take[q]
        if len(taken) == k:
            # Taken into the unit (its WAIT state): a slot of the queue is free again.
            t = self.disp[j] + _FIFO_LATENCY
            taken.append(t if t > self.ready[q] else self.ready[q])
            if self.blocked is None or self.blocked[0] == q:
                self._dispatch_all()
        t = taken[k]
        w = self._wait(q, j, t)
        if w is None:
            return False
        self.ptr[q] = k + 1
        self.stall[q] += w - t - 1
        if q == _LQ:
            end = self._load(j, w)
        elif q == _CQ:
            end = self._compute(j, w)
        else:
            end = self._store(j, w)
        self.spans.append((q, j, self.span[0], self.span[1], w - t - 1))
        if end > self.end:
            self.end = end
        return True

    def _load(self, j, w):
        if self.ops[j] != _LOAD:
            # SYNC: viewed as a LOAD of no vectors, done in the first RUN cycle.
            self.ready[_LQ] = w + 2
            if self.flags[j] & _PN:
                self.pushes[_L2C].append(w + 1)
            self.span = (w, w + 2)
            return w + 2
        mem, dram, y, xs, ys, nx, length, pt, pb, pl, pr = self.records[j]
        B = self.B
        extent = (y - 1) * ys + (xs - 1) * nx + length * _ELEM_BYTES[mem]
        # Vectors may cross a 4 KiB boundary: each one that does costs a cycle.
        paged = dram % _PAGE + extent > _PAGE
        if self.ram_free <= w + 1:
            # The read port is free when the walk starts: the walk's timing relative to
            # its start depends only on the pattern and its alignment (to the beat, and to
            # the 4 KiB page where a vector may cross one).
            if paged:
                key = (mem, dram % _PAGE, y, xs, ys % _PAGE, nx, length, pt, pb, pl, pr)
            else:
                key = (mem, dram % B, y, xs, ys % B, nx % B, length, pt, pb, pl, pr)
            walk = self._walks.get(key)
            if walk is None:
                walk = self._walks[key] = self._walk(self.records[j], 0, -(1 << 40), paged)
            finish, ram, a_first, data_cycles = walk
            finish += w
            ram += w
            a_first = None if a_first is None else a_first + w
        else:
            finish, ram, a_first, data_cycles = self._walk(self.records[j], w, self.ram_free,
                                                           paged)
        if y * xs:
            # The other units' work while this LOAD runs frees queue slots: dispatch, and
            # with it fetch, goes on, and the fetches take the read port first.
            extra = 0
            for _ in range(4):
                self._advance_others(finish + extra)
                new = self._fetch_delay(a_first, data_cycles) if self.fetch[-1] + self.insn_beats > a_first else 0
                if new == extra:
                    break
                extra = new
            finish += extra
            ram += extra
        self.ram_free = ram
        self.ready[_LQ] = finish + 1
        if self.flags[j] & _PN:
            self.pushes[_L2C].append(finish)
        self.span = (w, finish + 1)
        return finish + 1

    def _walk(self, record, w, ram_free, paged=False):
        """A LOAD's 2D walk from its token cycle ``w`` with the read port free from
        ``ram_free``: (finish cycle, port free, first read, read-port cycles). ``paged``:
        some vector may cross a 4 KiB boundary (the DMA reader then splits it into two
        bursts, a cycle later than one)."""
        mem, dram, y, xs, ys, nx, length, pt, pb, pl, pr = record
        B = self.B
        bc = self.beat_cycles
        lat = self.lat
        nbytes = length * _ELEM_BYTES[mem]
        row_len = pl + xs + pr
        c = w + 1                            # the walk's next cycle
        pend = []                            # cycles a DMA response is written
        last_resp = -1
        row_data = 0
        pads = _pads

        a_first = None
        data_cycles = 0
        if pt:
            c += pt * row_len
        ram = max(ram_free, c)
        rows_done = 0
        period = None
        addr = dram
        same_rows = ys % B == 0 and not paged
        while rows_done < y:
            if period is not None:
                # Every further row repeats the row before it (same alignment).
                left = y - rows_done
                data_cycles += row_data * left
                c += period * left
                pend = [p + period * left for p in pend]
                last_resp += period * left
                ram += period * left
                break
            c_row = c
            if pl:
                c = pads(pend, c, pl)
            total, b_last, _ = _run_beats(addr % B, nx % B, nbytes, xs, B)
            if paged:
                crossing, last_crosses = _crossings(addr, nx, nbytes, xs)
                total += crossing
                b_last += last_crosses
            a1 = c if c > ram else ram
            if a_first is None:
                a_first = a1
            row_data = total * bc
            data_cycles += row_data
            a_n = a1 + (total - b_last) * bc
            ram = a_n + b_last * bc
            resp_last = ram + lat + 1
            pend = [p for p in pend if p > a_n]
            if xs >= 2:
                pend.append(a_n + lat + 1)
            pend.append(resp_last)
            last_resp = resp_last
            c = a_n + 1
            if pr:
                c = pads(pend, c, pr)
            rows_done += 1
            addr += ys
            if rows_done == 2 and same_rows:
                period = c - c_row
        if pb:
            c = pads(pend, c, pb * row_len)
        finish = c if c > last_resp + 1 else last_resp + 1
        return finish, ram, a_first, data_cycles

    def _advance_others(self, until) -> None:
        """Time the compute and store instructions taken before cycle ``until``."""
        progress = True
        ptr, qlist, ready, disp = self.ptr, self.qlist, self.ready, self.disp
        cl, sl = qlist[_CQ], qlist[_SQ]
        while progress:
            progress = False
            k = ptr[_CQ]
            if k < len(cl) and ready[_CQ] < until and disp[cl[k]] + _FIFO_LATENCY < until \
                    and self.step(_CQ):
                progress = True
            k = ptr[_SQ]
            if k < len(sl) and ready[_SQ] < until and disp[sl[k]] + _FIFO_LATENCY < until \
                    and self.step(_SQ):
                progress = True

    def _fetch_delay(self, start, cycles):
        """Cycles the fetch unit, first on the shared read port, adds to ``cycles`` of
        load bursts from ``start``: a fetch burst under way holds the port to its end,
        and the fetch unit wins every cycle it asks."""
        fetch, beats = self.fetch, self.insn_beats
        i = bisect.bisect_left(fetch, start - beats + 1)
        t, left = start, cycles
        n = len(fetch)
        while left > 0:
            if i < n and fetch[i] <= t:
                if fetch[i] + beats > t:
                    t = fetch[i] + beats
                i += 1
                continue
            run = left if i >= n else min(left, fetch[i] - t)
            t += run
            left -= run
        return t - start - cycles

    def _give(self, j, pp, pn) -> None:
        fl = self.flags[j]
        if fl & _PP:
            self.pushes[_C2L].append(pp)
        if fl & _PN:
            self.pushes[_C2S].append(pn)

    def _compute(self, j, w):
        op = self.ops[j]
        cfg = self.cfg
        if op == _GEMM:
            wgt, inp, m, keep = self.records[j]
            if keep:
                nb = self.last_buf
                hs = w + 1
            else:
                nb = 1 - self.last_buf
                r0 = max(w + 1, self.buf_free[nb])
                s_end = self.s_h + self.s_m          # the streamer's last read cycle
                banks = cfg.spad_banks
                if r0 <= s_end:
                    # The streamer reads first; both walk consecutive rows, so after one
                    # collision they fall into step on alternate banks.
                    if banks == 1:
                        r0 = s_end + 1
                    elif (wgt - (self.s_inp + r0 - self.s_h - 1)) % banks == 0:
                        r0 += 1
                hs = r0 + cfg.cols + 1
                self.last_buf = nb
            h = max(hs, self.s_h + self.s_m)
            L = self.L
            self.s_h, self.s_m, self.s_inp = h, m, inp
            self.buf_free[nb] = h + m + cfg.rows + 3
            self.pipe_empty = h + m + L + 2
            self.array_busy += m
            layer = self.cu_layer
            self.busy_by_layer[layer] = self.busy_by_layer.get(layer, 0) + m
            self._give(j, h + m, h + m + 1 + L)
            self.ready[_CQ] = h + 1
            self.span = (h + 2, h + m + 2)    # its rows entering the array
            return h + m + 2 + L
        d = max(w + 1, self.pipe_empty)
        if op == _ALU:
            use_imm, dst, src, count, ds, ss, alu_op = self.records[j]
            n = count
            if alu_op in _MUL_OPS:
                # A sequential multiplier holds each row until its product is done.
                n += count * (cfg.alu_mul_cycles - 1)
            banks = cfg.acc_banks
            if not use_imm:
                # Destination and source in one bank: two reads.
                if banks == 1:
                    n += count
                elif (ds - ss) % banks == 0:
                    if (dst - src) % banks == 0:
                        n += count
                else:
                    n += sum(1 for i in range(count) if (dst - src + i * (ds - ss)) % banks == 0)
            done = d + 1 + n
        else:
            done = d
            if op == _CONFIG and self.records[j][0] == _LAYER_KEY:
                self.cu_layer = self.records[j][1]
                self.layer_changes.append((d, self.cu_layer))
        self._give(j, done, done)
        self.ready[_CQ] = done + 1
        self.span = (d, done + 1)          # from the array drained
        return done + 1

    def _store(self, j, w):
        if self.ops[j] != _STORE:
            # SYNC (the compiler emits none here): its tokens once the unit has it.
            self.ready[_SQ] = w + 2
            if self.flags[j] & _PP:
                self.pushes[_S2C].append(w + 1)
            self.span = (w, w + 2)
            return w + 2
        dram, rows, stride, length, lut = self.records[j]
        B, bc, lat = self.B, self.beat_cycles, self.lat
        # PARAM (3 rows, the activation table's with lut, + 1), the first row's read, the
        # requantizer, the output FIFO.
        a = w + 1 + PARAM_GROUP_ROWS + 1 + Requantizer.LATENCY + _FIFO_LATENCY
        if lut:
            a += self.table_cycles
        K = self.cfg.requant_passes
        if K > 1:
            finish = self._store_passes(a, K, dram, rows, stride, length) + 1
        elif rows > 1:
            a += 1      # measured on the RTL: the second row reaches the writer a cycle late
        if K == 1:
            total, b_last, _ = _run_beats(dram % B, stride % B, length, rows, B)
            # Each row: the writer's IDLE and ADDR cycles, its beats, the response.
            a_last = a + (2 * (rows - 1) + (total - b_last) * bc) + (rows - 1) * lat
            finish = a_last + b_last * bc + 3 + lat
            if rows == 1:
                finish += 1     # measured on the RTL: FLUSH sees the FIFO empty a cycle later
        self.ready[_SQ] = finish + 1
        if self.flags[j] & _PP:
            self.pushes[_S2C].append(finish)
        self.span = (w, finish + 1)
        return finish + 1

    def _store_passes(self, a, K, dram, rows, stride, length):
        """The last cycle of a STORE whose rows take ``K`` requantizer passes each: row i
        reaches the writer ``K - 1 + i * K`` cycles after ``a`` (where one pass's first row
        would) or when the writer is done with the row before, whichever is later."""
        B, bc, lat = self.B, self.beat_cycles, self.lat
        free = a
        beats = 0
        for i in range(rows):
            start = max(a + K - 1 + i * K, free)
            beats = ((dram + i * stride) % B + length + B - 1) // B
            free = start + 2 + beats * bc + lat
        return free - 2 + 3

    def run(self) -> None:
        self._dispatch_all()
        progress = True
        while progress:
            progress = False
            for q in (_LQ, _CQ, _SQ):
                while self.step(q):
                    progress = True
        self.end = max(self.end, self.disp[-1] + 1 if self.disp else 0)   # FINISH dispatched
        stuck = [Queue(q).name for q in range(3) if self.ptr[q] < len(self.qlist[q])]
        if stuck or len(self.disp) < self.n:
            raise ValueError(f"the program deadlocks: the {', '.join(stuck) or 'dispatch'} queue "
                             f"waits for a token nothing gives")


_LOAD, _STORE, _GEMM, _ALU, _CONFIG, _SYNC, _FINISH = (
    Opcode.LOAD.value, Opcode.STORE.value, Opcode.GEMM.value, Opcode.ALU.value,
    Opcode.CONFIG.value, Opcode.SYNC.value, Opcode.FINISH.value)
_LAYER_KEY = isa.CfgKey.LAYER.value
_MUL_OPS = (isa.AluOp.MUL.value, isa.AluOp.MULH.value)


def _npu_streams(program) -> tuple[list[tuple[int, int]], tuple[str, ...]]:
    from sw.program import HostSegment
    if not program.segments:
        return [(0, program.insn_count)], ()
    streams, host = [], []
    for seg in program.segments:
        if isinstance(seg, HostSegment):
            host.append(seg.name)
        else:
            streams.append((seg.start, seg.count))
    return streams, tuple(host)


def _extra_latency(mac) -> int:
    """Cycles the MAC options (:class:`hw.array.MacOptions` or a preset name) add to the
    array's latency: one for a register after each product, one for registers on the
    multipliers' operands."""
    from hw.array import MacOptions
    opts = MacOptions.cast(mac)
    return int(opts.product_register) + int(opts.operand_register)


def estimate(program, config: NPUConfig | None = None, *,
             dram: DramTiming | None = None, mac=None) -> PerfEstimate:
    """Predict the cycles of one run of ``program`` (a :class:`sw.Program`) on the NPU.

    ``config``: the NPU configuration (default: the program's; it must be the one the
    program was compiled for). ``dram``: the DRAM timing (default: the harness RAM).
    ``mac``: how the array builds its products (:class:`hw.array.MacOptions` or a preset
    name, as ``hw.NPU(config, mac=...)`` takes; default: generic, unpipelined).

    Raises TypeError for a wrong argument type, ValueError when ``config`` is not the
    program's or the program deadlocks, :class:`hw.isa.ISAError` for a word that does
    not decode.
    """
    from sw.program import Program
    if not isinstance(program, Program):
        raise TypeError(f"estimate needs a sw.Program, not {type(program).__name__}")
    config = program.config if config is None else require_config(config)
    if config.hash != program.config.hash:
        raise ValueError(f"the program was compiled for {program.config.describe()}, "
                         f"not {config.describe()}")
    if dram is None:
        dram = DramTiming()
    elif not isinstance(dram, DramTiming):
        raise TypeError(f"dram must be a DramTiming, not {type(dram).__name__}")
    streams, host = _npu_streams(program)
    blob = program.dram[program.insn_base:program.insn_base + INSN_BYTES * program.insn_count]
    return _estimate(blob.tobytes(), streams, host, config, dram,
                     [(layer["id"], layer["name"]) for layer in program.layers],
                     _extra_latency(mac))


def estimate_words(words, config: NPUConfig, *, dram: DramTiming | None = None,
                   mac=None) -> PerfEstimate:
    """Predict the cycles of one instruction stream (``words``: 128-bit ints, FINISH last
    or not) started on the NPU as the driver starts a program.

    Its layers are the CONFIG layer ids it sets, named ``layer <id>``; ``mac`` as for
    :func:`estimate`.
    Raises TypeError for a wrong argument type, ValueError when the stream deadlocks,
    :class:`hw.isa.ISAError` for a word that does not decode.
    """
    require_config(config)
    if dram is None:
        dram = DramTiming()
    elif not isinstance(dram, DramTiming):
        raise TypeError(f"dram must be a DramTiming, not {type(dram).__name__}")
    words = list(words)
    blob = isa.words_to_bytes(words)
    ops, _, records = _decode(blob)
    ids = sorted({rec[1] for op, rec in zip(ops, records)
                  if op == _CONFIG and rec[0] == _LAYER_KEY} - {0})
    return _estimate(blob, [(0, len(words))], (), config, dram,
                     [(i, f"layer {i}") for i in ids], _extra_latency(mac))


def _estimate(blob: bytes, streams, host, config, dram, layer_meta,
              extra_latency: int = 0) -> PerfEstimate:
    """The model run on each NPU stream ``(start, count)`` of the words in ``blob``."""
    ops_all, flags_all, records_all = _decode(blob)
    rows = []
    layer_cycles: dict[int, int] = {}
    busy_by_layer: dict[int, int] = {}
    cycles = busy = 0
    stall = [0, 0, 0]
    offset = 0
    for start, count in streams:
        stop = start + count
        model = _Model(config, dram, ops_all[start:stop], flags_all[start:stop],
                       records_all[start:stop], extra_latency)
        model.run()
        total = int(math.ceil(model.end)) + _DONE_DELAY
        # Per-layer cycles: the compute unit's layer at each counted cycle.
        prev_t, prev_layer = 0, 0
        for when, layer in model.layer_changes:
            when = min(int(math.ceil(when)), total)
            layer_cycles[prev_layer] = layer_cycles.get(prev_layer, 0) + when - prev_t
            prev_t, prev_layer = when, layer
        layer_cycles[prev_layer] = layer_cycles.get(prev_layer, 0) + total - prev_t
        for k, v in model.busy_by_layer.items():
            busy_by_layer[k] = busy_by_layer.get(k, 0) + v
        layer_of = model.layer_of
        base = offset - _TRACE_ORIGIN
        rows.extend((q, j + start, layer_of[j], b + base, e + base, stall)
                    for q, j, b, e, stall in model.spans)
        offset += total
        cycles += total
        busy += model.array_busy
        for q in range(3):
            stall[q] += int(math.ceil(model.stall[q]))
    known = {i for i, _ in layer_meta}
    layers = tuple(LayerEstimate(id=i, name=name, cycles=layer_cycles.get(i, 0),
                                 array_busy_cycles=busy_by_layer.get(i, 0))
                   for i, name in layer_meta)
    return PerfEstimate(
        cycles=cycles, array_busy_cycles=busy, mac_slots=busy * config.macs,
        stall_load_cycles=stall[_LQ], stall_compute_cycles=stall[_CQ],
        stall_store_cycles=stall[_SQ], layers=layers,
        other_cycles=sum(c for k, c in layer_cycles.items() if k not in known),
        npu_segments=len(streams), host_segments=host, dram=dram,
        _span_rows=(tuple(rows), tuple(ops_all)))
