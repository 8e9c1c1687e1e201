"""LLM proxies on the NPU: the operator list against the published-shape FLOP counts,
host operators listed, and the steps' figures."""

import pytest

from hw import NPUConfig
from sw.analysis import llm, llm_npu


@pytest.mark.parametrize("name", list(llm.MODELS))
@pytest.mark.parametrize("phase, batch, seq", [("prefill", 1, 128), ("decode", 4, 512)])
def test_layer_ops_do_the_phase_cost_work(name, phase, batch, seq):
    cfg = llm.get(name)
    if phase == "decode" and not cfg.causal:
        with pytest.raises(ValueError, match="encoder"):
            llm_npu.layer_ops(cfg, phase, batch=batch, seq=seq)
        return
    ops = llm_npu.layer_ops(cfg, phase, batch=batch, seq=seq)
    cost = llm.phase_cost(cfg, phase, batch=batch, seq=seq, layers=1)
    gemm = sum(op.macs for op in ops if op.kind == "gemm")
    attention = sum(op.macs for op in ops if op.kind == "attention")
    # Weight GEMMs are the linear FLOPs (less the biases' adds), attention is QK^T and PV.
    assert 2 * gemm == cost.linear_flops
    assert 2 * attention == cost.attention_flops
    host = {op.name for op in ops if op.kind == "host"}
    vector = {op.name: op for op in ops if op.kind == "vector"}
    # Softmax and LayerNorm run on the vector ALU; RMSNorm on the host.
    assert vector["softmax"].k == cost.context and vector["softmax"].count == batch * cfg.heads
    norms = {"layernorm_attn", "layernorm_ffn"} if cfg.norm == "layernorm" else set()
    assert set(vector) == {"softmax"} | norms
    assert ({"rmsnorm_attn", "rmsnorm_ffn"} <= host) == (cfg.norm == "rmsnorm")
    assert ("rope" in host) == (name == "llama2-7b")
    assert ("silu" in host) == (cfg.ffn == "swiglu")
    assert "relu" not in host                  # OPT's ReLU folds into up_proj
    assert sum(op.kind == "add" for op in ops) == 2


DEFAULT = NPUConfig.preset("default")


def test_decode_is_bandwidth_bound_and_prefill_compute_bound_on_the_npu():
    decode = llm_npu.npu_step("llama2-7b", DEFAULT, phase="decode", batch=1, seq=2048, layers=1)
    prefill = llm_npu.npu_step("llama2-7b", DEFAULT, phase="prefill", batch=1, seq=256, layers=1)
    # Decode streams every int8 weight once per token: its time is at least that at peak
    # bandwidth, and MBU is what is left of it; the array is nearly idle.
    weights = llm.get("llama2-7b").params_per_layer()
    peak = DEFAULT.dma_bytes * 200e6
    assert decode.seconds >= weights / peak
    assert 0.3 < decode.mbu <= 1.0 and decode.utilization < 0.1
    assert decode.dram_bytes >= weights
    # Prefill reuses each weight over 256 tokens: the array is busy, bandwidth is not.
    assert prefill.utilization > 0.5 and prefill.mbu < 0.2
    assert prefill.cost.intensity > 50 * decode.cost.intensity
    assert decode.tokens_per_s == pytest.approx(1 / decode.seconds)
    assert prefill.tokens_per_s == pytest.approx(256 / prefill.seconds)
    # Every layer is alike: all layers take layers x one layer.
    full = llm_npu.npu_step("llama2-7b", DEFAULT, phase="decode", batch=1, seq=2048)
    assert full.cycles == pytest.approx(32 * decode.cycles)
    assert [op.name for op in full.host_ops] == [op.name for op in decode.host_ops]
    # Batching decode amortizes the weights: more tokens per second.
    b8 = llm_npu.npu_step("llama2-7b", DEFAULT, phase="decode", batch=8, seq=2048, layers=1)
    assert b8.tokens_per_s > 2 * decode.tokens_per_s


def test_vector_ops_are_priced_or_fall_back_to_the_host():
    """BERT's LayerNorm (768 features, 48 parameter groups) fits the default config and
    is priced, linearly in the rows; OPT-13B's (5,120 features) does not and runs on the host."""
    bert = llm_npu.npu_step("bert-base", DEFAULT, phase="prefill", batch=1, seq=128, layers=1)
    costs = {c.op.name: c for c in bert.ops}
    assert costs["layernorm_attn"].op.kind == "vector" and costs["layernorm_attn"].cycles > 0
    assert costs["softmax"].cycles > 0 and "vector" in bert.shares()
    assert not any(op.name.startswith(("softmax", "layernorm")) for op in bert.host_ops)
    twice = llm_npu.npu_step("bert-base", DEFAULT, phase="prefill", batch=2, seq=128, layers=1)
    assert {c.op.name: c for c in twice.ops}["layernorm_attn"].cycles == pytest.approx(
        2 * costs["layernorm_attn"].cycles)
    opt = llm_npu.npu_step("opt-13b", DEFAULT, phase="decode", batch=1, seq=64, layers=1)
    assert {"layernorm_attn", "layernorm_ffn"} <= {op.name for op in opt.host_ops}


def test_gpu_reference_step_is_the_roofline():
    g = llm_npu.gpu_step("opt-13b", "A100", phase="decode", batch=1, seq=2048)
    cost = llm.phase_cost(llm.get("opt-13b"), "decode", batch=1, seq=2048)
    assert g.bound == "memory" and g.seconds == pytest.approx(cost.dram_bytes / 1.555e12)
    assert g.mbu == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no reference GPU"):
        llm_npu.gpu_step("opt-13b", "Voodoo2", phase="decode", batch=1, seq=8)


def test_llm_cli_writes_its_report(tmp_path, capsys):
    from sw import analyze as cli
    code = cli.main(["opt-13b", "--seq", "64", "--batch", "1,2",
                     "--out", str(tmp_path), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0
    assert "KV cache 819 KB per token" in text           # PagedAttention's 800 KB (decimal)
    assert "layernorm_attn" in text and "host operators" in text
    for name in ("llm.json", "llm_steps.csv", "report.html", "footprint.png", "footprint.svg",
                 "roofline.png", "roofline.svg", "llm_ops.png", "llm_ops.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = (tmp_path / "llm_steps.csv").read_text().splitlines()
    assert len(rows) == 1 + 4                             # prefill and decode, two batches
    assert cli.main(["bert-base", "--seq", "1000", "--quiet"]) == 1   # over its 512 positions
    assert "512 positions" in capsys.readouterr().err
