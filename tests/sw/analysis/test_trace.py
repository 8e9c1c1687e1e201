"""Instruction traces: the Chrome trace JSON, and the RTL's timeline against its counters."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig, isa
from sw.analysis import trace
from sw.analysis.trace import Span

from ..test_host_ops import host_sigmoid  # noqa: F401  (the fixture)

TINY = NPUConfig.preset("tiny")


class SmallNet(nn.Module):
    """Convolutions, a residual add (ALU), pooling and a linear layer: every queue and
    every opcode the compiler emits, in a program the tiny RTL runs in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


SHAPE = (1, 8, 8)


# ------------------------------------------------------------------------ synthetic spans
SPANS = [
    Span("load", 0, "LOAD", 0, 0, 5),
    Span("compute", 1, "CONFIG", 7, 2, 3),
    Span("compute", 2, "GEMM", 7, 6, 10, stall=1),
    Span("load", 3, "LOAD", 7, 6, 9, stall=2),
    Span("store", 4, "STORE", 7, 12, 20, stall=4),
    Span("compute", 5, "CONFIG", 8, 20, 21),
    Span("compute", 6, "ALU", 8, 21, 25),
]
LAYERS = [{"id": 7, "name": "conv1", "op": "conv"}, {"id": 8, "name": "add", "op": "add"}]


def _slices(doc, tid):
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]


def test_chrome_trace_structure(tmp_path):
    path = trace.write_chrome_trace(tmp_path / "t.json", SPANS, layers=LAYERS, clock_mhz=250)
    doc = trace.load_chrome_trace(path)
    assert doc == json.loads(path.read_text())
    meta = {(e["name"], e["tid"]): e["args"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert meta[("process_name", 0)] == {"name": "NPU"}
    tracks = {tid: args["name"] for (name, tid), args in meta.items() if name == "thread_name"}
    assert sorted(tracks.values()) == ["compute", "layers", "load", "store"]
    by_name = {name: tid for tid, name in tracks.items()}
    # One X event per instruction on its queue's track, named by its opcode, in order.
    for queue in ("load", "compute", "store"):
        mine = [s for s in SPANS if s.queue == queue]
        events = _slices(doc, by_name[queue])
        assert [(e["name"], e["args"]["index"], e["args"]["opcode"]) for e in events] == \
            [(s.opcode, s.index, s.opcode) for s in mine]
        assert [(e["ts"], e["dur"]) for e in events] == \
            [(s.begin / 250, (s.end - s.begin) / 250) for s in mine]
        assert [e["args"]["stall_cycles"] for e in events] == [s.stall for s in mine]
    # The layer track: layer 0 until the first CONFIG completes, then each CONFIG's layer.
    layers = _slices(doc, by_name["layers"])
    assert [(e["name"], e["args"]["layer"], e["args"]["cycles"]) for e in layers] == \
        [("layer 0", 0, 3), ("conv1", 7, 18), ("add", 8, 4)]
    assert doc["otherData"]["time_unit"] == "us"


def test_chrome_trace_in_cycles_without_clock(tmp_path):
    doc = trace.load_chrome_trace(trace.write_chrome_trace(tmp_path / "t.json", SPANS))
    gemm = next(e for e in doc["traceEvents"] if e.get("name") == "GEMM")
    assert (gemm["ts"], gemm["dur"]) == (6, 4)
    assert doc["otherData"]["time_unit"] == "cycles"
    assert {e["name"] for e in doc["traceEvents"] if e.get("cat") == "layer"} == \
        {"layer 0", "layer 7", "layer 8"}


def test_chrome_trace_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="clock_mhz must be a positive number"):
        trace.write_chrome_trace(tmp_path / "t.json", SPANS, clock_mhz=0)
    with pytest.raises(TypeError, match="spans must be Span objects"):
        trace.write_chrome_trace(tmp_path / "t.json", [("load", 0)])
    with pytest.raises(TypeError, match=r"layers\[0\] must be a dict with 'id' and 'name'"):
        trace.write_chrome_trace(tmp_path / "t.json", SPANS, layers=["conv1"])
    with pytest.raises(ValueError, match="unknown queue 'vector'"):
        trace.write_chrome_trace(tmp_path / "t.json", [Span("vector", 0, "ALU", 0, 0, 1)])
    with pytest.raises(ValueError, match="ends .* before it begins"):
        trace.write_chrome_trace(tmp_path / "t.json", [Span("load", 0, "LOAD", 0, 5, 4)])


def test_trace_validator_rejects_bad_documents(tmp_path):
    good = trace.chrome_trace(SPANS, layers=LAYERS)
    assert trace.check_chrome_trace(good) is good
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        trace.load_chrome_trace(bad)
    with pytest.raises(ValueError, match="'traceEvents' list"):
        trace.check_chrome_trace({"events": []})

    def broken(change, index=None):
        doc = json.loads(json.dumps(good))
        events = doc["traceEvents"]
        k = index if index is not None else next(i for i, e in enumerate(events) if e["ph"] == "X")
        change(events, k)
        return doc
    cases = [
        (lambda ev, k: ev[k].update(ts=-1), "'ts' must be a finite number >= 0"),
        (lambda ev, k: ev[k].update(dur="3"), "'dur' must be a finite number >= 0"),
        (lambda ev, k: ev[k].update(tid=1.5), "'tid' must be a int"),
        (lambda ev, k: ev[k].update(ph="B"), "phase 'B' is not one this trace uses"),
        (lambda ev, k: ev[k].update(tid=9), "has events but no thread_name"),
        (lambda ev, k: ev.append(dict(ev[k], ts=ev[k]["ts"] + 0.5)), "starts inside"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            trace.check_chrome_trace(broken(change))


def test_queue_sequences_and_layer_spans():
    assert trace.queue_sequences(reversed(SPANS)) == {
        "load": [(0, "LOAD"), (3, "LOAD")],
        "compute": [(1, "CONFIG"), (2, "GEMM"), (5, "CONFIG"), (6, "ALU")],
        "store": [(4, "STORE")],
    }
    assert trace.layer_cycles(SPANS) == {0: 3, 7: 18, 8: 4}
    assert trace.layer_cycles(SPANS, cycles=30) == {0: 3, 7: 18, 8: 9}
    with pytest.raises(ValueError, match="ends before the last span"):
        trace.layer_spans(SPANS, cycles=24)


def test_spans_from_events():
    insns = [isa.config(key="layer", value=3), isa.load(mem="spad", y_size=1, x_size=1, length=1),
             isa.gemm(m=1), isa.store(rows=1, length=1), isa.finish(), isa.gemm(m=1)]
    # (cycle, queue, kind, stall): CONFIG in one cycle, the LOAD waits 2 cycles.
    events = np.array([[0, 1, 0, 0], [0, 1, 1, 0], [3, 0, 0, 2], [5, 0, 1, 0],
                       [6, 1, 0, 1], [7, 1, 1, 0], [9, 2, 0, 0], [12, 2, 1, 0]])
    spans = trace.spans_from_events(events, insns)
    assert spans == [Span("compute", 0, "CONFIG", 3, 0, 1), Span("load", 1, "LOAD", 3, 3, 6, 2),
                     Span("compute", 2, "GEMM", 3, 6, 8, 1), Span("store", 3, "STORE", 3, 9, 13)]
    # What follows FINISH is never dispatched; a short trace is refused unless allowed.
    with pytest.raises(ValueError, match="compute queue has 2 instructions but the trace has 1 "
                                         "starts and 1 completions"):
        trace.spans_from_events(events[:4], insns)
    assert len(trace.spans_from_events(events[:5], insns, complete=False)) == 2
    with pytest.raises(ValueError, match="completes an instruction before starting it"):
        trace.spans_from_events(events[[1]], insns, complete=False)
    with pytest.raises(ValueError, match=r"\(N, 4\) integer array"):
        trace.spans_from_events(events[:, :3], insns)


# ------------------------------------------------------------------------ the RTL's timeline
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = SmallNet().eval()
    qmodel = sw.quantize(model, [torch.randn(8, *SHAPE) for _ in range(2)])
    return qmodel, sw.compile(qmodel, TINY)


@pytest.fixture(scope="module")
def traced(small):
    qmodel, program = small
    with sw.Device(TINY, "rtl", trace=True) as device:
        x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
        y = device.run(program, x)
        assert torch.equal(y, qmodel(x))
        yield program, device.stats, device.spans


def test_rtl_spans_are_the_program_in_order(traced):
    program, _, spans = traced
    expected = trace.program_queues(program.instructions())
    assert trace.queue_sequences(spans) == \
        {q: [(i, insn.opcode.name) for i, insn, _ in items] for q, items in expected.items()}
    assert {s.opcode for s in spans} == {"LOAD", "GEMM", "ALU", "CONFIG", "SYNC", "STORE"}
    layer_of = {i: layer for items in expected.values() for i, _, layer in items}
    assert all(s.layer == layer_of[s.index] for s in spans)
    for queue in ("load", "compute", "store"):
        mine = sorted((s for s in spans if s.queue == queue), key=lambda s: s.begin)
        assert all(s.end > s.begin for s in mine)
        assert all(a.end <= b.begin for a, b in zip(mine, mine[1:])), f"{queue} spans overlap"


def test_rtl_spans_add_up_to_the_counters(traced):
    program, stats, spans = traced
    # A GEMM's span is the cycles its rows enter the array: exactly ARRAY_BUSY.
    assert sum(s.end - s.begin for s in spans if s.opcode == "GEMM") == stats["array_busy_cycles"]
    assert stats["macs"] == TINY.macs * stats["array_busy_cycles"]
    # Every cycle a queue's head waits for tokens belongs to the instruction that waits.
    for queue in ("load", "compute", "store"):
        assert sum(s.stall for s in spans if s.queue == queue) == stats[f"stall_{queue}_cycles"]
    # The run stops counting a cycle after the last instruction's last cycle: the last
    # STORE finishes only with its rows in DRAM, when the core's other units are idle.
    assert stats["cycles"] == max(s.end for s in spans) + 1
    # The layer spans are the per-layer cycles the harness counts apart.
    per_layer = trace.layer_cycles(spans, cycles=stats["cycles"])
    known = {layer["id"] for layer in program.layers}
    assert {k: v for k, v in per_layer.items() if k in known} == \
        {layer["id"]: layer["cycles"] for layer in stats["layers"]}
    assert sum(v for k, v in per_layer.items() if k not in known) == stats["other_cycles"]
    assert sum(per_layer.values()) == stats["cycles"]


def test_rtl_trace_opens_as_chrome_json(traced, tmp_path):
    program, _, spans = traced
    doc = trace.load_chrome_trace(
        trace.write_chrome_trace(tmp_path / "rtl.json", spans, layers=program.layers, clock_mhz=100))
    assert len([e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] != "layer"]) == \
        len(spans) == program.insn_count - 1      # every instruction but FINISH
    names = {e["name"] for e in doc["traceEvents"] if e.get("cat") == "layer"}
    assert {layer["name"] for layer in program.layers} <= names


def test_trace_option_errors():
    with pytest.raises(ValueError, match="the func backend records no instruction trace"):
        sw.Device(TINY, "func", trace=True)
    with pytest.raises(TypeError, match="trace must be a bool"):
        sw.Device(TINY, "rtl", trace="yes")
    assert sw.Device(TINY, "func").spans is None


def test_run_cli_writes_a_trace(tmp_path, capsys):
    from sw.run import main
    out = tmp_path / "run.json"
    argv = [f"{__name__}:SmallNet", "--input-shape", "1,8,8", "--preset", "tiny"]
    assert main(argv + ["--backend", "rtl", "--trace", str(out), "--clock-mhz", "200"]) == 0
    assert "written to" in capsys.readouterr().out
    doc = trace.load_chrome_trace(out)
    assert doc["otherData"]["clock_mhz"] == 200
    queues = {e["cat"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert queues == {"load", "compute", "store", "layer"}
    with pytest.raises(SystemExit):
        main(argv + ["--trace", str(out)])          # the func backend has no timing
    assert "--trace needs --backend rtl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv + ["--clock-mhz", "100"])
    assert "--clock-mhz goes with --trace" in capsys.readouterr().err



@pytest.mark.usefixtures("host_sigmoid")
def test_rtl_trace_of_npu_segments_and_a_batch():
    """With a host operator between NPU segments and two samples, the runs follow one
    another: each sample has every instruction of every segment once, in program order."""
    from sw.program import NpuSegment
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3)).eval()
    qmodel = sw.quantize(model, [torch.randn(4, 6)])
    program = sw.compile(qmodel, TINY)
    segments = [s for s in program.segments if isinstance(s, NpuSegment)]
    assert len(segments) == 2
    with sw.Device(TINY, "rtl", trace=True) as device:
        x = torch.randn(2, 6)
        assert torch.equal(device.run(program, x), qmodel(x))
        spans, stats = device.spans, device.stats
    insns = program.instructions()
    expected = {q: [] for q in ("load", "compute", "store")}
    for _ in range(2):
        for seg in segments:
            for q, items in trace.program_queues(insns[seg.start:seg.start + seg.count]).items():
                expected[q] += [(seg.start + i, insn.opcode.name) for i, insn, _ in items]
    assert trace.queue_sequences(spans) == expected
    for queue in expected:
        mine = sorted((s for s in spans if s.queue == queue), key=lambda s: s.begin)
        assert all(a.end <= b.begin for a, b in zip(mine, mine[1:]))
    assert sum(s.end - s.begin for s in spans if s.opcode == "GEMM") == stats["array_busy_cycles"]
    # Four runs, each stopping a cycle after its last instruction.
    assert max(s.end for s in spans) + 1 == stats["cycles"]
