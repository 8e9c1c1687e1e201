"""Instruction timelines: what ran on each queue, when.

A :class:`Span` is one instruction on one of the NPU's three queues (load,
compute, store), from the cycle it starts to the cycle it ends (exclusive), with
the layer it belongs to. The performance model (:mod:`sw.analysis.perf`) and the
``rtl`` backend (``sw.Device(config, "rtl", trace=True)``, :attr:`sw.Device.spans`)
both give a program's spans; this module turns them into Chrome trace-event JSON
that opens in Perfetto (https://ui.perfetto.dev): :func:`write_chrome_trace`, read
back and checked by :func:`load_chrome_trace`.

Instructions are numbered by their index in the program; the k-th span of a queue
is the k-th instruction of that queue in program order (:func:`hw.isa.queue_of`),
so two timelines of one program compare with :func:`queue_sequences`. On the RTL a
span is the time the instruction holds its unit (``hw/core``): a LOAD or STORE from
the cycle it takes its tokens to the cycle its last row is written; a GEMM while
its activation rows enter the array (so the GEMM spans add up to ``ARRAY_BUSY``);
an ALU from the cycle the array has drained to its last write; CONFIG and SYNC one
cycle. The layer spans (:func:`layer_spans`) follow the compute unit from one
CONFIG to the next, as the per-layer cycles of ``device.stats`` do.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hw.isa import Instruction, Opcode, Queue

__all__ = ["Span", "LayerSpan", "QUEUE_NAMES", "program_queues", "spans_from_events",
           "queue_sequences", "layer_spans", "layer_cycles", "chrome_trace",
           "write_chrome_trace", "load_chrome_trace", "check_chrome_trace"]

#: The queues, by the names traces use (one track each).
QUEUE_NAMES = {Queue.LOAD: "load", Queue.COMPUTE: "compute", Queue.STORE: "store"}

#: Track (thread id) of each queue's name in the Chrome trace, and of the layers.
_TIDS = {"load": 1, "compute": 2, "store": 3}
_LAYER_TID = 4
_PID = 1


@dataclass(frozen=True)
class Span:
    """One instruction's time on its queue.

    ``index`` is the instruction's position in the program (0 = first word);
    ``begin`` is the first cycle it occupies its unit and ``end`` the cycle after
    its last (so ``end - begin`` cycles), counted from the program's start.
    ``stall`` is the cycles the instruction waited for its dependency tokens before
    it started (they add up to the ``STALL_<QUEUE>`` counter; 0 where not measured).
    """
    queue: str          #: "load", "compute" or "store"
    index: int          #: instruction index in the program
    opcode: str         #: Opcode name ("LOAD", "GEMM", "ALU", "STORE", "SYNC", ...)
    layer: int          #: the CONFIG layer id in force when it was dispatched
    begin: int
    end: int
    stall: int = 0      #: cycles it waited for tokens


@dataclass(frozen=True)
class LayerSpan:
    """The cycles ``[begin, end)`` the compute unit spent in layer ``layer`` (one
    stretch; a layer id 0 stretch is the time before the first CONFIG)."""
    layer: int
    begin: int
    end: int


def program_queues(instructions: Iterable[Instruction]) -> dict[str, list[tuple[int, Instruction, int]]]:
    """Each queue's instructions in program order: ``(index, instruction, layer)``.

    ``layer`` is the layer id the dispatcher holds when the instruction is dispatched
    (0 before the first CONFIG); a CONFIG belongs to the layer it starts. Instructions
    after the first FINISH are never dispatched and are left out.

    Raises TypeError when an element is not a :class:`hw.isa.Instruction`.
    """
    queues: dict[str, list] = {name: [] for name in QUEUE_NAMES.values()}
    layer = 0
    for index, insn in enumerate(instructions):
        if not isinstance(insn, Instruction):
            raise TypeError(f"instruction {index} is a {type(insn).__name__}, not an Instruction")
        if insn.opcode is Opcode.FINISH:
            break
        if insn.opcode is Opcode.CONFIG:
            layer = insn.value
        queues[QUEUE_NAMES[insn.queue]].append((index, insn, layer))
    return queues


def spans_from_events(events: np.ndarray, instructions: Iterable[Instruction], *,
                      complete: bool = True) -> list[Span]:
    """The spans of one run from the harness's trace events.

    Parameters
    ----------
    events: rows ``(cycle, queue, kind, stall)`` as
        :meth:`sim.rtl.HarnessSession.trace_events` returns them (kind 0 a start,
        1 a completion; ``queue`` a :class:`hw.isa.Queue` value).
    instructions: the run's instruction stream, decoded (index 0 = the first word run;
        what follows the first FINISH is not read).
    complete: every dispatched instruction must have started and completed (a run
        that ended ``done``); with False, the spans of those that did (a run stopped
        by an error).

    Returns the spans sorted by start (then queue), indices into ``instructions``.

    Raises
    ------
    ValueError: ``events`` is not an (N, 4) integer array, a queue completes an
        instruction it has not started, or (``complete``) the numbers of starts and
        completions differ from the instructions of the queue.
    """
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != 4 or not np.issubdtype(events.dtype, np.integer):
        raise ValueError(f"trace events must be an (N, 4) integer array, not {events.dtype} "
                         f"{events.shape}")
    queues = program_queues(instructions)
    spans = []
    for q, name in QUEUE_NAMES.items():
        mine = events[events[:, 1] == q.value]
        starts = mine[mine[:, 2] == 0]
        ends = mine[mine[:, 2] == 1]
        expected = queues[name]
        if len(ends) > len(starts) or np.any(ends[:, 0] < starts[:len(ends), 0]):
            raise ValueError(f"the {name} queue completes an instruction before starting it")
        if complete and not len(starts) == len(ends) == len(expected):
            raise ValueError(f"the {name} queue has {len(expected)} instructions but the trace "
                             f"has {len(starts)} starts and {len(ends)} completions")
        if len(starts) > len(expected):
            raise ValueError(f"the {name} queue has {len(expected)} instructions but the trace "
                             f"has {len(starts)} starts")
        for (index, insn, layer), start, end in zip(expected, starts, ends):
            spans.append(Span(queue=name, index=index, opcode=insn.opcode.name, layer=layer,
                              begin=int(start[0]), end=int(end[0]) + 1, stall=int(start[3])))
    spans.sort(key=lambda s: (s.begin, _TIDS[s.queue]))
    return spans


def queue_sequences(spans: Iterable[Span]) -> dict[str, list[tuple[int, str]]]:
    """Each queue's instructions in the order they ran: ``(index, opcode)`` by start.

    Two timelines of one program (the RTL's and the performance model's) ran the same
    instructions in the same order on each queue when these are equal.
    """
    by_queue: dict[str, list[Span]] = {name: [] for name in QUEUE_NAMES.values()}
    for s in spans:
        by_queue.setdefault(s.queue, []).append(s)
    return {q: [(s.index, s.opcode) for s in sorted(ss, key=lambda s: (s.begin, s.index))]
            for q, ss in by_queue.items()}


def layer_spans(spans: Iterable[Span], *, cycles: int | None = None) -> list[LayerSpan]:
    """The stretches of time the compute unit spent in each layer.

    A layer starts when the compute unit completes its CONFIG (the next cycle runs in
    it) and lasts until the next CONFIG completes; the first stretch (layer 0) runs from
    cycle 0 to the first CONFIG's completion, the last to ``cycles`` (the run's CYCLES;
    default: the last span's end). Empty stretches are left out.

    Raises ValueError when ``cycles`` ends before the last span.
    """
    spans = list(spans)
    last = max((s.end for s in spans), default=0)
    if cycles is None:
        cycles = last
    elif cycles < last:
        raise ValueError(f"cycles={cycles} ends before the last span (cycle {last})")
    out = []
    layer, begin = 0, 0
    configs = sorted((s for s in spans if s.queue == "compute" and s.opcode == "CONFIG"),
                     key=lambda s: s.end)
    for s in configs:
        if s.end > begin:
            out.append(LayerSpan(layer, begin, s.end))
        layer, begin = s.layer, s.end
    if cycles > begin:
        out.append(LayerSpan(layer, begin, cycles))
    return out


def layer_cycles(spans: Iterable[Span], *, cycles: int | None = None) -> dict[int, int]:
    """Cycles per layer id from :func:`layer_spans` (what ``device.stats`` reports per
    layer on the rtl backend, measured apart by the harness)."""
    total: dict[int, int] = {}
    for ls in layer_spans(spans, cycles=cycles):
        total[ls.layer] = total.get(ls.layer, 0) + ls.end - ls.begin
    return total


def _layer_names(layers) -> dict[int, str]:
    if layers is None:
        return {}
    names = {}
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict) or "id" not in layer or "name" not in layer:
            raise TypeError(f"layers[{k}] must be a dict with 'id' and 'name' "
                            f"(as Program.layers), not {layer!r}")
        names[layer["id"]] = layer["name"]
    return names


def chrome_trace(spans: Iterable[Span], *, layers: Sequence[dict] | None = None,
                 clock_mhz: float | None = None) -> dict:
    """The spans as a Chrome trace-event document (see :func:`write_chrome_trace`)."""
    if clock_mhz is not None and (isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float))
                                  or not clock_mhz > 0 or not math.isfinite(clock_mhz)):
        raise ValueError(f"clock_mhz must be a positive number, not {clock_mhz!r}")
    names = _layer_names(layers)
    spans = list(spans)
    for s in spans:
        if not isinstance(s, Span):
            raise TypeError(f"spans must be Span objects, not {type(s).__name__}")
        if s.queue not in _TIDS:
            raise ValueError(f"span of instruction {s.index} is on an unknown queue {s.queue!r}")
        if s.end < s.begin:
            raise ValueError(f"span of instruction {s.index} ends (cycle {s.end}) before it "
                             f"begins (cycle {s.begin})")

    def ts(cycle: int) -> float:
        return cycle / clock_mhz if clock_mhz else cycle

    def layer_name(layer: int) -> str:
        return names.get(layer, f"layer {layer}")

    events = [
        {"name": "process_name", "ph": "M", "pid": _PID, "tid": 0, "args": {"name": "NPU"}},
        {"name": "thread_name", "ph": "M", "pid": _PID, "tid": _LAYER_TID, "args": {"name": "layers"}},
        {"name": "thread_sort_index", "ph": "M", "pid": _PID, "tid": _LAYER_TID,
         "args": {"sort_index": 0}},
    ]
    for name, tid in _TIDS.items():
        events += [
            {"name": "thread_name", "ph": "M", "pid": _PID, "tid": tid, "args": {"name": name}},
            {"name": "thread_sort_index", "ph": "M", "pid": _PID, "tid": tid,
             "args": {"sort_index": tid}},
        ]
    for ls in layer_spans(spans):
        events.append({"name": layer_name(ls.layer), "cat": "layer", "ph": "X", "pid": _PID,
                       "tid": _LAYER_TID, "ts": ts(ls.begin), "dur": ts(ls.end - ls.begin),
                       "args": {"layer": ls.layer, "cycles": ls.end - ls.begin,
                                "begin_cycle": ls.begin}})
    for s in sorted(spans, key=lambda s: (s.begin, _TIDS[s.queue])):
        events.append({"name": s.opcode, "cat": s.queue, "ph": "X", "pid": _PID,
                       "tid": _TIDS[s.queue], "ts": ts(s.begin), "dur": ts(s.end - s.begin),
                       "args": {"index": s.index, "opcode": s.opcode, "layer": s.layer,
                                "layer_name": layer_name(s.layer), "cycles": s.end - s.begin,
                                "stall_cycles": s.stall, "begin_cycle": s.begin}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"time_unit": "us" if clock_mhz else "cycles",
                          "clock_mhz": clock_mhz, "instructions": len(spans)}}


def write_chrome_trace(path: str | pathlib.Path, spans: Iterable[Span], *,
                       layers: Sequence[dict] | None = None,
                       clock_mhz: float | None = None) -> pathlib.Path:
    """Write ``spans`` as Chrome trace-event JSON (open it in https://ui.perfetto.dev).

    One process "NPU" with a track per queue (load, compute, store: an "X" event per
    instruction, named by its opcode, with its index, layer, cycles and token stall in
    ``args``) and a track "layers" (an "X" event per stretch of :func:`layer_spans`,
    named from ``layers``).

    Parameters
    ----------
    path: the file to write.
    spans: the timeline (:class:`Span` s).
    layers: the program's layers (``Program.layers``: dicts with ``id`` and ``name``)
        to name the layer spans; without, they are called "layer ID".
    clock_mhz: timestamps in microseconds at this clock; without, one cycle is shown
        as one microsecond (``otherData.time_unit`` says which).

    Returns the path written.

    Raises
    ------
    TypeError: a span is not a :class:`Span` or a layer not a dict with id and name.
    ValueError: a span on an unknown queue or ending before it begins, or a clock that is
        not positive.
    """
    doc = chrome_trace(spans, layers=layers, clock_mhz=clock_mhz)
    path = pathlib.Path(path)
    path.write_text(json.dumps(doc))
    return path


def check_chrome_trace(doc: object) -> dict:
    """Check that ``doc`` is a trace-event document as Perfetto reads it; returns it.

    Checked: a ``traceEvents`` list of objects with a phase ``ph``; metadata ("M")
    events with a known name and ``args``; complete ("X") events with a name, integer
    ``pid`` and ``tid``, finite ``ts`` and ``dur`` at least 0, on a named track, and not
    overlapping on their track.

    Raises ValueError naming the first event that fails.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise ValueError("a trace-event document is an object with a 'traceEvents' list")
    named, slices = set(), {}
    for k, ev in enumerate(doc["traceEvents"]):
        where = f"traceEvents[{k}]"
        if not isinstance(ev, dict) or not isinstance(ev.get("ph"), str):
            raise ValueError(f"{where} is not an event object with a phase 'ph': {ev!r}")
        if ev["ph"] == "M":
            if ev.get("name") not in ("process_name", "thread_name", "process_sort_index",
                                      "thread_sort_index") or not isinstance(ev.get("args"), dict):
                raise ValueError(f"{where}: metadata event with unknown name or no args: {ev!r}")
            if ev["name"] == "thread_name":
                named.add((ev.get("pid"), ev.get("tid")))
        elif ev["ph"] == "X":
            for key, kind in (("name", str), ("pid", int), ("tid", int)):
                if not isinstance(ev.get(key), kind) or isinstance(ev.get(key), bool):
                    raise ValueError(f"{where}: '{key}' must be a {kind.__name__}: {ev!r}")
            for key in ("ts", "dur"):
                v = ev.get(key)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                        or v < 0:
                    raise ValueError(f"{where}: '{key}' must be a finite number >= 0: {ev!r}")
            slices.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], ev["dur"], k))
        else:
            raise ValueError(f"{where}: phase {ev['ph']!r} is not one this trace uses (M, X)")
    for track, events in slices.items():
        if track not in named:
            raise ValueError(f"track pid={track[0]} tid={track[1]} has events but no thread_name")
        events.sort()
        for (t0, d0, k0), (t1, _, k1) in zip(events, events[1:]):
            if t1 < t0 + d0 - 1e-9 * max(1.0, abs(t0)):
                raise ValueError(f"traceEvents[{k1}] starts inside traceEvents[{k0}] on track "
                                 f"pid={track[0]} tid={track[1]}")
    return doc


def load_chrome_trace(path: str | pathlib.Path) -> dict:
    """Read a trace written by :func:`write_chrome_trace` (or any trace of M and X
    events) and check it (:func:`check_chrome_trace`).

    Raises ValueError when the file is not JSON or not a valid trace; OSError when it
    cannot be read.
    """
    text = pathlib.Path(path).read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return check_chrome_trace(doc)
