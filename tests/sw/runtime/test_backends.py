"""The backend registry and the typed counters."""
import dataclasses
import subprocess
import sys

import pytest

import sw
from hw import NPUConfig
from hw.csr import COUNTERS
from sw.runtime import BACKENDS, Backend, Counters, get_backend, register_backend, stat_key

TINY = NPUConfig.preset("tiny")


def test_registry_names_func_rtl_and_board():
    assert list(BACKENDS) == ["func", "rtl", "board"] and sw.BACKENDS is BACKENDS
    assert all(issubclass(cls, Backend) and cls.name == name for name, cls in BACKENDS.items())
    from sw.device import Device
    assert Device is sw.Device


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backend 'fpga'; backends: func, rtl, board"):
        sw.Device(TINY, backend="fpga")
    with pytest.raises(ValueError, match="unknown backend 3"):
        get_backend(3)


def test_a_registered_backend_is_usable_by_name(capsys):
    from sw import run

    @register_backend
    class Echo(BACKENDS["func"]):
        name = "echo-test"
    try:
        assert isinstance(sw.Device(TINY, "echo-test")._impl, Echo)
        with pytest.raises(SystemExit):
            run.main(["--help"])
        assert "--backend {func,rtl,board,echo-test}" in capsys.readouterr().out
        with pytest.raises(ValueError, match="backend 'func' is already registered"):
            register_backend(type("Other", (Echo,), {"name": "func"}))
        with pytest.raises(TypeError, match="needs a class attribute 'name'"):
            register_backend(type("Nameless", (), {}))
    finally:
        del BACKENDS["echo-test"]


def test_run_cli_reads_the_registry():
    out = subprocess.run([sys.executable, "-m", "sw.run", "lenet5", "--backend", "gpu"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "invalid choice: 'gpu'" in out.stderr
    assert "--backend {func,rtl,board}" in out.stderr


def test_counters_are_the_counter_schema():
    fields = dataclasses.fields(Counters)
    assert [f.metadata["counter"] for f in fields] == [name for name, _ in COUNTERS]
    assert [f.name for f in fields] == [stat_key(name) for name, _ in COUNTERS]
    assert stat_key("DMA_RD_BYTES") == "dram_read_bytes" and stat_key("NEW_ONE") == "new_one"
    regs = {name: 10 * i for i, (name, _) in enumerate(COUNTERS)}
    c = Counters.from_registers(regs)
    assert c.macs == regs["MACS"] and c.stall_store_cycles == regs["STALL_STORE"]
    # A sum keeps what both measured; what one did not measure stays unmeasured.
    s = c + Counters(macs=1, cycles=2)
    assert s.macs == regs["MACS"] + 1 and s.cycles == 2 and s.dram_read_bytes is None
