"""LLM proxies: published parameter counts and KV-cache figures, step costs, the layer module."""
import pytest
import torch

from sw.analysis import llm


@pytest.mark.parametrize("name, params", [
    ("bert-base", 109_482_240),     # bert-base-uncased, as HF's BertModel counts it
    ("llama2-7b", 6_738_415_616),   # Llama-2-7b-hf
    ("opt-13b", 12_853_473_280),    # facebook/opt-13b
])
def test_parameter_counts_match_the_published_models(name, params):
    assert llm.get(name).params() == params


def test_layer_module_has_the_counted_parameters():
    for name in llm.MODELS:
        cfg = llm.get(name)
        small = llm.LLMConfig(**{**cfg.__dict__, "hidden": 64, "heads": 4, "kv_heads": 4,
                                 "intermediate": 96})
        layer = llm.TransformerLayer(small)
        assert sum(p.numel() for p in layer.parameters()) == small.params_per_layer(), name


def test_opt13b_kv_cache_as_in_the_pagedattention_paper():
    cfg = llm.get("opt-13b")
    assert cfg.kv_bytes_per_token() == 800 * 1024                   # 800 KB per token
    assert cfg.kv_bytes_per_token() * 2048 == pytest.approx(1.6e9, rel=0.05)   # 1.6 GB
    split = llm.memory_split(cfg, 40 * 10**9)                       # a 40 GB A100
    assert split["weights"] == pytest.approx(0.65, abs=0.01)
    assert split["kv_cache"] == pytest.approx(0.30, abs=0.01)
    with pytest.raises(ValueError, match="do not fit"):
        llm.memory_split(cfg, 16 * 10**9)


def test_encoder_has_no_kv_cache_and_no_decode():
    cfg = llm.get("bert-base")
    assert cfg.kv_bytes_per_token() == 0
    with pytest.raises(ValueError, match="encoder"):
        llm.phase_cost(cfg, "decode", batch=1, seq=128)


def test_decode_cost_by_hand():
    cfg = llm.get("llama2-7b")
    c = llm.phase_cost(cfg, "decode", batch=4, seq=1000, layers=1)
    w = 4 * 4096 * 4096 + 3 * 4096 * 11008
    assert c.linear_flops == 2 * 4 * w
    assert c.attention_flops == 2 * 2 * 4 * 32 * 1001 * 128
    assert c.weight_bytes == 2 * (w + 2 * 4096)                     # + two RMSNorm weights
    assert c.kv_read_bytes == 4 * 1000 * 2 * 4096 * 2
    assert c.kv_write_bytes == 4 * 2 * 4096 * 2
    # Decode is memory-bound on an H200 (989 TFLOP/s, 4.8 TB/s); prefill compute-bound.
    assert c.bound(989e12, 4.8e12) == "memory"
    assert llm.phase_cost(cfg, "prefill", batch=1, seq=2048, layers=1).bound(989e12, 4.8e12) \
        == "compute"
    t = c.time_s(989e12, 4.8e12)
    assert t == pytest.approx(c.dram_bytes / 4.8e12)
    assert c.mbu(t, 4.8e12) == pytest.approx(1.0)
    assert c.tokens_per_s(t) == pytest.approx(4 / t)


def test_intensity_grows_with_batch_in_decode():
    cfg = llm.get("opt-13b")
    ai = [llm.phase_cost(cfg, "decode", batch=b, seq=512).intensity for b in (1, 8, 64)]
    assert ai[0] < ai[1] < ai[2]
    assert ai[0] < 2          # about one FLOP per byte at batch 1
    assert llm.phase_cost(cfg, "prefill", batch=1, seq=512).intensity > 100 * ai[0]


def test_footprint_grows_linearly_in_kv():
    cfg = llm.get("llama2-7b")
    a = llm.footprint(cfg, batch=2, seq=1024)
    b = llm.footprint(cfg, batch=4, seq=1024)
    assert b["kv_cache"] == 2 * a["kv_cache"] == 4 * 1024 * cfg.kv_bytes_per_token()
    assert a["weights"] == b["weights"] == cfg.weight_bytes()
    assert a["total"] == a["weights"] + a["kv_cache"] + a["activations"]


def test_bad_arguments():
    with pytest.raises(KeyError, match="known: bert-base"):
        llm.get("gpt-5")
    with pytest.raises(ValueError, match="allowed: prefill, decode"):
        llm.phase_cost(llm.get("opt-13b"), "train", batch=1, seq=1)
    with pytest.raises(ValueError, match="must divide"):
        llm.LLMConfig(name="x", layers=1, hidden=10, heads=3, kv_heads=3, intermediate=4,
                      vocab=5, ffn="gelu", norm="layernorm", bias=True, causal=False)


@pytest.mark.parametrize("name", ["llama2-7b", "opt-13b"])
def test_decode_against_the_cache_equals_prefill(name):
    """Token t decoded against the cache of tokens 0..t-1 gives prefill's output at t."""
    cfg = llm.get(name)
    small = llm.LLMConfig(**{**cfg.__dict__, "hidden": 64, "heads": 4, "kv_heads": 4,
                             "intermediate": 96})
    torch.manual_seed(0)
    layer = llm.TransformerLayer(small).eval().double()
    x = torch.randn(2, 7, 64, dtype=torch.float64)
    with torch.no_grad():
        full = layer(x)
        cache = (torch.zeros(2, 4, 16, 16, dtype=torch.float64),
                 torch.zeros(2, 4, 16, 16, dtype=torch.float64))
        first = layer(x[:, :6], cache, 0)
        last = layer(x[:, 6:], cache, 6)
    assert torch.allclose(first, full[:, :6], atol=1e-10)
    assert torch.allclose(last, full[:, 6:], atol=1e-10)
