"""The FPGA SoC (fpga/soc.py) in Verilator, behind a byte transport.

:class:`SimulatedSoC` emits :class:`fpga.soc.SoC` as Verilog, compiles it with a small
C++ harness (``fpga/hdl/soc_main.cpp``: the host's end of the UART, bit by bit) and runs
it as a child process. It is a :class:`fpga.protocol.Transport` (``write(bytes)``,
``read(n, timeout)``), so the unchanged host side (``fpga.protocol.Link``, the board
backend of ``sw.Device``) talks to the simulated gateware exactly as to a board over a
serial port; ``wait(cycles)`` lets simulated time pass (the ``wait=`` of ``Link`` and of
the board backend). Time is simulated time: a ``read`` timeout of ``t`` seconds is
``t * clk_hz`` clock cycles.

Builds are cached under ``build/sim`` (``NPU_SIM_ROOT``), keyed by the configuration,
the SoC's parameters and a digest of the sources, as :mod:`sim.rtl` does.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import time
import weakref

from hw.config import NPUConfig, require_config
from sim.rtl import harness_call
from toolchain import setup_verilator

__all__ = ["SimulatedSoC", "build_soc", "SOC_MAIN"]

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parent
SOC_MAIN = _HERE / "hdl" / "soc_main.cpp"
_WAIVERS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
            "-Wno-ASCRANGE", "-Wno-TIMESCALEMOD"]


def _sim_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("NPU_SIM_ROOT", _REPO / "build" / "sim"))


def _digest() -> str:
    h = hashlib.sha256()
    files = sorted((_REPO / "hw").rglob("*.py")) + sorted(_HERE.glob("*.py")) + [SOC_MAIN]
    for path in files:
        h.update(path.relative_to(_REPO).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def build_soc(config: NPUConfig, *, ram_bytes: int, clk_hz: float, baud: int,
              ram: str = "bram") -> pathlib.Path:
    """Emit and compile the SoC with the C++ harness (cached); returns the build folder.

    Raises the SoC's own errors for bad parameters, RuntimeError when Verilator fails.
    """
    from amaranth.back import verilog

    from .soc import SoC

    soc = SoC(config, ram_bytes=ram_bytes, clk_hz=clk_hz, baud=baud, ram=ram)   # checks first
    digest = _digest()
    prefix = f"soc_{config.rows}x{config.cols}_{config.hash:08x}"
    key = f"{prefix}_{ram}{ram_bytes}_{int(clk_hz)}_{baud}_{digest}"
    root = _sim_root()
    build_dir = root / key
    if (build_dir / "built.stamp").exists():
        return build_dir
    if root.exists():   # this configuration's builds from other sources
        for old in root.glob(f"{prefix}_{ram}{ram_bytes}_{int(clk_hz)}_{baud}_*"):
            if old.is_dir() and old != build_dir:
                shutil.rmtree(old, ignore_errors=True)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    source = build_dir / "soc.v"
    source.write_text(verilog.convert(soc, name="soc"))
    env = setup_verilator(dict(os.environ))
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " OPT_FAST=-O2").strip()
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "--top-module", "soc",
           "--prefix", "Vsoc", "-Mdir", str(build_dir), "-o", "soc_sim",
           "--x-assign", "fast", "--x-initial", "fast", *_WAIVERS, str(source), str(SOC_MAIN)]
    result = subprocess.run(cmd, cwd=build_dir, env=env, capture_output=True, text=True)
    (build_dir / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"Verilator build of the SoC failed (see {build_dir / 'build.log'}):\n"
                           f"{result.stderr[-3000:]}")
    (build_dir / "built.stamp").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return build_dir


def _end(proc, log) -> None:
    if proc.poll() is None:
        proc.stdin.close()           # the harness ends at the end of its input
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()
    log.close()


class SimulatedSoC:
    """The SoC of ``config`` in Verilator, as a byte transport to its UART.

    Parameters: ``config``; ``ram_bytes``, ``clk_hz``, ``baud``, ``ram`` as
    :class:`fpga.soc.SoC` (the defaults make 5 clock cycles a bit, to keep simulations
    short); ``idle_bytes``: a ``read`` returns once bytes have come and the line has then
    been quiet for this many byte times.

    Raises the SoC's errors for bad parameters, RuntimeError when the build fails or the
    harness stops answering.
    """

    def __init__(self, config: NPUConfig, *, ram_bytes: int = 16384, clk_hz: float = 1_000_000,
                 baud: int = 200_000, ram: str = "bram", idle_bytes: int = 2) -> None:
        self.config = require_config(config)
        self.ram_bytes = ram_bytes
        self.clk_hz = clk_hz
        self.baud = baud
        self.build_dir = build_soc(config, ram_bytes=ram_bytes, clk_hz=clk_hz, baud=baud, ram=ram)
        from .uart import divisor
        self.divisor = divisor(clk_hz, baud)
        self.idle_cycles = idle_bytes * 10 * self.divisor
        self._log = open(self.build_dir / "harness.log", "w")
        self._proc = subprocess.Popen([str(self.build_dir / "soc_sim"), str(self.divisor)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, bufsize=1)
        self._finalizer = weakref.finalize(self, _end, self._proc, self._log)

    def _call(self, line: str) -> str:
        return harness_call(self._proc, line, "the SoC harness", self.build_dir / "harness.log")

    # fpga.protocol.Transport
    def write(self, data: bytes) -> None:
        """Queue ``data`` for the SoC's UART receiver (it is shifted in as the clock runs)."""
        if data:
            self._call(f"send {bytes(data).hex()}")

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes from the SoC's UART transmitter; ``b""`` when none come within
        ``timeout`` seconds of simulated time."""
        cycles = max(1, int(timeout * self.clk_hz))
        return bytes.fromhex(self._call(f"recv {n} {cycles} {self.idle_cycles}")[3:])

    # Simulated time
    def wait(self, cycles: int) -> None:
        """Run ``cycles`` clock cycles, or fewer when the NPU stops first (its busy LED)."""
        self._call(f"wait {int(cycles)}")

    def reset(self) -> None:
        """Pulse the SoC's reset (the RAM keeps its contents)."""
        self._call("reset")

    @property
    def leds(self) -> dict[str, bool]:
        """The LEDs by name (:data:`fpga.soc.LEDS`)."""
        from .soc import LEDS
        value = int(self._call("leds").split()[1])
        return {name: bool(value >> k & 1) for k, name in enumerate(LEDS)}

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return int(self._call("cycles").split()[1])

    def close(self) -> None:
        """End the harness (also done when this object is garbage-collected)."""
        self._finalizer()

    def __enter__(self) -> "SimulatedSoC":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
