"""The roofline model and its plot."""
import pytest

from hw import NPUConfig
from sw.analysis import llm
from sw.analysis import roofline as rl


def test_npu_roof_from_the_config():
    roof = rl.npu_roof(NPUConfig(), clock_mhz=200)           # 16x16, 128-bit AXI
    assert roof.ops_s == 2 * 256 * 200e6
    assert roof.bytes_s == 16 * 200e6
    assert roof.ridge == 32.0
    assert rl.npu_roof(NPUConfig(), clock_mhz=200, dram_gbs=12.8).bytes_s == 12.8e9
    with pytest.raises(ValueError, match="clock_mhz"):
        rl.npu_roof(NPUConfig(), clock_mhz=0)
    with pytest.raises(ValueError, match="dram_gbs"):
        rl.npu_roof(NPUConfig(), clock_mhz=100, dram_gbs=-1)


def test_attainable_and_bound():
    roof = rl.Roof("x", 100.0, 10.0)
    assert roof.attainable(1) == 10 and roof.attainable(10) == 100 and roof.attainable(50) == 100
    assert roof.bound(9.99) == "memory" and roof.bound(10) == "compute"
    with pytest.raises(ValueError, match="must be positive"):
        rl.Roof("bad", 0, 1)


def test_llm_decode_is_memory_bound_prefill_compute_bound_on_the_npu():
    roof = rl.npu_roof(NPUConfig(), clock_mhz=200)
    cfg = llm.get("llama2-7b")
    assert roof.bound(llm.phase_cost(cfg, "decode", batch=1, seq=2048).intensity) == "memory"
    assert roof.bound(llm.phase_cost(cfg, "prefill", batch=1, seq=512).intensity) == "compute"


def test_plot_writes_png_and_svg(tmp_path):
    roof = rl.npu_roof(NPUConfig.preset("tiny"), clock_mhz=100)
    out = rl.plot_roofline([roof], [(roof, rl.Point("a", 0.5)), (roof, rl.Point("b", 20, 1e8))],
                           tmp_path / "roof")
    assert [p.suffix for p in out] == [".png", ".svg"]
    assert out[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in out[1].read_text()[:400]
    with pytest.raises(ValueError, match="at least one roof"):
        rl.plot_roofline([], [], tmp_path / "none")
