"""The performance model (sw.analysis.perf): hand-computed cycles, and the RTL's counters."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig, isa
from sw import zoo
from sw.analysis.perf import DramTiming, PerfEstimate, estimate, estimate_words

TOLERANCE_PCT = 3.0


def _hand_program():
    """One LOAD of 16 scratchpad rows, one GEMM over them, one STORE of its 16 rows."""
    return [
        isa.load(mem="spad", sram=0, dram=0, y_size=1, x_size=16, y_stride=0, x_stride=16,
                 length=16, push_next=1),
        isa.gemm(wgt=0, inp=0, acc=0, m=16, pop_prev=1, push_next=1),
        isa.store(acc=0, dram=0x1000, rows=16, stride=16, length=16, param=0, clamp_lo=-128,
                  clamp_hi=127, pop_prev=1),
        isa.finish(),
    ]


def test_hand_computed_cycles():
    # 16x16, 16-byte AXI beats, the harness RAM. Each word is one beat: fetched in
    # cycles 1-4, dispatched 4 cycles later (beat, DMA register, 2-cycle FIFO): 5, 6, 7, 8.
    # LOAD: taken 7 (queue FIFO: +2), tokens 8, 16 reads 9..24, the last response written
    # 26, done 27 (its L2C token), idle 28.
    # GEMM: taken 8, token 28 (19 cycles stalled), 16 weight rows read 29..44, handed to
    # the streamer 46, rows 47..62, the last row written back 46+16+1+31 = 94 (C2S token).
    # STORE: taken 9, token 95 (85 stalled), parameters and pipeline: first row at the
    # writer 108, 3 cycles a row: last 153, written 157; DONE 158.
    words = [isa.encode(i) for i in _hand_program()]
    e = estimate_words(words, NPUConfig())
    assert isinstance(e, PerfEstimate)
    assert e.cycles == 158
    assert e.array_busy_cycles == 16 and e.mac_slots == 16 * 256
    assert (e.stall_load_cycles, e.stall_compute_cycles, e.stall_store_cycles) == (0, 19, 85)
    # Spans as the RTL traces them, its cycle 0 being the model's cycle 1: the LOAD from its
    # tokens (8) to done (27), the GEMM while its rows enter the array (48..63), the
    # STORE from its tokens (95) to done (157); the cycles each waited for tokens.
    assert [(s.queue, s.opcode, s.begin, s.end, s.stall) for s in e.spans] == [
        ("load", "LOAD", 7, 27, 0), ("compute", "GEMM", 47, 63, 19),
        ("store", "STORE", 94, 157, 85)]
    assert e.npu_segments == 1 and e.host_segments == ()


def test_slower_dram_costs_cycles():
    words = [isa.encode(i) for i in _hand_program()]
    cfg = NPUConfig()
    base = estimate_words(words, cfg).cycles
    slow = estimate_words(words, cfg, dram=DramTiming.from_bandwidth(1.6, 400.0)).cycles
    late = estimate_words(words, cfg, dram=DramTiming(latency=20)).cycles
    assert slow > base and late > base
    assert DramTiming.from_bandwidth(6.4, 400.0).bytes_per_cycle == pytest.approx(16.0)


def test_bad_arguments():
    with pytest.raises(TypeError, match="sw.Program"):
        estimate([isa.encode(isa.finish())])
    with pytest.raises(ValueError, match="latency"):
        DramTiming(latency=0)
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        DramTiming(bytes_per_cycle=0)
    with pytest.raises(ValueError, match="gbs"):
        DramTiming.from_bandwidth(-1, 100)
    with pytest.raises(TypeError, match="DramTiming"):
        estimate_words([isa.encode(isa.finish())], NPUConfig(), dram=3)
    program, _ = _compile(_MODELS["linear"], NPUConfig.preset("tiny"))
    with pytest.raises(ValueError, match="compiled for"):
        estimate(program, NPUConfig.preset("small"))
    stuck = [isa.encode(isa.gemm(wgt=0, inp=0, acc=0, m=1, pop_prev=1)), isa.encode(isa.finish())]
    with pytest.raises(ValueError, match="deadlocks"):
        estimate_words(stuck, NPUConfig())


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return torch.relu(self.a(x) + self.b(x))


def _seq(*mods):
    return lambda: nn.Sequential(*mods)


# Single-layer models (and a few pairs where the operator needs an input layer).
_MODELS = {
    "linear": (_seq(nn.Flatten(), nn.Linear(64, 32)), (64,)),
    "linear_relu": (_seq(nn.Linear(200, 72), nn.ReLU()), (200,)),
    "conv3x3": (_seq(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()), (8, 8, 8)),
    "conv3x3_s2": (_seq(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()), (8, 12, 12)),
    "conv1x1": (_seq(nn.Conv2d(16, 24, 1)), (16, 8, 8)),
    "conv5x5": (_seq(nn.Conv2d(3, 8, 5, padding=2)), (3, 12, 12)),
    "depthwise": (_seq(nn.Conv2d(8, 8, 3, padding=1, groups=8)), (8, 10, 10)),
    "maxpool": (_seq(nn.Conv2d(4, 8, 1), nn.MaxPool2d(2)), (4, 8, 8)),
    "avgpool": (_seq(nn.Conv2d(4, 8, 1), nn.AvgPool2d(2)), (4, 8, 8)),
    "global_pool": (_seq(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10)), (8, 6, 6)),
    "residual_add": (lambda: _Residual(8), (8, 8, 8)),
    # Token rows on the vector ALU: reductions, a mask where 10 features are no multiple
    # of the columns.
    "softmax": (_seq(nn.Linear(10, 10), nn.Softmax(dim=-1)), (6, 10)),
    "layernorm": (_seq(nn.Linear(16, 16), nn.LayerNorm(16)), (5, 16)),
}


def _compile(entry, cfg):
    factory, shape = entry
    torch.manual_seed(0)
    model = factory().eval()
    qmodel = sw.quantize(model, [torch.randn(1, *shape) for _ in range(4)])
    return sw.compile(qmodel, cfg), shape


def _check_against_rtl(device, program, shape):
    est = estimate(program)
    device.run(program, torch.randn(*shape))
    st = device.stats
    assert est.cycles == pytest.approx(st["cycles"], rel=TOLERANCE_PCT / 100)
    assert est.array_busy_cycles == st["array_busy_cycles"]
    for layer, mine in zip(st["layers"], est.layers):
        assert mine.id == layer["id"]
        assert mine.cycles == pytest.approx(layer["cycles"], rel=TOLERANCE_PCT / 100), layer["name"]
    return est, st


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_layers_against_rtl(preset):
    cfg = NPUConfig.preset(preset)
    with sw.Device(cfg, "rtl") as device:
        for name, entry in _MODELS.items():
            program, shape = _compile(entry, cfg)
            est, st = _check_against_rtl(device, program, shape)
            # The token-wait counters mean the same in the model.
            for key in ("stall_load_cycles", "stall_compute_cycles", "stall_store_cycles"):
                assert getattr(est, key) == pytest.approx(st[key], rel=0.05, abs=8), (name, key)


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("model", ["lenet5", "resnet8"])
def test_zoo_against_rtl(preset, model):
    cfg = NPUConfig.preset(preset)
    torch.manual_seed(0)
    net, shape = zoo.build(model)
    program = sw.compile(sw.quantize(net.eval(), [torch.randn(1, *shape) for _ in range(2)]), cfg)
    with sw.Device(cfg, "rtl") as device:
        est, _ = _check_against_rtl(device, program, shape)
    assert len(est.layers) == len(program.layers)


def test_spans_cover_every_queued_instruction():
    cfg = NPUConfig.preset("tiny")
    program, _ = _compile(_MODELS["residual_add"], cfg)
    est = estimate(program)
    queued = [i for i, insn in enumerate(program.instructions())
              if insn.opcode not in (isa.Opcode.FINISH,)]
    assert sorted(s.index for s in est.spans) == queued
    for queue in ("load", "compute", "store"):
        mine = [s for s in est.spans if s.queue == queue]
        # In order on each queue, each after the one before it started.
        assert [s.index for s in mine] == sorted(s.index for s in mine)
        assert all(a.begin < b.begin for a, b in zip(mine, mine[1:]))
        assert all(s.end > s.begin for s in mine)
    assert max(s.end for s in est.spans) <= est.cycles
    layers = {layer["id"] for layer in program.layers}
    assert {s.layer for s in est.spans if s.opcode == "GEMM"} <= layers


@pytest.mark.parametrize("model", ["residual_add", "global_pool", "conv3x3_s2"])
def test_spans_equal_the_rtl_trace(model):
    cfg = NPUConfig.preset("tiny")
    program, shape = _compile(_MODELS[model], cfg)
    est = estimate(program)
    with sw.Device(cfg, "rtl", trace=True) as device:
        device.run(program, torch.randn(*shape))
        rtl = list(device.spans)
    assert list(est.spans) == rtl
    assert sum(s.stall for s in est.spans if s.queue == "load") == est.stall_load_cycles


def test_resnet18_is_fast():
    import time
    cfg = NPUConfig()
    net, shape = zoo.build("resnet18")
    program = sw.compile(sw.quantize(net.eval(), [torch.randn(1, *shape)]), cfg)
    t0 = time.process_time()
    est = estimate(program)
    seconds = time.process_time() - t0
    assert est.array_busy_cycles * cfg.macs == est.mac_slots
    assert seconds < 3.0      # about 1 s alone on this 2-core machine; headroom for load


def test_host_segments_add_no_cycles(monkeypatch):
    from sw import ops
    from sw.frontend import fx
    from sw.program import NpuSegment
    from tests.sw.test_host_ops import HostSigmoid, _from_sigmoid
    monkeypatch.setitem(ops.REGISTRY, HostSigmoid.name, HostSigmoid())
    monkeypatch.setitem(fx.MODULES, nn.Sigmoid, _from_sigmoid)
    cfg = NPUConfig.preset("tiny")
    entry = (_seq(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3)), (6,))
    program, shape = _compile(entry, cfg)
    est = estimate(program)
    assert est.npu_segments == 2 and len(est.host_segments) == 1
    with sw.Device(cfg, "rtl") as device:
        _check_against_rtl(device, program, shape)
    # The NPU segments' cycles are the sum of each stream run alone.
    alone = sum(estimate_words(program.words[seg.start:seg.start + seg.count], cfg).cycles
                for seg in program.segments if isinstance(seg, NpuSegment))
    assert est.cycles == alone
