"""The device over every backend: what crosses the link, persistent state, the same stats."""
import numpy as np
import pytest
import torch

import sw
from hw import NPUConfig
from hw import isa
from sw import zoo
from sw.program import TensorInfo, layout_regions
from sw.runtime import LAYER_KEYS, Counters

from ...sim.programs import Builder

TINY = NPUConfig.preset("tiny")
BACKENDS = ["func", "rtl"]


@pytest.fixture(scope="module")
def lenet():
    model, shape = zoo.build("lenet5")
    gen = torch.Generator().manual_seed(3)
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=gen)])
    return qmodel, sw.compile(qmodel, TINY), shape


def state_program(cfg=TINY):
    """y = the state before the run; the state becomes x (one row of cols int8)."""
    C = cfg.cols
    b = Builder(cfg, size=1024)
    b.identity_params(0)
    params = (0, 3 * 4 * C)
    state = b.data(np.arange(1, C + 1, dtype=np.int8))
    inp, out = b.reserve(C), b.reserve(C)
    for row, src, dst in ((0, state, out), (1, inp, state)):
        b.emit(isa.load(mem="acc", sram=row, dram=src, y_size=1, x_size=1, length=C, push_next=1))
        b.emit(isa.sync(queue="compute", pop_prev=1, push_next=1))
        b.emit(isa.store(acc=row, dram=dst, rows=1, stride=C, length=C, param=0,
                         clamp_lo=-128, clamp_hi=127, pop_prev=1))
    b.emit(isa.finish())
    case = b.case("state")
    x = TensorInfo("x", inp, (C,), 1.0, 0, "flat")
    y = TensorInfo("y", out, (C,), 1.0, 0, "flat")
    insns = (case.insn_base, 16 * case.insn_count)
    regions = layout_regions(len(case.dram), [params, insns], x, y, state=[("history", state, C)])
    return sw.Program(config=cfg, dram=case.dram, insn_base=case.insn_base,
                      insn_count=case.insn_count, input=x, output=y, regions=regions)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constants_are_sent_once(lenet, backend):
    qmodel, program, shape = lenet
    constants = sum(r.nbytes for r in program.regions_of("constants"))
    assert 0 < constants and program.regions_of("scratch")
    with sw.Device(TINY, backend) as device:
        x = torch.randn(2, *shape)
        assert torch.equal(device.run(program, x), qmodel(x))
        first = device.stats
        assert first["host_write_bytes"] == constants + 2 * program.input.nbytes
        assert first["host_read_bytes"] == 2 * program.output.nbytes
        x = torch.randn(3, *shape)
        assert torch.equal(device.run(program, x), qmodel(x))
        assert device.stats["host_write_bytes"] == 3 * program.input.nbytes
        assert device.stats["host_read_bytes"] == 3 * program.output.nbytes
        # Another program replaces it: its constants go over; then the first's again.
        other = sw.compile(qmodel, TINY)
        device.run(other, x)
        assert device.stats["host_write_bytes"] == constants + 3 * program.input.nbytes
        device.run(program, x[:1])
        assert device.stats["host_write_bytes"] == constants + program.input.nbytes


@pytest.mark.parametrize("backend", BACKENDS)
def test_persistent_state_survives_runs(backend):
    program = state_program()
    C = TINY.cols
    initial = np.arange(1, C + 1)
    xs = [torch.arange(C, dtype=torch.float32) * k - 5 for k in (1, 2, 3)]
    with sw.Device(TINY, backend) as device:
        assert torch.equal(device.run(program, xs[0]), torch.tensor(initial, dtype=torch.float32))
        assert torch.equal(device.run(program, xs[1]), xs[0])
        # The state is not part of what a run sends: only the input.
        assert device.stats["host_write_bytes"] == C
        assert np.array_equal(device.read_state(program, "history").view(np.int8), xs[1].numpy())
        device.write_state(program, "history", np.full(C, -7, np.int8))
        assert torch.equal(device.run(program, xs[2]), torch.full((C,), -7.0))
        with pytest.raises(ValueError, match="holds 4 bytes, not 3"):
            device.write_state(program, "history", b"abc")
        with pytest.raises(ValueError, match="region 'x' is input, not state"):
            device.read_state(program, "x")
        with pytest.raises(KeyError, match="no region 'kv'; regions: "):
            device.read_state(program, "kv")
    # A new device starts from the program's initial state.
    fresh = sw.Device(TINY, backend)
    assert torch.equal(fresh.run(program, xs[0]), torch.tensor(initial, dtype=torch.float32))
    fresh.close()


@pytest.fixture(scope="module")
def stats_on_every_backend(lenet):
    qmodel, program, shape = lenet
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(5))
    out = {}
    for backend in BACKENDS:
        with sw.Device(TINY, backend) as device:
            assert torch.equal(device.run(program, x), qmodel(x)), backend
            out[backend] = device.stats
    return out


def test_stats_keys_are_the_same_on_every_backend(stats_on_every_backend):
    func, rtl = stats_on_every_backend["func"], stats_on_every_backend["rtl"]
    assert func.keys() == rtl.keys()
    assert set(Counters.__dataclass_fields__) <= func.keys()
    for a, b in zip(func["layers"], rtl["layers"]):
        assert tuple(a) == tuple(b) == LAYER_KEYS
    # What both measure agrees; what only one measures is None on the other.
    for key in ("macs", "dram_read_bytes", "dram_write_bytes", "insn_read_bytes",
                "host_write_bytes", "host_read_bytes", "runs", "instructions"):
        assert func[key] == rtl[key] is not None, key
    for key in ("cycles", "array_busy_cycles", "stall_load_cycles", "utilization",
                "cycles_per_run", "other_cycles"):
        assert func[key] is None and rtl[key] is not None, key
    assert rtl["array_busy_cycles"] * TINY.macs == rtl["macs"]
    assert all(layer["cycles"] is None for layer in func["layers"])
    assert all(layer["insns"] is None for layer in rtl["layers"])
    assert [layer["dram_read_bytes"] is None for layer in func["layers"]] == [False] * 7


def test_real_macs_and_mac_slots_are_named_apart(stats_on_every_backend, lenet):
    qmodel, program, _ = lenet
    func, rtl = stats_on_every_backend["func"], stats_on_every_backend["rtl"]
    # The compiler's per-layer MAC slots add up to what the hardware's MACS counter counts.
    for layer, f in zip(program.layers, func["layers"]):
        assert f["mac_slots"] == layer["mac_slots"] >= f["macs"], layer["name"]
    assert rtl["mac_slots"] == rtl["macs"] == 2 * sum(x["mac_slots"] for x in program.layers)
    assert func["real_macs"] == 2 * sum(x["macs"] for x in program.layers) <= func["mac_slots"]
    assert rtl["slot_utilization"] == rtl["utilization"] >= rtl["real_utilization"] > 0
    for layer in rtl["layers"]:
        assert layer["slot_utilization"] >= layer["utilization"] >= 0
        assert layer["slot_utilization"] == pytest.approx(
            layer["mac_slots"] / (layer["cycles"] * TINY.macs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_npu_stopping_is_a_device_error(backend):
    program = state_program()
    bad = program.dram.copy()
    bad[program.insn_base + 16 * (program.insn_count - 1)] = 7       # FINISH -> opcode 7
    broken = sw.Program(config=TINY, dram=bad, insn_base=program.insn_base,
                        insn_count=program.insn_count, input=program.input,
                        output=program.output, regions=program.regions)
    with sw.Device(TINY, backend) as device, \
            pytest.raises(sw.DeviceError, match="the NPU stopped: ILLEGAL_OPCODE at instruction 7"):
        device.run(broken, torch.zeros(TINY.cols))
