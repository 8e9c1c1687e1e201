"""The SCALE-Sim baseline: the committed cache, its loader, and how layers and the config
are handed to SCALE-Sim. SCALE-Sim itself is not run here (it is not a project dependency)."""
import importlib.util
import json
import pathlib

import pytest

from hw import NPUConfig
from sw.analysis import scalesim as ss

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _bench():
    spec = importlib.util.spec_from_file_location("scalesim_ref", ROOT / "bench" / "scalesim_ref.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cached_gemms_match_the_figures_of_the_issue():
    res = ss.load_cached("gemm")
    assert res.complete and res.tool == "scalesim 3.0.0" and res.read_buffer_patched
    assert res.command.startswith("python bench/scalesim_ref.py")
    assert res.npu_config == NPUConfig()
    assert res.scalesim_config == {
        "ArrayHeight": 16, "ArrayWidth": 16, "Dataflow": "ws", "ifmapsramszkB": 32,
        "filtersramszkB": 32, "ofmapsramszkB": 16, "bandwidth_words_per_cycle": 16}
    assert "Dataflow = ws" in res.scalesim_cfg_file and "Bandwidth = 16" in res.scalesim_cfg_file
    assert [x.name for x in res.layers] == ["gemm128", "gemm256", "gemm512"]
    assert [x.total_cycles for x in res.layers] == [12_671, 265_105, 4_201_733]
    assert [x.macs for x in res.layers] == [n ** 3 for n in (128, 256, 512)]
    assert res.layer("gemm128").stall_cycles == 0
    assert res.total_cycles == 12_671 + 265_105 + 4_201_733
    for layer in res.layers:
        assert 0 < layer.compute_cycles
        assert layer.compute_cycles + layer.stall_cycles <= layer.total_cycles
        # No schedule beats one MAC slot per PE per cycle.
        assert layer.compute_cycles >= layer.macs / 256
    with pytest.raises(KeyError, match="no layer 'gemm64'.*gemm128"):
        res.layer("gemm64")


def test_cached_resnet18_is_the_zoo_model():
    res = ss.load_cached("resnet18")
    layers = _bench().model_layers("resnet18")
    assert len(layers) == 21                                # 20 convolutions and fc
    n = len(res.layers) if not res.complete else len(layers)
    assert [(x.name, x.topology, x.macs) for x in res.layers] == \
           [(x.name, x.topology()[1], x.macs) for x in layers[:n]]
    assert res.layers[0].topology == "stem_0, 229, 229, 7, 7, 3, 64, 2,"
    for layer in res.layers:
        assert layer.compute_cycles + layer.stall_cycles <= layer.total_cycles
        assert layer.compute_cycles >= layer.macs / 256


def test_layers_as_scalesim_sees_them():
    bench = _bench()
    layers = bench.model_layers("resnet18")
    assert sum(x.macs for x in layers) == 1_814_073_344      # ResNet-18's conv + fc MACs
    stride2 = next(x for x in layers if x.name == "blocks_2_conv1")
    # 56x56 padded to 58 and cropped to what 28 outputs at stride 2 read: 57.
    assert (stride2.ifmap_h, stride2.filter_h, stride2.stride) == (57, 3, 2)
    fc = layers[-1]
    assert (fc.kind, fc.topology()) == ("linear", ("Layer, M, N, K,", "fc, 1, 1000, 512,"))
    assert bench.gemm_layers([128])[0].topology()[1] == "gemm128, 128, 128, 128,"
    dw = [x for x in bench.model_layers("mobilenetv2_small") if x.kind == "depthwise"]
    assert dw and all(x.topology()[1].startswith("DP_") for x in dw)


def test_config_mapping_and_its_errors():
    bench = _bench()
    large = bench.scalesim_config(NPUConfig.preset("large"))
    assert (large["ifmapsramszkB"], large["ofmapsramszkB"], large["bandwidth_words_per_cycle"]) \
        == (128, 64, 32)
    text = bench.config_text(bench.scalesim_config(NPUConfig()))
    assert "ifmapsramszkB = 32" in text and "IfmapSRAMBankBandwidth = 16" in text
    with pytest.raises(ValueError, match="whole KiB"):
        bench.scalesim_config(NPUConfig.preset("tiny"))


def _good(tmp_path):
    data = json.loads((ss.CACHE_DIR / "gemm_16x16.json").read_text())
    path = tmp_path / "gemm_16x16.json"
    path.write_text(json.dumps(data))
    return data, path


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="scalesim_ref.py"):
        ss.load_cached("gemm", 8, 8, directory=tmp_path)
    with pytest.raises(TypeError, match="workload"):
        ss.load_cached(None)
    with pytest.raises(ValueError, match="rows must be positive"):
        ss.load_cached("gemm", rows=0)
    data, path = _good(tmp_path)
    assert ss.load(path).layers == ss.load_cached("gemm").layers
    path.write_text("{not json")
    with pytest.raises(ss.ScaleSimCacheError, match="not valid JSON"):
        ss.load(path)
    cases = [
        ("format", 2, "format 2"),
        ("layers", "x", "'layers' is 'x'"),
        ("npu_config", {"rows": 1}, "bad npu_config"),
        ("complete", 1, "'complete' is 1"),
    ]
    for key, value, message in cases:
        path.write_text(json.dumps({**data, key: value}))
        with pytest.raises(ss.ScaleSimCacheError, match=message):
            ss.load(path)
    del data["command"]
    path.write_text(json.dumps(data))
    with pytest.raises(ss.ScaleSimCacheError, match="missing 'command'"):
        ss.load(path)


def test_loader_rejects_bad_layers(tmp_path):
    data, path = _good(tmp_path)
    for change, message in [({"stall_cycles": "7"}, "'stall_cycles' is '7'"),
                            ({"total_cycles": -1}, "total_cycles is negative"),
                            ({"kind": "pool"}, "kind 'pool'"),
                            ({"macs": True}, "'macs' is True")]:
        bad = {**data, "layers": [{**data["layers"][0], **change}]}
        path.write_text(json.dumps(bad))
        with pytest.raises(ss.ScaleSimCacheError, match=r"layer 0: .*" + message.split()[0]):
            ss.load(path)
