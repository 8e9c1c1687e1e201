"""The analysis tool: per-layer metrics against hand-computed values, its report files,
and the CLI's errors."""

import csv
import json
import math

import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from hw.isa import PARAM_ELEM_BYTES, PARAM_GROUP_ROWS
from sw import analyze as cli
from sw.analysis import metrics, report

TINY = NPUConfig.preset("tiny")


class ConvPoolAdd(nn.Module):
    """conv 3->8 3x3 pad 1 on 8x8, a residual add of its ReLU, 2x2 max pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.pool(y + y)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = ConvPoolAdd().eval()
    qmodel = sw.quantize(model, [torch.randn(4, 3, 8, 8)])
    program = sw.compile(qmodel, TINY)
    return qmodel, program


def test_counts_are_the_hand_computed_ones(small):
    qmodel, program = small
    a = metrics.analyze_program(qmodel, program, None, name="small", clock_mhz=100.0)
    by_op = {m.op: m for m in a.layers}
    assert list(by_op) == ["conv", "add", "maxpool"]
    conv, add, pool = by_op["conv"], by_op["add"], by_op["maxpool"]
    assert conv.macs == 8 * 8 * 8 * 3 * 3 * 3 == 13_824
    assert conv.flops == 2 * conv.macs
    assert conv.param_bytes == 8 * 27 + 8 * PARAM_GROUP_ROWS * PARAM_ELEM_BYTES == 312
    assert conv.activation_bytes == 3 * 64 + 8 * 64
    assert conv.footprint_bytes == 312 + 3 * 64 + 8 * 64      # input and output live
    assert add.macs == 0 and add.flops == 8 * 64 and add.param_bytes == 0
    assert add.activation_bytes == 3 * 8 * 64                 # two operands (the same), output
    assert pool.flops == 8 * 4 * 4 * 2 * 2 and pool.activation_bytes == 8 * 64 + 8 * 16
    assert (conv.op_class, add.op_class, pool.op_class) == ("gemm", "elementwise", "pooling")
    # DRAM: every operand and weight byte is read at least once, the outputs written once.
    assert conv.dram_write_bytes == 8 * 64 and pool.dram_write_bytes == 8 * 16
    assert conv.dram_read_bytes >= 3 * 64 + 8 * 27
    assert conv.intensity == pytest.approx(conv.flops / conv.dram_bytes)
    assert conv.mac_slots >= conv.macs and conv.mac_slots % TINY.macs == 0
    # Without timing the time figures are absent, not zero.
    assert conv.cycles is conv.utilization is conv.mbu is a.latency_s is None
    # The roof is the config's at the clock: 2 ops per MAC per cycle, one bus beat a cycle.
    assert a.roof.ops_s == 2 * TINY.macs * 100e6
    assert a.roof.bytes_s == TINY.dma_bytes * 100e6
    # Totals are the sums; the footprint is all parameters and the widest live set.
    t = a.total
    assert t.macs == conv.macs and t.flops == sum(m.flops for m in a.layers)
    assert t.dram_bytes >= sum(m.dram_bytes for m in a.layers)
    assert t.footprint_bytes == 312 + max(m.footprint_bytes - m.param_bytes for m in a.layers)
    assert sum(e for k, e in t.energy_pj.items() if k != "total") == pytest.approx(
        t.energy_pj["total"])


def test_time_figures_follow_the_cycles(small):
    qmodel, program = small
    ids = [layer["id"] for layer in program.layers]
    cycles = {i: 1000 * (k + 1) for k, i in enumerate(ids)}
    timing = metrics.Timing("model", sum(cycles.values()) + 7, cycles)
    a = metrics.analyze_program(qmodel, program, timing, clock_mhz=250.0, dram_gbs=0.5)
    conv = a.layers[0]
    assert conv.cycles == 1000 and conv.seconds == pytest.approx(1000 / 250e6)
    assert conv.utilization == pytest.approx(conv.macs / (1000 * TINY.macs))
    assert conv.slot_utilization == pytest.approx(conv.mac_slots / (1000 * TINY.macs))
    assert conv.achieved_gbs == pytest.approx(conv.dram_bytes / conv.seconds / 1e9)
    assert conv.mbu == pytest.approx(conv.achieved_gbs / 0.5)
    assert a.total.cycles == 6007 and a.throughput == pytest.approx(250e6 / 6007)
    assert [m.name for m in a.hotspots(2)] == [a.layers[2].name, a.layers[1].name]
    shares = a.class_shares()
    assert math.fsum(s["cycles"] for s in shares.values()) == pytest.approx(1.0)
    assert shares["gemm"]["cycles"] == pytest.approx(1000 / 6000)
    assert shares["gemm"]["macs"] == 1.0 and shares["pooling"]["macs"] == 0.0
    # Memory-bound once the DRAM is slow enough; compute-bound on a fast one.
    slow = metrics.analyze_program(qmodel, program, timing, clock_mhz=250.0, dram_gbs=1e-3)
    fast = metrics.analyze_program(qmodel, program, timing, clock_mhz=250.0, dram_gbs=1e3)
    assert slow.layers[0].bound == "memory" and fast.layers[0].bound == "compute"


def test_analyze_on_rtl_is_bit_exact_and_measured():
    a = metrics.analyze("lenet5", TINY, backend="rtl")
    assert a.timing_source == "rtl"
    assert all(m.cycles > 0 for m in a.layers)
    assert sum(m.cycles for m in a.layers) <= a.total.cycles
    assert 0 < a.total.utilization <= a.total.slot_utilization <= 1


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    code = cli.main(["lenet5", "--preset", "tiny", "--backend", "rtl", "--out", str(out),
                     "--quiet"])
    return code, out


def test_cli_writes_every_file(cli_run, capsys):
    code, out = cli_run
    assert code == 0
    for name in ("layers.csv", "analysis.json", "report.html",
                 *(f"{p}.{ext}" for p in ("roofline", "utilization", "time_share", "energy")
                   for ext in ("png", "svg"))):
        assert (out / name).stat().st_size > 1000 or name == "layers.csv", name
    rows = list(csv.DictReader(open(out / "layers.csv")))
    data = json.loads((out / "analysis.json").read_text())
    assert [r["name"] for r in rows] == [m["name"] for m in data["layers"]] + ["total"]
    assert set(report.CSV_COLUMNS) <= set(rows[0])
    assert int(rows[-1]["macs"]) == data["total"]["macs"] == sum(m["macs"] for m in data["layers"])
    assert data["timing_source"] == "rtl" and data["total"]["cycles"] > 0
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 4 and all(m["name"] in page for m in data["layers"])
    assert (out / "roofline.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["nosuchmodel"], "neither a zoo name"),
    (["lenet5", "--preset", "nosuch"], "invalid choice"),
    (["lenet5", "--rows", "0"], "bad configuration"),
    (["lenet5", "--backend", "gpu"], "invalid choice"),
    (["lenet5", "--input-shape", "3,x"], "not a comma-separated list"),
    (["lenet5", "--energy-table", "/nonexistent.json"], "--energy-table"),
    (["lenet5", "--config", "/nonexistent.json"], "--config"),
    (["lenet5", "--top", "0"], "at least 1"),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["lenet5", "--preset", "tiny", "--backend", "rtl", "--dram-gbs", "3"], "dram_gbs applies"),
    (["lenet5", "--preset", "tiny", "--clock-mhz", "-5"], "clock_mhz must be positive"),
    (["no_such_module_xyz:Model"], "cannot import"),
])
def test_cli_errors_after_parsing_are_one_line(argv, message, capsys):
    assert cli.main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_profile_gpu_without_a_gpu_says_so(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # also on a GPU machine
    assert cli.main(["resnet8", "--profile-gpu"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["resnet8", "--profile-gpu", "--input-shape", "3,32,32"])


def test_cli_traces_of_the_model_and_the_rtl_agree(tmp_path, capsys):
    """Both timelines of one program: valid trace JSON, the same instructions in the same
    order on each queue, and the RTL's spans adding up to its counters."""
    from sw.analysis import trace
    docs = {}
    for backend in ("model", "rtl"):
        path = tmp_path / f"{backend}.json"
        assert cli.main(["resnet8", "--preset", "tiny", "--backend", backend, "--trace",
                         str(path), "--clock-mhz", "100", "--quiet"]) == 0
        docs[backend] = trace.load_chrome_trace(path)
    assert "open it in https://ui.perfetto.dev" in capsys.readouterr().out

    def sequences(doc):
        out = {}
        for e in doc["traceEvents"]:
            if e["ph"] == "X" and "index" in e.get("args", {}):
                out.setdefault(e["tid"], []).append((e["ts"], e["args"]["index"], e["name"]))
        return {tid: [(i, n) for _, i, n in sorted(v)] for tid, v in out.items()}
    model, rtl = sequences(docs["model"]), sequences(docs["rtl"])
    assert model == rtl and len(model) == 3 and all(model.values())
    a = metrics.analyze("resnet8", TINY, backend="rtl", trace=True)
    seq = trace.queue_sequences(a.spans)
    busy = sum(s.end - s.begin for s in a.spans if s.opcode == "GEMM")
    assert busy * TINY.macs == a.total.mac_slots
    assert sum(len(v) for v in seq.values()) == len(a.spans)
