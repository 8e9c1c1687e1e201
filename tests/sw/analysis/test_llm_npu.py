"""LLM proxies on the NPU: the operator list against the published-shape FLOP counts,
host operators listed, and the steps' figures."""

import pytest

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
    assert "softmax" in host
    assert any(h.endswith("norm_attn") for h in host) and any(h.endswith("norm_ffn") for h in host)
    assert ("rope" in host) == (name == "llama2-7b")
    assert ("silu" in host) == (cfg.ffn == "swiglu")
    assert "relu" not in host                  # OPT's ReLU folds into up_proj
    assert sum(op.kind == "add" for op in ops) == 2
