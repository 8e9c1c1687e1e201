"""Agreement of the NPU with onnxruntime on transformers imported from ONNX.

The zoo's BERT-style encoder and GPT-2 style block are exported with ``torch.onnx.export``
(TorchScript exporter, opset 17) and imported with ``sw.import_onnx``:

* **float**: quantized by ``sw.quantize`` on random calibration inputs (the same as the
  torch path's), compiled, run on the functional model; checked bit-exact against the
  golden and equal to the torch path's quantized model, then compared with onnxruntime's
  float output (quantization loss).
* **QDQ**: quantized by ``onnxruntime.quantization.quantize_static`` (QDQ, int8, weights
  per channel; activations symmetric, or "asym" onnxruntime's default asymmetric ones,
  whose attention operands the importer requantizes symmetric: the NPU's matmul of two
  activations takes zero point 0) and run with its scales as given; compared with
  onnxruntime's own output of
  the QDQ model, with its graph optimizations and without. For the GPT-2 block
  onnxruntime quantizes the causal mask (its -inf) with scale inf, which breaks its own
  output; the NPU reads the mask as a mask. The row "mask excluded" quantizes without
  the mask's Where, Add and the Softmax reading it, so that onnxruntime's output is a
  fair reference.

Figures: cosine similarity, mean and largest difference in output steps (the output's
scale). Differences against the float model are quantization loss; against onnxruntime's
QDQ output they are rounding (TFLite-style integer requantization against onnxruntime's
float), the integer softmax, LayerNorm and GELU table against onnxruntime's float
kernels between Q/DQ pairs, and the matmul scaling folded into the product (onnxruntime
quantizes the scaled q and kᵀ of the GPT-2 block on their own). They are figures, not
pass criteria (docs/user-guide.md, "ONNX models").

    python bench/onnx_transformers.py [--samples 16]
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import warnings

import onnx
import torch
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw.zoo_transformer import BertEncoder, GPT2Block

from onnx_agreement import ort_run  # noqa: E402 - bench/ is the script's path

MODELS = {"bert_encoder": BertEncoder, "gpt2_block": GPT2Block}
SHAPE = (16, 64)


def export(model: torch.nn.Module, path: str) -> str:
    torch.onnx.export(model.eval(), (torch.randn(1, *SHAPE),), path, dynamo=False,
                      opset_version=17)
    return path


def qdq(path: str, exclude=(), symmetric: bool = True, calib: int = 16) -> str:
    """``path`` quantized by onnxruntime: QDQ, int8 activations (``symmetric``: zero points
    0), int8 weights per channel, calibrated on ``calib`` random inputs."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    name = onnx.load(path).graph.input[0].name
    gen = torch.Generator().manual_seed(0)
    batches = iter([{name: torch.randn(1, *SHAPE, generator=gen).numpy()} for _ in range(calib)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    out = path.replace(".onnx", f"_qdq{len(exclude)}{'s' if symmetric else 'a'}.onnx")
    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, nodes_to_exclude=list(exclude),
                    extra_options={"ActivationSymmetric": symmetric})
    return out


def mask_nodes(path: str) -> list[str]:
    """The nodes that build, add and read the causal mask (Where, the Add, the Softmax):
    excluded from onnxruntime's quantization, the masked scores keep their -inf."""
    g = onnx.load(path).graph
    names = {n.output[0] for n in g.node if n.op_type == "Where"}
    out = []
    for n in g.node:
        if n.op_type in ("Where", "Add", "Softmax") and (n.output[0] in names or
                                                         names & set(n.input)):
            out.append(n.name)
            names.add(n.output[0])
    return out


def figures(y: torch.Tensor, ref: torch.Tensor, step: float) -> str:
    d = (y - ref).abs() / step
    cos = float(F.cosine_similarity(y.flatten(), ref.flatten(), dim=0))
    return f"{cos:>8.5f} {float(d.mean()):>10.2f} {float(d.max()):>9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    cfg = NPUConfig.preset("small")
    x = torch.randn(args.samples, *SHAPE, generator=torch.Generator().manual_seed(5))
    print(f"{'model':<13} {'quantization':<24} {'comparison':<23} {'cosine':>8} "
          f"{'mean steps':>10} {'max steps':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cls in MODELS.items():
            torch.manual_seed(0)
            model = cls().eval()
            path = export(model, os.path.join(tmp, f"{name}.onnx"))
            float_ref = ort_run(path, x)
            gen = torch.Generator().manual_seed(1)
            calib = [torch.randn(4, *SHAPE, generator=gen) for _ in range(4)]
            q = sw.quantize(sw.import_onnx(path), calib)
            y = sw.Device(cfg).run(sw.compile(q, cfg), x)
            assert torch.equal(y, q(x)), "not bit-exact against the golden"
            same = torch.equal(y, sw.quantize(model, calib)(x))
            step = q.output_qparams.scale
            print(f"{name:<13} {'sw.quantize':<24} {'npu vs ort float':<23} "
                  f"{figures(y, float_ref, step)}   (= torch path: {same})")
            masks = mask_nodes(path) if name == "gpt2_block" else []
            runs = [("ort QDQ", [], True)]
            if masks:
                runs.append(("ort QDQ mask excl.", masks, True))
            runs.append(("ort QDQ asym" + (" mask excl." if masks else ""), masks, False))
            for label, exclude, symmetric in runs:
                qpath = qdq(path, exclude, symmetric)
                q = sw.quantize(sw.import_onnx(qpath), None)
                y = sw.Device(cfg).run(sw.compile(q, cfg), x)
                assert torch.equal(y, q(x)), "not bit-exact against the golden"
                step = q.output_qparams.scale
                fused, plain = ort_run(qpath, x), ort_run(qpath, x, optimize=False)
                for who, a, ref in (("npu vs ort QDQ", y, fused),
                                    ("npu vs ort QDQ no-opt", y, plain),
                                    ("npu vs ort float", y, float_ref),
                                    ("ort QDQ vs ort float", fused, float_ref)):
                    print(f"{name:<13} {label:<24} {who:<23} {figures(a, ref, step)}")


if __name__ == "__main__":
    main()
