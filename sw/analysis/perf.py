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
from dataclasses import dataclass
from functools import lru_cache

from hw import isa
from hw.config import NPUConfig, require_config
from hw.isa import DRAM_ELEM_BYTES, INSN_BYTES, PARAM_GROUP_ROWS, Opcode, Queue, TokenQueue
from hw.core.fetch import FIFO_DEPTH as FETCH_DEPTH
from hw.requant import Requantizer

from .trace import QUEUE_NAMES, Span

__all__ = ["DramTiming", "LayerEstimate", "PerfEstimate", "estimate"]

# Fixed pipeline depths of the RTL, in cycles (see the module docs of hw/core/*).
_FIFO_LATENCY = 2          # SyncFIFOBuffered: written in cycle t, readable in t + 2
_STORE_FIFO_DEPTH = 16     # hw/core/store.py _FIFO_DEPTH
_START_DELAY = 1           # START to the first instruction fetch
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
    spans: tuple[Span, ...]               #: one per load, compute and store instruction
    npu_segments: int                     #: NPU instruction streams run
    host_segments: tuple[str, ...]        #: host operators: no NPU cycles counted for them
    dram: DramTiming

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


def _beats(addr: int, nbytes: int, beat: int) -> int:
    return (addr % beat + nbytes + beat - 1) // beat


class _Model:
    """The simulation state of one NPU segment."""

    def __init__(self, config: NPUConfig, dram: DramTiming, insns, layer0: int) -> None:
        cfg = self.cfg = config
        self.insns = insns
        self.B = cfg.dma_bytes
        bpc = dram.bytes_per_cycle
        self.beat_cycles = 1.0 if bpc is None or bpc >= self.B else self.B / bpc
        self.lat = dram.latency - 1          # extra read latency over the harness RAM
        self.insn_beats = _beats(0, INSN_BYTES, self.B) * self.beat_cycles
        self.L = cfg.rows + cfg.cols - 1    # the array's latency
        self.depth = cfg.insn_queue_depth
        self.tok_depth = cfg.token_queue_depth
        n = len(insns)
        self.n = n
        self.fetch = []                      # AR cycle of each word fetched
        self.disp = []                       # dispatch cycle of each word
        self.queue_of = [None] * n
        self.qlist = {q: [] for q in Queue}  # instruction indices per queue, in order
        self.take = {q: [] for q in Queue}   # cycle each was taken from its queue
        self.ptr = {q: 0 for q in Queue}
        self.ready = {q: 0 for q in Queue}   # the unit's IDLE: the earliest take
        self.pushes = {t: [] for t in TokenQueue}   # give cycle of each push
        self.pushes_started = {t: 0 for t in TokenQueue}
        self.pops = {t: [] for t in TokenQueue}     # start cycle of each pop
        self.stall = {q: 0 for q in Queue}
        self.spans = []
        self.disp_layer = layer0
        self.layer_of = [layer0] * n
        # compute unit
        self.last_buf = 0
        self.buf_free = [0, 0]               # first cycle the weight buffer may be written
        self.s_h = -10 ** 9                  # handoff cycle of the GEMM streaming last
        self.s_m = 0
        self.s_inp = 0
        self.pipe_empty = 0
        self.array_busy = 0
        self.busy_by_layer = {}
        self.cu_layer = layer0
        self.layer_changes = []              # (cycle, layer) as the compute unit sees them
        # load bus
        self.ram_free = 0
        self.end = 0

    # ------------------------------------------------------------ fetch and dispatch
    def _dispatch_all(self) -> None:
        insns, depth = self.insns, self.depth
        fetch, disp = self.fetch, self.disp
        while len(disp) < self.n:
            j = len(disp)
            self._fetch_ahead()
            t = fetch[j] + self.lat + self.insn_beats + 1 + _FIFO_LATENCY
            if j:
                t = max(t, disp[-1] + 1)
            insn = insns[j]
            op = insn.opcode
            q = None if op is Opcode.FINISH else isa.queue_of(op, insn.fields.get("queue"))
            if q is not None:
                k = len(self.qlist[q])
                if k >= depth:
                    taken = self.take[q]
                    if k - depth >= len(taken):
                        return                   # the queue is full until its unit takes one
                    t = max(t, taken[k - depth] + 1)
                self.qlist[q].append(j)
            self.queue_of[j] = q
            disp.append(t)
            self._fetch_ahead()
            self.layer_of[j] = self.disp_layer
            if op is Opcode.CONFIG and insn.fields["key"] is isa.CfgKey.LAYER:
                self.disp_layer = insn.fields["value"]

    def _fetch_ahead(self) -> None:
        """Time every fetch the dispatched words make room for (the fetch unit keeps up
        to ``FETCH_DEPTH`` words fetched and not dispatched)."""
        fetch, disp = self.fetch, self.disp
        while len(fetch) < min(self.n, len(disp) + FETCH_DEPTH):
            j = len(fetch)
            f = _START_DELAY if j == 0 else fetch[-1] + self.insn_beats
            if j >= FETCH_DEPTH:
                f = max(f, disp[j - FETCH_DEPTH] + 1)
            fetch.append(f)

    # ------------------------------------------------------------ tokens
    def _wait(self, q: Queue, j: int, t: int):
        """The cycle ``j`` (taken in ``t``) takes its tokens, or None when a token it
        needs is not yet known."""
        f = self.insns[j].fields
        w = t + 1
        for flag, tq in isa.TOKEN_POPS[q].items():
            if f[flag]:
                k = len(self.pops[tq])
                if k >= len(self.pushes[tq]):
                    return None
                w = max(w, self.pushes[tq][k] + 1)
        for flag, tq in isa.TOKEN_PUSHES[q].items():
            if f[flag]:
                k = self.pushes_started[tq] - self.tok_depth
                if k >= 0:
                    if k >= len(self.pops[tq]):
                        return None
                    w = max(w, self.pops[tq][k] + 1)
        for flag, tq in isa.TOKEN_POPS[q].items():
            if f[flag]:
                self.pops[tq].append(w)
        for flag, tq in isa.TOKEN_PUSHES[q].items():
            if f[flag]:
                self.pushes_started[tq] += 1
        return w

    def _give(self, q: Queue, j: int, flag: str, when) -> None:
        if self.insns[j].fields[flag]:
            self.pushes[isa.TOKEN_PUSHES[q][flag]].append(when)

    # ------------------------------------------------------------ the units
    def step(self, q: Queue) -> bool:
        """Run the next instruction of queue ``q`` if it can be timed now."""
        k = self.ptr[q]
        ql = self.qlist[q]
        if k >= len(ql):
            return False
        j = ql[k]
        taken = self.take[q]
        if len(taken) == k:
            # Taken into the unit (its WAIT state): a slot of the queue is free again.
            taken.append(max(self.ready[q], self.disp[j] + _FIFO_LATENCY))
            self._dispatch_all()
        t = taken[k]
        w = self._wait(q, j, t)
        if w is None:
            return False
        self.ptr[q] = k + 1
        self.stall[q] += w - t - 1
        insn = self.insns[j]
        if q is Queue.LOAD:
            end = self._load(insn, w)
        elif q is Queue.COMPUTE:
            end = self._compute(j, insn, w)
        else:
            end = self._store(j, insn, w)
        self.spans.append(Span(queue=QUEUE_NAMES[q], index=j, opcode=insn.opcode.name,
                               layer=self.layer_of[j], begin=int(t), end=int(end)))
        self.end = max(self.end, end)
        return True

    def _load(self, insn, w):
        f = insn.fields
        if insn.opcode is not Opcode.LOAD:
            # SYNC: viewed as a LOAD of no vectors, done in the first RUN cycle.
            self.ready[Queue.LOAD] = w + 2
            if f["push_next"]:
                self.pushes[TokenQueue.L2C].append(w + 1)
            return w + 2
        B = self.B
        bc = self.beat_cycles
        nbytes = f["length"] * DRAM_ELEM_BYTES[f["mem"]]
        pl, pr, xs, nx = f["pad_left"], f["pad_right"], f["x_size"], f["x_stride"]
        row_len = pl + xs + pr
        c = w + 1                            # the walk's next cycle
        pend = []                            # cycles a DMA response is written
        last_resp = -1
        row_data = 0

        def pads(c, k):
            for p in pend:
                if c <= p < c + k:
                    k += 1
            return c + k

        total_vectors = f["y_size"] * xs
        a_first = None
        data_cycles = 0
        if f["pad_top"]:
            c += f["pad_top"] * row_len
        ram = max(self.ram_free, c)
        rows_done = 0
        period = None
        y = f["y_size"]
        addr = f["dram"]
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
                c = pads(c, pl)
            total, b_last, b_prev = _run_beats(addr % B, nx % B, nbytes, xs, B)
            a1 = max(c, ram)
            if a_first is None:
                a_first = a1
            row_data = total * bc
            data_cycles += row_data
            a_n = a1 + (total - b_last) * bc
            ram = a_n + b_last * bc
            resp_last = ram + self.lat + 1
            pend = [p for p in pend if p > a_n]
            if xs >= 2:
                pend.append(a_n + self.lat + 1)
            pend.append(resp_last)
            last_resp = resp_last
            c = a_n + 1
            if pr:
                c = pads(c, pr)
            rows_done += 1
            addr += f["y_stride"]
            if rows_done == 2 and f["y_stride"] % B == 0:
                period = c - c_row
        if f["pad_bottom"]:
            c = pads(c, f["pad_bottom"] * row_len)
        finish = max(c, last_resp + 1)
        # Instruction fetches on the shared read port take its cycles.
        if total_vectors:
            # The other units' work while this LOAD runs frees queue slots: dispatch, and
            # with it fetch, goes on, and the fetches take the read port first.
            extra = 0
            for _ in range(4):
                self._advance_others(finish + extra)
                new = self._fetch_delay(a_first, data_cycles)
                if new == extra:
                    break
                extra = new
            finish += extra
            ram += extra
        self.ram_free = ram
        self.ready[Queue.LOAD] = finish + 1
        if f["push_next"]:
            self.pushes[TokenQueue.L2C].append(finish)
        return finish + 1

    def _advance_others(self, until) -> None:
        """Time the compute and store instructions taken before cycle ``until``."""
        progress = True
        while progress:
            progress = False
            for q in (Queue.COMPUTE, Queue.STORE):
                k = self.ptr[q]
                if k < len(self.qlist[q]):
                    j = self.qlist[q][k]
                    if max(self.ready[q], self.disp[j] + _FIFO_LATENCY) < until and self.step(q):
                        progress = True
                        self._dispatch_all()

    def _fetch_delay(self, start, cycles) -> int:
        """Cycles the fetch unit, first on the shared read port, adds to ``cycles`` of
        load bursts from ``start``: a fetch burst under way holds the port to its end,
        and the fetch unit wins every cycle it asks."""
        fetch, beats = self.fetch, self.insn_beats
        i = bisect.bisect_left(fetch, start - beats + 1)
        t, left = start, cycles
        n = len(fetch)
        while left > 0:
            if i < n and fetch[i] <= t:
                t = max(t, fetch[i] + beats)
                i += 1
                continue
            run = left if i >= n else min(left, fetch[i] - t)
            t += run
            left -= run
        return t - start - cycles

    def _compute(self, j, insn, w):
        f = insn.fields
        op = insn.opcode
        cfg = self.cfg
        C, R, L = cfg.cols, cfg.rows, self.L
        if op is Opcode.GEMM:
            if f["keep_wgt"]:
                nb = self.last_buf
                hs = w + 1
            else:
                nb = 1 - self.last_buf
                r0 = max(w + 1, self.buf_free[nb])
                s_end = self.s_h + self.s_m          # the streamer's last read cycle
                banks = cfg.spad_banks
                if r0 <= s_end:
                    if banks == 1:
                        r0 = s_end + 1
                    elif (f["wgt"] - (self.s_inp + r0 - self.s_h - 1)) % banks == 0:
                        r0 += 1
                hs = r0 + C + 1
                self.last_buf = nb
            h = max(hs, self.s_h + self.s_m)
            m = f["m"]
            self.s_h, self.s_m, self.s_inp = h, m, f["inp"]
            self.buf_free[nb] = h + m + R + 3
            self.pipe_empty = h + m + L + 2
            self.array_busy += m
            self.busy_by_layer[self.cu_layer] = self.busy_by_layer.get(self.cu_layer, 0) + m
            self._give(Queue.COMPUTE, j, "push_prev", h + m)
            self._give(Queue.COMPUTE, j, "push_next", h + m + 1 + L)
            self.ready[Queue.COMPUTE] = h + 1
            return h + m + 2 + L
        d = max(w + 1, self.pipe_empty)
        if op is Opcode.ALU:
            n = f["count"]
            banks = cfg.acc_banks
            if not f["use_imm"]:
                ds, ss = f["dst_stride"], f["src_stride"]
                dst, src = f["dst"], f["src"]
                if banks == 1:
                    n += f["count"]
                elif (ds - ss) % banks == 0:
                    if (dst - src) % banks == 0:
                        n += f["count"]
                else:
                    n += sum(1 for i in range(f["count"]) if (dst - src + i * (ds - ss)) % banks == 0)
            done = d + 1 + n
        else:
            done = d
            if op is Opcode.CONFIG and f["key"] is isa.CfgKey.LAYER:
                self.cu_layer = f["value"]
                self.layer_changes.append((d, f["value"]))
        self._give(Queue.COMPUTE, j, "push_prev", done)
        self._give(Queue.COMPUTE, j, "push_next", done)
        self.ready[Queue.COMPUTE] = done + 1
        return done + 1

    def _store(self, j, insn, w):
        f = insn.fields
        if insn.opcode is not Opcode.STORE:
            # SYNC (the compiler emits none here): its tokens once the unit has it.
            self.ready[Queue.STORE] = w + 2
            self._give(Queue.STORE, j, "push_prev", w + 1)
            return w + 2
        B, bc = self.B, self.beat_cycles
        # PARAM (3 rows + 1), the first row's read, the requantizer, the output FIFO.
        a = w + 1 + PARAM_GROUP_ROWS + 1 + Requantizer.LATENCY + _FIFO_LATENCY
        rows, length, stride = f["rows"], f["length"], f["stride"]
        if rows > 1:
            a += 1      # measured on the RTL: the second row reaches the writer a cycle late
        total, b_last, _ = _run_beats(f["dram"] % B, stride % B, length, rows, B)
        # Each row: the writer's IDLE and ADDR cycles, its beats, the response.
        a_last = a + (2 * (rows - 1) + (total - b_last) * bc) + (rows - 1) * self.lat
        finish = a_last + b_last * bc + 3 + self.lat
        self.ready[Queue.STORE] = finish + 1
        self._give(Queue.STORE, j, "push_prev", finish)
        return finish + 1

    def run(self) -> None:
        self._dispatch_all()
        if self.disp:
            self.end = self.disp[-1] + 1         # FINISH dispatched
        progress = True
        while progress:
            progress = False
            for q in Queue:
                while self.step(q):
                    progress = True
                    self._dispatch_all()
            self._dispatch_all()
        self.end = max(self.end, self.disp[-1] + 1 if self.disp else 0)
        stuck = [q.name for q in Queue if self.ptr[q] < len(self.qlist[q])]
        if stuck or len(self.disp) < self.n:
            raise ValueError(f"the program deadlocks: the {', '.join(stuck) or 'dispatch'} queue "
                             f"waits for a token nothing gives")


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


def estimate(program, config: NPUConfig | None = None, *,
             dram: DramTiming | None = None) -> PerfEstimate:
    """Predict the cycles of one run of ``program`` (a :class:`sw.Program`) on the NPU.

    ``config``: the NPU configuration (default: the program's; it must be the one the
    program was compiled for). ``dram``: the DRAM timing (default: the harness RAM).

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
    words = program.words
    streams, host = _npu_streams(program)
    spans = []
    layer_cycles: dict[int, int] = {}
    busy_by_layer: dict[int, int] = {}
    cycles = busy = 0
    stall = {q: 0 for q in Queue}
    offset = 0
    for start, count in streams:
        insns = [isa.decode(w) for w in words[start:start + count]]
        model = _Model(config, dram, insns, 0)
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
        for s in model.spans:
            spans.append(Span(queue=s.queue, index=s.index + start, opcode=s.opcode, layer=s.layer,
                              begin=s.begin + offset, end=s.end + offset))
        offset += total
        cycles += total
        busy += model.array_busy
        for q in Queue:
            stall[q] += int(model.stall[q])
    known = {layer["id"] for layer in program.layers}
    layers = tuple(LayerEstimate(id=layer["id"], name=layer["name"],
                                 cycles=layer_cycles.get(layer["id"], 0),
                                 array_busy_cycles=busy_by_layer.get(layer["id"], 0))
                   for layer in program.layers)
    spans.sort(key=lambda s: (s.begin, s.index))
    return PerfEstimate(
        cycles=cycles, array_busy_cycles=busy, mac_slots=busy * config.macs,
        stall_load_cycles=stall[Queue.LOAD], stall_compute_cycles=stall[Queue.COMPUTE],
        stall_store_cycles=stall[Queue.STORE], layers=layers,
        other_cycles=sum(c for k, c in layer_cycles.items() if k not in known),
        spans=tuple(spans), npu_segments=len(streams), host_segments=host, dram=dram)
