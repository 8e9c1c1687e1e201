"""The GPU reference's counting (on the CPU) and its behaviour without a GPU."""
import pytest
import torch

from sw.analysis import gpu, llm
from sw.analysis.workload import count_modules


def test_counts_resnet18_macs_as_the_field_does():
    model, args = gpu.workload("resnet18", batch=1)
    costs, kv, out = count_modules(model, args)
    assert sum(c.flops for c in costs.values()) == 2 * 1_814_073_344   # ptflops/thop: 1.814 G
    assert kv == 0 and out.shape == (1, 1000)
    fc = next(c for c in costs.values() if c.name == "fc")
    assert fc.flops == 2 * 512 * 1000
    assert fc.bytes == 4 * (512 * 1000 + 1000 + 512 + 1000)           # fp32 weights, bias, in, out


def test_counts_llm_decode_as_the_analytic_model():
    model, args = gpu.workload("llama2-7b", batch=2, seq=128)
    costs, kv, out = count_modules(model, args)
    cost = llm.phase_cost(llm.get("llama2-7b"), "decode", batch=2, seq=128, layers=1,
                          dtype_bytes=4)
    assert sum(c.flops for c in costs.values()) == cost.flops
    assert kv == cost.kv_read_bytes + cost.kv_write_bytes
    assert out.shape == (2, 1, 4096)


def test_peaks_table():
    h200 = gpu.find_peaks("NVIDIA H200")
    assert h200.bytes_s == 4.8e12 and h200.flops(torch.float16) == 989.5e12
    assert gpu.find_peaks("NVIDIA A100-SXM4-80GB").bytes_s == 2.039e12
    assert gpu.find_peaks("NVIDIA A100-PCIE-40GB").bytes_s == 1.555e12
    assert gpu.find_peaks("Some GPU") is None


def test_unknown_workload_and_bad_phase():
    with pytest.raises(KeyError, match="LLM proxies"):
        gpu.workload("inception_v9", batch=1)
    with pytest.raises(ValueError, match="encoder"):
        gpu.workload("bert-base", batch=1, phase="decode")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_a_gpu_it_says_so(capsys):
    assert gpu.main(["resnet18"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    model, args = gpu.workload("lenet5", batch=1)
    with pytest.raises(gpu.NoGPUError):
        gpu.profile(model, args)
