"""The driver: ``Device(config, backend).run(program, x)``.

Backends share one interface (``execute(program, images) -> (outputs, stats)``):

* ``"func"``: the functional model (numpy, bit-exact, no timing);
* ``"rtl"``: the Verilog from ``hw.build`` in Verilator through the fast harness (the
  in-design RAM, driven by a C++ main, no Python per cycle), statistics read from the
  CSRs (cycles, MACs, DMA bytes, stalls).

The device refuses a program compiled for another configuration (its hash is
stored in the program and read from the hardware's CONFIG_HASH register).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import torch

from hw.config import NPUConfig
from hw.isa import INSN_BYTES

from .program import HostSegment, Program

__all__ = ["Device", "DeviceError", "BACKENDS"]

BACKENDS = ("func", "rtl")


class DeviceError(RuntimeError):
    """The device cannot run this program or input, or the NPU stopped with an error."""


class _FuncBackend:
    name = "func"

    def __init__(self, config: NPUConfig) -> None:
        from sim.plan import PlannedModel
        self.model = PlannedModel(config)

    def execute(self, program: Program, images: list[np.ndarray], progress: bool):
        from sim.functional import NPUError
        outs, per_run = [], []
        for dram in images:
            t0 = time.perf_counter()
            try:
                counts = self.model.run(dram, program.insn_base, program.insn_count)
            except NPUError as exc:
                raise DeviceError(f"the NPU stopped: {exc}") from None
            outs.append(dram)
            per_run.append({"wall_seconds": time.perf_counter() - t0, "macs": counts.macs,
                            "dram_read_bytes": counts.dram_read_bytes,
                            "dram_write_bytes": counts.dram_write_bytes,
                            "insn_read_bytes": counts.insn_read_bytes,
                            "per_layer": {k: v.as_dict() for k, v in counts.per_layer.items()}})
        return outs, per_run


class _RTLBackend:
    name = "rtl"

    def __init__(self, config: NPUConfig) -> None:
        # The C++ driver of the fast harness: the same Verilog and in-design RAM as the
        # cocotb regression, with no Python in the loop while the NPU runs.
        self.config = config
        self.sim = None        # built on first use, so that a Device is cheap to create

    def execute(self, program: Program, images: list[np.ndarray], progress: bool):
        from hw.isa import ErrorCode
        from sim.rtl import Job
        if self.sim is None:
            if progress:
                print("rtl: building the simulator for "
                      f"{self.config.describe()} (cached after the first time) ...", file=sys.stderr)
            from sim.rtl import FastRTLSimulator
            self.sim = FastRTLSimulator(self.config)
        max_cycles = 20 * sum(l.get("macs", 0) for l in program.layers) // self.config.macs + 2_000_000
        jobs = [Job(img, program.insn_base, program.insn_count, max_cycles=max_cycles,
                    name=f"sample{i}") for i, img in enumerate(images)]
        if progress:
            print(f"rtl: simulating {len(jobs)} run(s) of {program.insn_count} instructions ...",
                  file=sys.stderr)
        def show(job, n, cycles, seconds):
            print(f"rtl: run {job + 1}/{n}: {cycles / 1e6:.1f} M cycles simulated in {seconds:.0f} s",
                  file=sys.stderr, flush=True)
        results = self.sim.run(jobs, progress=show if progress else None)
        outs, per_run = [], []
        for r in results:
            if r.csr["CONFIG_HASH"] != program.config_hash:
                raise DeviceError(f"the hardware reports configuration hash "
                                  f"{r.csr['CONFIG_HASH']:08x}, the program needs "
                                  f"{program.config_hash:08x}")
            if r.status != "done":
                what = r.error.name if r.error is not ErrorCode.NONE else r.status
                raise DeviceError(f"the NPU stopped: {what} at instruction {r.error_index}")
            outs.append(r.dram)
            csr = r.csr
            per_run.append({
                "wall_seconds": r.wall_seconds, "cycles": csr["CYCLES"], "macs": csr["MACS"],
                "array_busy_cycles": csr["ARRAY_BUSY"], "dram_read_bytes": csr["DMA_RD_BYTES"],
                "dram_write_bytes": csr["DMA_WR_BYTES"], "insn_read_bytes": csr["INSN_RD_BYTES"],
                "stall_cycles": {"load": csr["STALL_LOAD"], "compute": csr["STALL_COMPUTE"],
                                 "store": csr["STALL_STORE"]},
                # Cycles while the compute unit was in each layer (the harness's count).
                "layer_cycles": r.extra["layer_cycles"],
            })
        return outs, per_run


class Device:
    """An NPU behind one of the backends in :data:`BACKENDS`."""

    def __init__(self, config: NPUConfig, backend: str = "func", *, progress: bool = False) -> None:
        if not isinstance(config, NPUConfig):
            raise TypeError(f"config must be an NPUConfig, not {type(config).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
        self.config = config
        self.backend = backend
        self.progress = progress
        self._impl = _FuncBackend(config) if backend == "func" else _RTLBackend(config)
        self.stats: dict = {}

    def run(self, program: Program, x: torch.Tensor) -> torch.Tensor:
        """Run ``program`` on input ``x`` (one sample or a batch); returns the float output.

        The input is quantized on the host with the program's input scale and zero
        point; the int8 output is dequantized the same way the golden does.
        """
        if not isinstance(program, Program):
            raise TypeError(f"run expects a Program from sw.compile, not {type(program).__name__}")
        if program.config_hash != self.config.hash:
            raise DeviceError(
                f"program was compiled for configuration {program.config_hash:08x} "
                f"({program.config.rows}x{program.config.cols}); this device is "
                f"{self.config.hash:08x} ({self.config.rows}x{self.config.cols})")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, not {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"input must be a float tensor, not {x.dtype}")
        shape = tuple(program.input.shape)
        batched = tuple(x.shape[1:]) == shape
        if not batched and tuple(x.shape) != shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not match the program's input "
                             f"{shape} (or [batch, *{shape}])")
        xb = x if batched else x.unsqueeze(0)
        images = [program.image(sample) for sample in program.input.quantize(xb)]
        t0 = time.perf_counter()
        results, per_run, host = _execute_segments(self._impl, program, images, self.progress)
        wall = time.perf_counter() - t0
        y = program.output.dequantize(np.stack([program.read_output(d) for d in results]))
        self.stats = self._summarize(program, per_run, wall)
        self.stats["host_ops"] = host
        return y if batched else y[0]

    def _summarize(self, program: Program, per_run: list[dict], wall: float) -> dict:
        cfg = self.config
        total = {"backend": self.backend, "runs": len(per_run), "wall_seconds": wall,
                 "sim_seconds": sum(r["wall_seconds"] for r in per_run),
                 "instructions": program.insn_count}
        for key in ("macs", "dram_read_bytes", "dram_write_bytes", "insn_read_bytes", "cycles",
                    "array_busy_cycles"):
            if per_run and key in per_run[0]:
                total[key] = sum(r[key] for r in per_run)
        if per_run and "stall_cycles" in per_run[0]:
            total["stall_cycles"] = {q: sum(r["stall_cycles"][q] for r in per_run)
                                     for q in per_run[0]["stall_cycles"]}
        if "cycles" in total and total["cycles"]:
            total["utilization"] = total["macs"] / (total["cycles"] * cfg.macs)
            total["cycles_per_run"] = total["cycles"] / len(per_run)
        layers = []
        for layer in program.layers:
            entry = {"id": layer["id"], "name": layer["name"], "op": layer["op"],
                     "macs": layer["macs"]}
            if per_run and "per_layer" in per_run[0]:
                d = per_run[0]["per_layer"].get(layer["id"])
                if d:
                    entry.update(dram_read_bytes=d["dram_read_bytes"],
                                 dram_write_bytes=d["dram_write_bytes"], insns=d["insns"])
            if per_run and "layer_cycles" in per_run[0]:
                # Per run: from the compute unit entering the layer to it entering the next.
                cycles = sum(r["layer_cycles"].get(layer["id"], 0) for r in per_run) / len(per_run)
                entry["cycles"] = cycles
                entry["utilization"] = layer["macs"] / (cycles * cfg.macs) if cycles else 0.0
            layers.append(entry)
        if per_run and "layer_cycles" in per_run[0]:
            known = {layer["id"] for layer in program.layers}
            total["other_cycles"] = sum(
                c for r in per_run for k, c in r["layer_cycles"].items() if k not in known
            ) / len(per_run)
        total["layers"] = layers
        return total


# --- Host segments (sw.ops host operators): NPU segments on the backend, host operations
# between them on the host.
def _execute_segments(impl, program: Program, images: list[np.ndarray], progress: bool):
    """Run ``program`` on ``images``: its NPU segments on backend ``impl`` and its host
    operations between them. Returns the final images, the per-run statistics summed over
    the segments, and per host operation its name, op, location and seconds (all runs)."""
    if not program.segments:
        images, per_run = impl.execute(program, images, progress)
        return images, per_run, []
    per_run: list[dict] = [{} for _ in images]
    host = []
    for seg in program.segments:
        if isinstance(seg, HostSegment):
            t0 = time.perf_counter()
            for dram in images:
                seg.run(dram)
            host.append({"name": seg.name, "op": seg.op, "where": seg.where,
                         "seconds": time.perf_counter() - t0})
            continue
        part = dataclasses.replace(program, insn_base=program.insn_base + INSN_BYTES * seg.start,
                                   insn_count=seg.count, segments=[])
        images, runs = impl.execute(part, images, progress)
        per_run = [_add_stats(a, b) for a, b in zip(per_run, runs)]
    return images, per_run, host


def _add_stats(a: dict, b: dict) -> dict:
    """Statistics of two segments of one run: numbers add, dictionaries add by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _add_stats(out.get(k, {}), v) if isinstance(v, dict) else out.get(k, 0) + v
    return out
