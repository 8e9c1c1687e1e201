"""The device: ``Device(config, backend).run(program, x)``, the top of the runtime.

Layers, as in Glasgow: :mod:`hw.driver` (the CSR sequences over a register bus),
then the backends (:mod:`sw.runtime.backends`, one interface, a registry), then
this class, which decides what crosses between host and device:

* a program's ``constants`` and ``state`` regions are written once, when the
  program is first run on this device (or after another program replaced it);
* each run writes the ``input`` region and reads the ``output`` region back;
  ``scratch`` is never sent; ``state`` stays in device DRAM between runs and is
  read or written only on request (:meth:`Device.read_state`, :meth:`Device.write_state`).

One program is resident at a time: running another one loads its constants
(and its initial state) over the first.

The device refuses a program compiled for another configuration (its hash is
stored in the program; the rtl backend also reads it from the CONFIG_HASH register).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from hw.config import NPUConfig, require_config
from hw.isa import INSN_BYTES

from ..program import HostSegment, Program
from .backends import BACKENDS, BackendError, RunRecord, get_backend
from .stats import LAYER_KEYS

__all__ = ["Device", "DeviceError", "BACKENDS"]


class DeviceError(RuntimeError):
    """The device cannot run this program or input, or the NPU stopped with an error."""


class Device:
    """An NPU behind one of the backends in :data:`BACKENDS`.

    Parameters: ``config`` (the :class:`hw.NPUConfig` of the NPU), ``backend`` (a
    name in :data:`BACKENDS`), ``progress`` (print what a slow backend is doing),
    ``trace`` (record the instruction timeline of every run in :attr:`spans`; the
    ``rtl`` backend does), ``max_cycles`` (the cycles an NPU run may take before it is a
    timeout, on the backends that count cycles: ``rtl`` and ``board``; default: 20
    cycles per MAC slot of the program plus two million); other keyword options go to
    the backend (the board's ``port``, ``baud``, ...).
    Raises TypeError for a config that is not an NPUConfig, a trace that is not a bool
    or a max_cycles that is not an int, ValueError for an unknown backend (naming the
    known ones), a backend that cannot trace or a max_cycles under 1.
    """

    def __init__(self, config: NPUConfig, backend: str = "func", *, progress: bool = False,
                 trace: bool = False, max_cycles: int | None = None, **options) -> None:
        require_config(config)
        cls = get_backend(backend)
        if not isinstance(trace, bool):
            raise TypeError(f"trace must be a bool, not {type(trace).__name__}")
        if max_cycles is not None:
            if not isinstance(max_cycles, int) or isinstance(max_cycles, bool):
                raise TypeError(f"max_cycles must be an int, not {type(max_cycles).__name__}")
            if max_cycles < 1:
                raise ValueError(f"max_cycles must be at least 1, not {max_cycles}")
        #: The cycle budget of one NPU run (None: from the program's MACs).
        self.max_cycles = max_cycles
        self.config = config
        self.backend = backend
        self.progress = progress
        try:
            self._impl = cls(config, progress=progress, **options)
        except TypeError as exc:
            if options and "unexpected keyword" in str(exc):
                raise TypeError(f"the {backend} backend takes no option "
                                f"{', '.join(sorted(options))}") from None
            raise
        if trace:
            try:
                self._impl.set_trace(True)
            except BackendError as exc:
                self._impl.close()
                raise ValueError(str(exc)) from None
        self._resident: Program | None = None
        self.stats: dict = {}
        #: The instruction timeline of the last :meth:`run` (a list of
        #: :class:`sw.analysis.trace.Span`, indices into the program, cycles from its
        #: start; NPU segments and the samples of a batch one after another), or None
        #: without ``trace``.
        self.spans: list | None = None

    # ------------------------------------------------------------------ programs in DRAM
    def load(self, program: Program) -> None:
        """Make ``program`` resident: write its constants and initial state (once).

        Raises TypeError for a non-Program, DeviceError for a program compiled for
        another configuration or one the backend cannot hold.
        """
        self._check(program)
        if self._resident is program:
            return
        self._resident = None
        try:
            self._impl.allocate(len(program.dram))
            for region in program.regions_of("constants", "state"):
                self._impl.write(region.addr, program.dram[region.addr:region.end])
        except BackendError as exc:
            raise DeviceError(str(exc)) from None
        self._resident = program

    def _check(self, program: Program) -> None:
        if not isinstance(program, Program):
            raise TypeError(f"run expects a Program from sw.compile, not {type(program).__name__}")
        if program.config_hash != self.config.hash:
            raise DeviceError(
                f"program was compiled for configuration {program.config_hash:08x} "
                f"({program.config.rows}x{program.config.cols}); this device is "
                f"{self.config.hash:08x} ({self.config.rows}x{self.config.cols})")

    def read_state(self, program: Program, name: str) -> np.ndarray:
        """The bytes of ``program``'s state region ``name`` as they are on the device now."""
        region = self._state_region(program, name)
        return self._impl.read(region.addr, region.nbytes)

    def write_state(self, program: Program, name: str, data: np.ndarray | bytes) -> None:
        """Replace the contents of ``program``'s state region ``name`` on the device.

        Raises ValueError when ``data`` is not exactly the region's size.
        """
        region = self._state_region(program, name)
        data = np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray)) \
            else np.asarray(data).view(np.uint8).reshape(-1)
        if len(data) != region.nbytes:
            raise ValueError(f"state region {name!r} holds {region.nbytes} bytes, "
                             f"not {len(data)}")
        self._impl.write(region.addr, data)

    def _state_region(self, program: Program, name: str):
        self.load(program)
        region = program.region(name)
        if region.kind != "state":
            raise ValueError(f"region {name!r} is {region.kind}, not state")
        return region

    def close(self) -> None:
        """Release the backend (the rtl simulator process); the device can be used again."""
        self._impl.close()
        self._resident = None

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ running
    def run(self, program: Program, x: torch.Tensor) -> torch.Tensor:
        """Run ``program`` on input ``x`` (one sample or a batch); returns the float output.

        The input is quantized on the host with the program's input scale and zero
        point; the int8 output is dequantized the same way the golden does. The
        statistics of the call are in :attr:`stats`.
        Raises TypeError / ValueError for a wrong input, DeviceError when the device
        cannot run the program or the NPU stops with an error.
        """
        self._check(program)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, not {type(x).__name__}")
        if program.input.dtype == "int64":
            if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
                raise TypeError(f"input must be integer token ids, not {x.dtype}")
        elif not x.dtype.is_floating_point:
            raise TypeError(f"input must be a float tensor, not {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError("input holds NaN or infinite values")
        shape = tuple(program.input.shape)
        batched = tuple(x.shape[1:]) == shape
        if not batched and tuple(x.shape) != shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not match the program's input "
                             f"{shape} (or [batch, *{shape}])")
        samples = program.input.quantize(x if batched else x.unsqueeze(0))
        written, read = self._impl.bytes_written, self._impl.bytes_read
        self.load(program)      # the constants, when this call is the program's first
        t0 = time.perf_counter()
        outs, records = [], []
        for i, sample in enumerate(samples):
            out, record = self._run_sample(program, sample, i, len(samples))
            outs.append(out)
            records.append(record)
        wall = time.perf_counter() - t0
        y = program.output.dequantize(np.stack(outs))
        self.stats = self._summarize(program, records, wall)
        self.spans = _join_spans([(r.spans, 0, r.counters.cycles) for r in records]) \
            if records[0].spans is not None else None
        self.stats["host_write_bytes"] = self._impl.bytes_written - written
        self.stats["host_read_bytes"] = self._impl.bytes_read - read
        self.stats["host_ops"] = [
            {"name": seg.name, "op": seg.op, "where": seg.where,
             "seconds": sum(r.host_seconds.get(seg.name, 0.0) for r in records)}
            for seg in program.segments if isinstance(seg, HostSegment)]
        return y if batched else y[0]

    def _run_sample(self, program: Program, sample: np.ndarray, index: int,
                    count: int) -> tuple[np.ndarray, RunRecord]:
        """One sample: write the input region, run the program, read the output region."""
        inp, out = program.input, program.output
        self._impl.write(inp.addr, inp.to_device(sample))
        if not program.segments:
            record = self._run_npu(program, program.insn_base, program.insn_count, index, count)
        else:
            record = self._run_segments(program, index, count)
        return out.from_device(self._impl.read(out.addr, out.nbytes)), record

    def _run_segments(self, program: Program, index: int, count: int) -> RunRecord:
        """A program with host operators: its NPU segments on the backend, each host
        operator between them on the host, reading its operands from device DRAM and
        writing its output back (those bytes count as host traffic)."""
        records, starts, host_seconds = [], [], {}
        for seg in program.segments:
            if isinstance(seg, HostSegment):
                t0 = time.perf_counter()
                seg.run(self._impl.read, self._impl.write)
                host_seconds[seg.name] = time.perf_counter() - t0
            else:
                records.append(self._run_npu(program, program.insn_base + INSN_BYTES * seg.start,
                                             seg.count, index, count))
                starts.append(seg.start)
        record = _join_records(records, host_seconds)
        if records[0].spans is not None:
            record.spans = _join_spans([(r.spans, start, r.counters.cycles)
                                        for r, start in zip(records, starts)])
        return record

    def _run_npu(self, program: Program, insn_base: int, insn_count: int, index: int,
                 count: int) -> RunRecord:
        """Run one instruction stream of the resident program on the backend."""
        max_cycles = self.max_cycles or \
            20 * sum(l.get("macs", 0) for l in program.layers) // self.config.macs + 2_000_000

        def show(cycles, seconds):
            print(f"{self.backend}: run {index + 1}/{count}: {cycles / 1e6:.1f} M cycles "
                  f"simulated in {seconds:.0f} s", file=sys.stderr, flush=True)
        record = self._impl.run(insn_base, insn_count, (0, len(program.dram)),
                                max_cycles=max_cycles, progress=show if self.progress else None)
        if record.status != "done":
            self._resident = None      # what the failed run wrote is not trusted: reload
            if record.status == "timeout":
                raise DeviceError(f"the run timed out: the NPU had not finished after "
                                  f"{max_cycles:,} cycles (Device max_cycles); it is reset "
                                  "before the next run")
            raise DeviceError(f"the NPU stopped: {record.error}")
        return record

    def _summarize(self, program: Program, records: list[RunRecord], wall: float) -> dict:
        """The statistics of one call: the same keys on every backend, None where the
        backend does not measure a figure."""
        cfg = self.config
        runs = len(records)
        total = records[0].counters
        for r in records[1:]:
            total = total + r.counters
        stats = {"backend": self.backend, "runs": runs, "wall_seconds": wall,
                 "sim_seconds": sum(r.seconds for r in records),
                 "instructions": program.insn_count, **total.as_dict()}
        cycles = stats["cycles"]
        # Two MAC figures: the model's real MACs and the array's MAC slots (the MACS
        # counter, what the tiles occupy); "utilization" is the slot one (as it always was).
        stats["mac_slots"] = stats["macs"]
        stats["real_macs"] = runs * sum(layer["macs"] for layer in program.layers)
        stats["slot_utilization"] = stats["macs"] / (cycles * cfg.macs) if cycles else None
        stats["real_utilization"] = stats["real_macs"] / (cycles * cfg.macs) if cycles else None
        stats["utilization"] = stats["slot_utilization"]
        stats["cycles_per_run"] = cycles / runs if cycles is not None else None
        timed = all(r.layer_cycles is not None for r in records)
        layers = []
        for layer in program.layers:
            entry = dict.fromkeys(LAYER_KEYS)
            entry.update(id=layer["id"], name=layer["name"], op=layer["op"], macs=layer["macs"],
                         mac_slots=layer.get("mac_slots"))   # None in programs saved before it
            per_layer = records[0].per_layer
            if per_layer is not None and layer["id"] in per_layer:
                d = per_layer[layer["id"]]
                entry.update(dram_read_bytes=d["dram_read_bytes"],
                             dram_write_bytes=d["dram_write_bytes"], insns=d["insns"])
            if timed:
                # Per run: from the compute unit entering the layer to it entering the next.
                c = sum(r.layer_cycles.get(layer["id"], 0) for r in records) / runs
                entry["cycles"] = c
                entry["utilization"] = layer["macs"] / (c * cfg.macs) if c else 0.0
                if entry["mac_slots"] is not None:
                    entry["slot_utilization"] = entry["mac_slots"] / (c * cfg.macs) if c else 0.0
            layers.append(entry)
        known = {layer["id"] for layer in program.layers}
        stats["other_cycles"] = sum(c for r in records for k, c in r.layer_cycles.items()
                                    if k not in known) / runs if timed else None
        stats["layers"] = layers
        return stats



def _join_records(records: list[RunRecord], host_seconds: dict[str, float]) -> RunRecord:
    """The record of one sample run as several NPU segments with host operators between
    them: counters, cycles and per-layer counts add up."""
    first = records[0]
    counters = first.counters
    layer_cycles = dict(first.layer_cycles) if first.layer_cycles is not None else None
    per_layer = {k: dict(v) for k, v in first.per_layer.items()} \
        if first.per_layer is not None else None
    for r in records[1:]:
        counters = counters + r.counters
        if layer_cycles is not None and r.layer_cycles is not None:
            for k, c in r.layer_cycles.items():
                layer_cycles[k] = layer_cycles.get(k, 0) + c
        if per_layer is not None and r.per_layer is not None:
            for k, d in r.per_layer.items():
                mine = per_layer.setdefault(k, {})
                for key, v in d.items():
                    if isinstance(v, dict):
                        mine[key] = {n: mine.get(key, {}).get(n, 0) + x for n, x in v.items()}
                    else:
                        mine[key] = mine.get(key, 0) + v
    return RunRecord(status="done", error="", counters=counters,
                     seconds=sum(r.seconds for r in records), layer_cycles=layer_cycles,
                     per_layer=per_layer, host_seconds=host_seconds)


def _join_spans(parts) -> list:
    """Timelines of runs one after another: ``(spans, first_index, cycles)`` per run,
    each run's spans moved by the cycles of the runs before and their indices by
    ``first_index`` (where the run's stream starts in the program)."""
    from dataclasses import replace

    joined, offset = [], 0
    for spans, first, cycles in parts:
        joined += [replace(s, index=s.index + first, begin=s.begin + offset, end=s.end + offset)
                   for s in spans]
        offset += cycles
    return joined
