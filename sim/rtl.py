"""Run programs on the generated Verilog in Verilator, through cocotb.

:func:`build` emits an instance with ``hw.build`` and compiles it with the
simulation harness (``sim/hdl/npu_harness.sv``) once per configuration; the
build folder is keyed by the configuration hash and a digest of the generator
sources, so unchanged designs are not rebuilt.

:class:`RTLSimulator` runs a batch of :class:`Job` s in one simulator launch
(each launch costs about a second). Two memory models sit behind the same
harness: ``"fast"`` (an AXI RAM inside the design, loaded and dumped in bulk, no
Python per cycle) and ``"axi"`` (cocotbext-axi's ``AxiRam``, with random
back-pressure on every channel when asked).

:class:`FastRTLSimulator` runs jobs in the C++ harness (no cocotb, no Python per
cycle); its :meth:`~FastRTLSimulator.session` is the running harness itself, a register
bus for :mod:`hw.driver` with a RAM that keeps its contents between runs (the ``rtl``
backend of ``sw.Device``). Both simulators run the driver's CSR sequence.

Every builder and simulator takes ``mac``, the array's implementation option
(:class:`hw.array.MacOptions` or a preset name; see docs/architecture.md): the same
results by design, so the same tests apply; ``"ice40_dual"`` builds with the
``SB_MAC16`` model from Yosys's iCE40 cell library.

Set ``NPU_WAVES=1`` to build with tracing and dump ``dump.fst`` into each run's
folder (see docs/verification.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from hw.config import NPUConfig
from hw.isa import ErrorCode

from toolchain import setup_verilator

__all__ = ["Job", "JobResult", "RTLSimulator", "FastRTLSimulator", "build", "build_fast",
           "source_digest", "SIM_ROOT"]

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parent
SIM_ROOT = pathlib.Path(os.environ.get("NPU_SIM_ROOT", _REPO / "build" / "sim"))
HARNESS_SOURCES = [_HERE / "hdl" / "axi_ram_fast.sv", _HERE / "hdl" / "npu_harness.sv"]
FAST_MAIN = _HERE / "hdl" / "fast_main.cpp"


def source_digest() -> str:
    """A digest of everything the simulated design is generated from."""
    h = hashlib.sha256()
    files = sorted((_REPO / "hw").rglob("*.py")) + HARNESS_SOURCES + [_HERE / "rtl.py", FAST_MAIN]
    for path in files:
        h.update(path.relative_to(_REPO).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _mac_key(mac) -> str:
    """The build-folder suffix of a non-default array implementation."""
    from hw.array import MacOptions

    opts = MacOptions.cast(mac)
    if opts == MacOptions():
        return ""
    return "_mac" + hashlib.sha256(repr(opts).encode()).hexdigest()[:6]


def _cell_sources(mac, rtl_dir: pathlib.Path) -> list[pathlib.Path]:
    """Simulation models of the FPGA cells the design instantiates (written to ``rtl_dir``)."""
    from hw.array import MacOptions

    from toolchain import cell_model

    if MacOptions.cast(mac).kind != "ice40_dual":
        return []
    path = rtl_dir / "SB_MAC16.v"
    path.write_text(cell_model("ice40", "SB_MAC16"))
    return [path]


def _waves_requested() -> bool:
    return os.environ.get("NPU_WAVES", "") not in ("", "0")


def _prune_stale(config: NPUConfig, digest: str) -> None:
    """Remove this configuration's builds made from other sources than ``digest``."""
    if SIM_ROOT.exists():
        for old in SIM_ROOT.glob(f"{config.rows}x{config.cols}_{config.hash:08x}_*"):
            if old.is_dir() and digest not in old.name:
                shutil.rmtree(old, ignore_errors=True)


def _check_jobs(jobs: list["Job"], dram_bytes: int) -> None:
    for job in jobs:
        if len(job.dram) > dram_bytes:
            raise ValueError(f"job {job.name}: DRAM image of {len(job.dram)} bytes exceeds the "
                             f"simulated DRAM of {dram_bytes} bytes")


def _new_run_dir(build_dir: pathlib.Path, workdir) -> pathlib.Path:
    run_dir = pathlib.Path(workdir) if workdir else \
        build_dir / "runs" / f"{os.getpid()}_{time.time_ns()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _keep_runs() -> bool:
    return os.environ.get("NPU_KEEP_RUNS", "") not in ("", "0")


class _ProgressFile:
    """The progress file a simulator rewrites while it runs; ``poll`` returns what is new."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.last = None

    def poll(self) -> dict | None:
        try:
            p = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if p == self.last:
            return None
        self.last = p
        return p


@dataclass
class BuildInfo:
    config: NPUConfig
    build_dir: pathlib.Path
    waves: bool
    words_log2: int
    seconds: float = 0.0      #: time spent emitting and compiling (0 when cached)


def build(config: NPUConfig, *, waves: bool | None = None, dram_bytes: int = 1 << 24,
          verbose: bool = False, mac=None) -> BuildInfo:
    """Emit and compile ``config`` with the harness (cached)."""
    from cocotb_tools.runner import get_runner

    from hw.build import emit

    waves = _waves_requested() if waves is None else waves
    words_log2 = max(10, (dram_bytes // config.dma_bytes - 1).bit_length())
    digest = source_digest()
    key = f"{config.rows}x{config.cols}_{config.hash:08x}_{digest}_m{words_log2}{_mac_key(mac)}"
    extra = os.environ.get("NPU_VERILATOR_ARGS", "").split()
    if waves:
        key += "_waves"
    if extra:
        key += "_x" + hashlib.sha256(" ".join(extra).encode()).hexdigest()[:6]
    build_dir = SIM_ROOT / key
    stamp = build_dir / "built.stamp"
    info = BuildInfo(config=config, build_dir=build_dir, waves=waves, words_log2=words_log2)
    if stamp.exists():
        return info
    t0 = time.perf_counter()
    _prune_stale(config, digest)
    env = setup_verilator()
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " OPT_FAST=-O2").strip()
    if build_dir.exists():
        shutil.rmtree(build_dir)
    paths = emit(config, build_dir / "rtl", mac=mac)
    cells = _cell_sources(mac, build_dir / "rtl")
    runner = get_runner("verilator")
    build_args = [
        "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
        "-Wno-ASCRANGE", "-Wno-TIMESCALEMOD",
        # Only the harness's ports are visible to cocotb: about 4x faster simulation.
        "--no-public-flat-rw", "--public-depth", "1",
    ]
    if waves:
        # FST needs the lz4 headers (Debian: liblz4-dev); without them, VCD.
        if pathlib.Path("/usr/include/lz4.h").exists():
            build_args += ["--trace-fst", "--trace-structs"]
        else:
            import warnings
            warnings.warn("lz4.h not found (apt-get install liblz4-dev for FST): "
                          "waveforms are written as VCD (dump.vcd)")
            build_args += ["--trace-structs"]
    build_args += extra
    runner.build(
        sources=[paths["verilog"], *cells, *HARNESS_SOURCES],
        hdl_toplevel="npu_harness",
        build_dir=build_dir,
        parameters={"DW": config.dma_data_width, "WORDS_LOG2": words_log2},
        build_args=build_args,
        waves=waves,
        timescale=("1ns", "1ps"),
        log_file=build_dir / "build.log" if not verbose else None,
    )
    info.seconds = time.perf_counter() - t0
    (build_dir / "config.json").write_text(config.to_json(indent=2))
    stamp.write_text(f"{info.seconds:.1f}\n")
    return info


@dataclass
class Job:
    """One program run: a DRAM image, where the program is, the window, the memory model."""
    dram: np.ndarray
    insn_base: int
    insn_count: int
    window: tuple[int, int] | None = None
    memory: str = "fast"                 #: "fast" or "axi"
    backpressure: bool = False           #: random stalls on every AXI channel ("axi" only)
    seed: int = 0
    max_cycles: int = 2_000_000
    name: str = "job"

    def __post_init__(self) -> None:
        if self.memory not in ("fast", "axi"):
            raise ValueError(f"Job.memory must be 'fast' or 'axi', not {self.memory!r}")
        if not isinstance(self.dram, np.ndarray) or self.dram.dtype != np.uint8:
            raise TypeError("Job.dram must be a numpy uint8 array")


@dataclass
class JobResult:
    dram: np.ndarray                     #: DRAM after the run
    status: str                          #: "done", "error" or "timeout"
    error: ErrorCode
    error_index: int
    csr: dict[str, int]                  #: every register, 64-bit counters joined
    cycles: int
    wall_seconds: float
    extra: dict = field(default_factory=dict)


class RTLSimulator:
    """Runs jobs on one configuration's simulated RTL."""

    def __init__(self, config: NPUConfig, *, waves: bool | None = None,
                 dram_bytes: int = 1 << 24, mac=None) -> None:
        self.config = config
        self.dram_bytes = dram_bytes
        self.info = build(config, waves=waves, dram_bytes=dram_bytes, mac=mac)

    def run(self, jobs: list[Job], *, workdir: str | pathlib.Path | None = None,
            progress=None) -> list[JobResult]:
        """Run ``jobs`` in one simulator launch.

        ``progress``, if given, is called about every 500k simulated cycles with
        ``(job_index, jobs, cycles, seconds)`` while a job runs.
        """
        from cocotb_tools.runner import get_results, get_runner

        _check_jobs(jobs, self.dram_bytes)
        info = self.info
        run_dir = _new_run_dir(info.build_dir, workdir)
        B = self.config.dma_bytes
        specs = []
        for i, job in enumerate(jobs):
            image = job.dram
            pad = (-len(image)) % B
            if pad:
                image = np.concatenate([image, np.zeros(pad, np.uint8)])
            bin_path = run_dir / f"job{i}_in.bin"
            image.tofile(bin_path)
            window = job.window if job.window is not None else (0, len(job.dram))
            specs.append({
                "name": job.name, "dram_in": str(bin_path), "dram_bytes": len(image),
                "dram_out": str(run_dir / f"job{i}_out.bin"), "result": str(run_dir / f"job{i}.json"),
                "insn_base": job.insn_base, "insn_count": job.insn_count,
                "window": list(window), "memory": job.memory, "backpressure": job.backpressure,
                "seed": job.seed, "max_cycles": job.max_cycles, "beat_bytes": B,
            })
        spec_path = run_dir / "jobs.json"
        spec_path.write_text(json.dumps(specs, indent=1))
        env = setup_verilator(dict(os.environ))
        runner = get_runner("verilator")
        progress_path = run_dir / "progress.json"
        stop = threading.Event()

        def watch():
            file = _ProgressFile(progress_path)
            while not stop.wait(1.0):
                p = file.poll()
                if p:
                    progress(p["job"], p["jobs"], p["cycles"], p["seconds"])

        watcher = threading.Thread(target=watch, daemon=True) if progress else None
        if watcher:
            watcher.start()
        try:
            results_xml = self._test(runner, info, run_dir, spec_path, env, progress_path)
        finally:
            stop.set()
            if watcher:
                watcher.join()
        _, failed = get_results(results_xml)
        return self._collect(specs, run_dir, failed, info)

    def _test(self, runner, info, run_dir, spec_path, env, progress_path):
        return runner.test(
            test_module="sim.cocotb_npu",
            hdl_toplevel="npu_harness",
            hdl_toplevel_lang="verilog",
            build_dir=info.build_dir,
            test_dir=run_dir,
            extra_env={"NPU_JOBS": str(spec_path), "PATH": env["PATH"],
                       "NPU_PROGRESS": str(progress_path),
                       "PYTHONPATH": os.pathsep.join([str(_REPO), os.environ.get("PYTHONPATH", "")])},
            plusargs=[f"+DRAM_IN={run_dir / 'dram_in.hex'}", f"+DRAM_OUT={run_dir / 'dram_out.hex'}"],
            waves=info.waves,
            log_file=run_dir / "sim.log",
        )

    def _collect(self, specs, run_dir, failed, info) -> list[JobResult]:
        results = []
        for spec in specs:
            path = pathlib.Path(spec["result"])
            if not path.exists():
                log = (run_dir / "sim.log").read_text()[-3000:] if (run_dir / "sim.log").exists() else ""
                raise RuntimeError(f"simulation of {spec['name']} produced no result "
                                   f"(see {run_dir}):\n{log}")
            r = json.loads(path.read_text())
            dram = np.fromfile(spec["dram_out"], dtype=np.uint8)
            results.append(JobResult(
                dram=dram, status=r["status"], error=ErrorCode(r["error_code"]),
                error_index=r["error_index"], csr=r["csr"], cycles=r["csr"].get("CYCLES", 0),
                wall_seconds=r["wall_seconds"], extra=r))
        if failed:
            raise RuntimeError(f"cocotb reported {failed} failing test(s); see {run_dir / 'sim.log'}")
        if not info.waves and not _keep_runs():
            shutil.rmtree(run_dir, ignore_errors=True)
        return results



VERILATOR_WAIVERS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                     "-Wno-ASCRANGE", "-Wno-TIMESCALEMOD"]


#: The C++ harness's RAM: 32 MiB, as ResNet-18 at 224x224 needs 17.2 MB of DRAM image.
FAST_DRAM_BYTES = 1 << 25


def build_fast(config: NPUConfig, *, dram_bytes: int = FAST_DRAM_BYTES, mac=None) -> BuildInfo:
    """Compile the harness with a plain C++ driver (``sim/hdl/fast_main.cpp``), cached."""
    import subprocess

    from hw.build import emit

    words_log2 = max(10, (dram_bytes // config.dma_bytes - 1).bit_length())
    digest = source_digest()
    key = f"{config.rows}x{config.cols}_{config.hash:08x}_{digest}_m{words_log2}{_mac_key(mac)}_cpp"
    extra = os.environ.get("NPU_VERILATOR_ARGS", "").split()    # e.g. coverage flags
    if extra:
        key += "_x" + hashlib.sha256(" ".join(extra).encode()).hexdigest()[:6]
    build_dir = SIM_ROOT / key
    info = BuildInfo(config=config, build_dir=build_dir, waves=False, words_log2=words_log2)
    if (build_dir / "built.stamp").exists():
        return info
    t0 = time.perf_counter()
    _prune_stale(config, digest)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    paths = emit(config, build_dir / "rtl", mac=mac)
    cells = _cell_sources(mac, build_dir / "rtl")
    env = setup_verilator(dict(os.environ))
    # Measured on ResNet-18 64x64 at 16x16 (the harness's CPU time; docs/verification.md):
    # OPT_FAST=-O2 costs 7 %, -Os 49 %; Verilator's -O3 changes nothing; --threads 2 is 18x
    # slower on a loaded 2-core machine (its threads spin). Single-threaded -O3 it is.
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " OPT_FAST=-O3").strip()
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "--top-module", "npu_harness",
           "--prefix", "Vtop", "-Mdir", str(build_dir), "-o", "npu_fast",
           f"-GDW={config.dma_data_width}", f"-GWORDS_LOG2={words_log2}", "-GCPP_HARNESS=1",
           "--x-assign", "fast", "--x-initial", "fast", "--timescale", "1ns/1ps",
           "-CFLAGS", "-march=native",
           *VERILATOR_WAIVERS, *extra,
           str(paths["verilog"]), *map(str, cells), *map(str, HARNESS_SOURCES), str(FAST_MAIN)]
    result = subprocess.run(cmd, cwd=build_dir, env=env, capture_output=True, text=True)
    (build_dir / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"Verilator build of the C++ harness failed (see {build_dir / 'build.log'}):\n"
                           f"{result.stderr[-3000:]}")
    info.seconds = time.perf_counter() - t0
    (build_dir / "built.stamp").write_text(f"{info.seconds:.1f}\n")
    return info


def _end_harness(proc, log, folder: pathlib.Path) -> None:
    import subprocess

    if proc.poll() is None:
        proc.stdin.close()           # the harness ends at the end of its input
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:   # a stuck harness must not outlive us
            proc.kill()
            proc.wait()
    proc.stdout.close()
    log.close()
    if not _keep_runs():
        shutil.rmtree(folder, ignore_errors=True)


def harness_call(proc, line: str, name: str, log: pathlib.Path) -> str:
    """One command of a C++ harness's line protocol (``proc``'s stdin and stdout): its
    reply line; ``RuntimeError`` naming ``name`` and its ``log`` when the harness has
    exited, stops answering or answers ``error ...``."""
    if proc.poll() is not None:
        raise RuntimeError(f"{name} has exited ({proc.returncode}); see {log}")
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    reply = proc.stdout.readline().strip()
    if not reply:
        raise RuntimeError(f"{name} stopped answering after {line[:40]!r}; see {log}")
    if reply.startswith("error"):
        raise RuntimeError(f"{name}: {reply[6:]}")
    return reply


class HarnessSession:
    """One running C++ harness (``sim/hdl/fast_main.cpp``): a register bus and a RAM.

    A register bus for :mod:`hw.driver` (``read32``, ``write32``, ``wait``) plus what
    only a simulation has: ``reset``, ``load``/``dump`` of RAM bytes, ``clear``, the
    busy cycles per layer (``layer_cycles``), the instruction trace (``trace_start``,
    ``trace_events``), bus-error injection (``inject``), a bus monitor that checks
    every access against the DMA window (``monitor``, ``bus_report``) and the output
    pins (``pins``). The RAM keeps its contents between
    programs run in one session. The harness ends with :meth:`close` (or when this
    process ends: it stops at the end of its input).
    """

    def __init__(self, info: BuildInfo) -> None:
        import subprocess

        self.dir = _new_run_dir(info.build_dir, None)
        self._log = open(self.dir / "harness.log", "w")
        self._proc = subprocess.Popen([str(info.build_dir / "npu_fast")], cwd=self.dir,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, bufsize=1)
        self._finalizer = weakref.finalize(self, _end_harness, self._proc, self._log, self.dir)
        self._files = 0
        self.ram_bytes = int(self._call("size").split()[1])

    def _call(self, line: str) -> str:
        return harness_call(self._proc, line, "the C++ harness", self.dir / "harness.log")

    # The register bus (hw.driver.RegisterBus)
    def read32(self, offset: int) -> int:
        return int(self._call(f"read {offset}"))

    def write32(self, offset: int, value: int) -> None:
        self._call(f"write {offset} {value}")

    def wait(self, cycles: int) -> None:
        self._call(f"wait {cycles}")

    # The simulation's own controls
    def reset(self) -> None:
        """Pulse the NPU's reset (the RAM keeps its contents)."""
        self._call("reset")

    def clear(self) -> None:
        """Zero the whole RAM."""
        self._call("clear")

    def load(self, addr: int, data: np.ndarray) -> None:
        """Write the bytes ``data`` (uint8) into the RAM at byte ``addr``."""
        path = self.dir / f"in{self._files % 2}.bin"
        self._files += 1
        np.ascontiguousarray(data, dtype=np.uint8).tofile(path)
        self._call(f"load {addr} {len(data)} {path}")

    def dump(self, addr: int, nbytes: int) -> np.ndarray:
        """``nbytes`` of the RAM from byte ``addr``."""
        path = self.dir / "out.bin"
        self._call(f"dump {addr} {nbytes} {path}")
        return np.fromfile(path, dtype=np.uint8)

    def layer_cycles(self) -> dict[int, int]:
        """Busy cycles per layer id since the last call (or reset)."""
        return {int(k): int(v) for k, v in (p.split("=") for p in self._call("layers").split()[1:])}

    def trace_start(self) -> None:
        """Record the trace port's events from now on (forgetting any recorded before)."""
        self._call("trace on")

    def trace_stop(self) -> None:
        """Stop recording (forgetting what was recorded); untraced runs are as fast as ever."""
        self._call("trace off")

    def trace_events(self) -> np.ndarray:
        """The events recorded since :meth:`trace_start` or the last call, then forgotten.

        One row per event, ``(cycle, queue, kind, stall)``, in time order: ``cycle``
        counts from 0 at the run's first busy cycle (as the CYCLES counter), ``queue``
        is a :class:`~hw.isa.Queue` value, ``kind`` 0 when an instruction starts in its
        unit and 1 when it completes, ``stall`` (on starts) the cycles the queue waited
        for tokens since its last start (``fast_main.cpp`` says which cycles count).
        """
        path = self.dir / "trace.bin"
        self._call(f"trace dump {path}")
        return np.fromfile(path, dtype="<u8").astype(np.int64).reshape(-1, 4)

    def inject(self, lo: int, hi: int, resp: int = 2) -> None:
        """Make the RAM answer ``resp`` (2 SLVERR, 3 DECERR; 0 ends the injection) for
        every beat with a byte in ``[lo, hi)``, on reads (instruction fetch included) and
        writes: a read beat there returns zeros, a write beat there is dropped."""
        self._call(f"inject {lo} {hi} {resp}")

    def monitor(self, window: tuple[int, int]) -> None:
        """Watch the NPU's AXI4 master against the DMA window ``(base, limit)`` from now
        on, forgetting what was seen (see :meth:`bus_report`)."""
        self._call(f"monitor {window[0]} {window[1]}")

    def bus_report(self) -> dict[str, int]:
        """What the bus monitor saw since :meth:`monitor`: ``reads`` (AR bursts), ``writes``
        (W beats), ``outside`` (accesses that left the window: a read burst not inside the
        window widened to whole beats, a written byte outside it), and the first of those
        (``kind`` 1 read, 2 write; ``addr``)."""
        _, ar, w, bad, kind, addr = self._call("monitor").split()
        return {"reads": int(ar), "writes": int(w), "outside": int(bad), "kind": int(kind),
                "addr": int(addr)}

    def pins(self) -> dict[str, int]:
        """The NPU's ``done``, ``error``, ``busy`` and ``irq`` output pins now."""
        values = self._call("pins").split()[1:]
        return dict(zip(("done", "error", "busy", "irq"), map(int, values)))

    def close(self) -> None:
        """End the harness and remove its folder (kept with ``NPU_KEEP_RUNS=1``); also
        done when the session is garbage-collected."""
        self._finalizer()

    def __enter__(self) -> "HarnessSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FastRTLSimulator:
    """Runs jobs on the RTL with the C++ harness: the in-design RAM, no Python per cycle.

    Same interface as :class:`RTLSimulator` for ``memory="fast"`` jobs; about twice
    as fast, because nothing crosses VPI while the NPU runs. :meth:`session` gives
    the running harness itself, for a caller that keeps the RAM between runs.
    """

    def __init__(self, config: NPUConfig, *, dram_bytes: int = FAST_DRAM_BYTES,
                 mac=None) -> None:
        self.config = config
        self.dram_bytes = dram_bytes
        self.info = build_fast(config, dram_bytes=dram_bytes, mac=mac)

    def session(self) -> HarnessSession:
        """Start a harness: a register bus for :mod:`hw.driver` and a RAM."""
        return HarnessSession(self.info)

    def run(self, jobs: list[Job], *, workdir: str | pathlib.Path | None = None,
            progress=None) -> list[JobResult]:
        """Run ``jobs`` in one harness, each from its whole DRAM image and a reset.

        ``progress``, if given, is called about every 500k simulated cycles with
        ``(job_index, jobs, cycles, seconds)`` while a job runs. ``workdir`` is
        accepted for :class:`RTLSimulator`'s interface; the harness needs none.
        """
        from hw import driver

        for job in jobs:
            if job.memory != "fast":
                raise ValueError(f"job {job.name}: the C++ harness has only the fast memory")
        _check_jobs(jobs, self.dram_bytes)
        results = []
        with self.session() as bus:
            for index, job in enumerate(jobs):
                t0 = time.perf_counter()
                bus.reset()
                bus.clear()
                bus.load(0, job.dram)
                window = job.window if job.window is not None else (0, len(job.dram))

                def report(cycles, index=index, t0=t0):
                    progress(index, len(jobs), cycles, time.perf_counter() - t0)
                r = driver.execute(driver.run(job.insn_base, job.insn_count, window,
                                              max_cycles=job.max_cycles,
                                              progress=report if progress else None), bus)
                dram = bus.dump(0, len(job.dram))
                seconds = time.perf_counter() - t0
                results.append(JobResult(
                    dram=dram, status=r.status, error=r.error, error_index=r.error_index,
                    csr=r.registers, cycles=r.registers["CYCLES"], wall_seconds=seconds,
                    extra={"run_wall_seconds": seconds, "layer_cycles": bus.layer_cycles()}))
        return results
