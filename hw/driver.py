"""The register-level driver of the NPU: its CSRs (:mod:`hw.csr`) over an abstract bus.

The sequences (identify the instance, launch a program, poll for the stop, read the
error and the counters) are written once, here, as generators of bus operations:
each yields :class:`Read`, :class:`Write` or :class:`Wait` and receives the value of
each :class:`Read`. A bus runs them:

* :func:`execute` on a synchronous bus (``read32(offset) -> int``,
  ``write32(offset, value)``, ``wait(cycles)``): the C++ harness session
  (:mod:`sim.rtl`), the UART bridge of the FPGA SoC;
* :func:`execute_async` on an asynchronous bus with the same three methods as
  coroutines: the cocotb bench (:mod:`sim.cocotb_npu`).

``wait(cycles)`` lets about ``cycles`` clock cycles pass, or fewer when the NPU
stops first; a simulated bus steps its clock, a board bus sleeps. The driver
assumes nothing else of the bus: no simulation, no signal but the registers.

This module sits in ``hw`` beside the register map, below ``sim`` (whose benches
use it) and ``sw`` (whose backends use it), so no package imports upwards.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .csr import COUNTERS, CTRL_BITS, NPU_ID, REG, REGISTERS, STATUS_BITS, join_counters
from .isa import ErrorCode

__all__ = ["Read", "Write", "Wait", "RegisterBus", "AsyncRegisterBus", "RunResult", "DriverError",
           "identify", "check_instance", "launch", "wait_stop", "read_registers", "run",
           "execute", "execute_async", "POLL_CYCLES"]

#: Cycles between two polls of STATUS while a program runs.
POLL_CYCLES = 500_000


@dataclass(frozen=True)
class Read:
    """Read the 32-bit register at byte ``offset``; the bus sends its value back."""
    offset: int


@dataclass(frozen=True)
class Write:
    """Write ``value`` to the 32-bit register at byte ``offset``."""
    offset: int
    value: int


@dataclass(frozen=True)
class Wait:
    """Let about ``cycles`` cycles pass (fewer if the NPU stops first)."""
    cycles: int


Operation = Read | Write | Wait
Sequence = Generator[Operation, Any, Any]


class RegisterBus(Protocol):
    def read32(self, offset: int) -> int: ...
    def write32(self, offset: int, value: int) -> None: ...
    def wait(self, cycles: int) -> None: ...


class AsyncRegisterBus(Protocol):
    async def read32(self, offset: int) -> int: ...
    async def write32(self, offset: int, value: int) -> None: ...
    async def wait(self, cycles: int) -> None: ...


class DriverError(RuntimeError):
    """The instance behind the bus is not an NPU or not the expected configuration."""


@dataclass
class RunResult:
    """How a program run ended, read from the CSRs."""
    status: str                  #: "done", "error" or "timeout"
    error: ErrorCode
    error_index: int             #: the failing instruction (meaningful when status is "error")
    registers: dict[str, int] = field(default_factory=dict)   #: every register, counters joined

    @property
    def counters(self) -> dict[str, int]:
        """The 64-bit performance counters of :data:`hw.csr.COUNTERS`, by name."""
        return {name: self.registers[name] for name, _ in COUNTERS}


_DONE = 1 << STATUS_BITS["DONE"]
_ERROR = 1 << STATUS_BITS["ERROR"]


def identify() -> Sequence:
    """Read ID, VERSION, CONFIG_HASH and SHAPE; returns them by name."""
    regs = {}
    for name in ("ID", "VERSION", "CONFIG_HASH", "SHAPE"):
        regs[name] = yield Read(REG[name].offset)
    return regs


def check_instance(config_hash: int) -> Sequence:
    """Raise :class:`DriverError` unless the bus holds an NPU of ``config_hash``."""
    regs = yield from identify()
    if regs["ID"] != NPU_ID:
        raise DriverError(f"no NPU on this bus: ID reads {regs['ID']:#010x}, "
                          f"expected {NPU_ID:#010x}")
    if regs["CONFIG_HASH"] != config_hash:
        raise DriverError(f"the hardware reports configuration hash {regs['CONFIG_HASH']:08x}, "
                          f"the program needs {config_hash:08x}")
    return regs


def launch(insn_base: int, insn_count: int, window: tuple[int, int]) -> Sequence:
    """Program the instruction stream and the DMA window, then START."""
    lo, hi = window
    for name, value in (("INSN_BASE", insn_base), ("INSN_COUNT", insn_count),
                        ("WINDOW_BASE", lo), ("WINDOW_LIMIT", hi)):
        yield Write(REG[name].offset, value)
    yield Write(REG["CTRL"].offset, 1 << CTRL_BITS["START"])


def wait_stop(max_cycles: int, *, poll_cycles: int = POLL_CYCLES,
              progress: Callable[[int], None] | None = None) -> Sequence:
    """Poll STATUS until DONE or ERROR; returns "done", "error" or "timeout" (after
    about ``max_cycles``). ``progress(cycles)``, if given, is called after each wait
    that did not end the run, with the cycles waited so far."""
    waited = 0
    while True:
        status = yield Read(REG["STATUS"].offset)
        if status & _ERROR:
            return "error"
        if status & _DONE:
            return "done"
        if waited and progress is not None:
            progress(waited)
        if waited >= max_cycles:
            return "timeout"
        chunk = min(poll_cycles, max_cycles - waited)
        yield Wait(chunk)
        waited += chunk


def read_registers() -> Sequence:
    """Read every register of :data:`hw.csr.REGISTERS`; returns them with counters joined."""
    regs = {}
    for reg in REGISTERS:
        regs[reg.name] = yield Read(reg.offset)
    return join_counters(regs)


def run(insn_base: int, insn_count: int, window: tuple[int, int], *, max_cycles: int,
        poll_cycles: int = POLL_CYCLES, progress: Callable[[int], None] | None = None) -> Sequence:
    """Launch a program, wait for its stop, read the registers; returns a :class:`RunResult`.

    Parameters: ``insn_base`` (DRAM byte address of instruction 0), ``insn_count``,
    ``window`` (the DMA window ``(base, limit)``), ``max_cycles`` (give up after about
    this many), ``poll_cycles`` and ``progress`` as in :func:`wait_stop`.
    Raises ValueError for a field that does not fit its register.
    """
    for what, value in (("insn_base", insn_base), ("insn_count", insn_count),
                        ("window base", window[0]), ("window limit", window[1])):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"{what} {value} does not fit a 32-bit register")
    if max_cycles < 1 or poll_cycles < 1:
        raise ValueError(f"max_cycles and poll_cycles must be positive, not {max_cycles} "
                         f"and {poll_cycles}")
    yield from launch(insn_base, insn_count, window)
    status = yield from wait_stop(max_cycles, poll_cycles=poll_cycles, progress=progress)
    regs = yield from read_registers()
    return RunResult(status=status, error=ErrorCode(regs["ERROR_CODE"]),
                     error_index=regs["ERROR_INDEX"], registers=regs)


def execute(sequence: Sequence, bus: RegisterBus):
    """Run a driver sequence on a synchronous bus; returns the sequence's result."""
    value = None
    try:
        while True:
            op = sequence.send(value)
            value = None
            if isinstance(op, Read):
                value = bus.read32(op.offset)
            elif isinstance(op, Write):
                bus.write32(op.offset, op.value)
            else:
                bus.wait(op.cycles)
    except StopIteration as stop:
        return stop.value


async def execute_async(sequence: Sequence, bus: AsyncRegisterBus):
    """Run a driver sequence on an asynchronous bus (its methods are coroutines)."""
    value = None
    try:
        while True:
            op = sequence.send(value)
            value = None
            if isinstance(op, Read):
                value = await bus.read32(op.offset)
            elif isinstance(op, Write):
                await bus.write32(op.offset, op.value)
            else:
                await bus.wait(op.cycles)
    except StopIteration as stop:
        return stop.value
