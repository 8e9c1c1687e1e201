"""Agreement of the NPU with onnxruntime on QDQ models from onnxruntime's static quantization.

Each zoo model is exported with ``torch.onnx.export`` (the TorchScript exporter,
``dynamo=False``), quantized by ``onnxruntime.quantization.quantize_static`` (QDQ,
symmetric int8 weights, calibrated on random inputs), imported with
``sw.import_onnx`` and quantized with its scales and zero points as given
(``sw.quantize(graph, None)``), compiled and run on the functional model. The NPU's
output is checked bit-exact against the golden, then compared with onnxruntime's own
output: with its default graph optimizations (the QDQ pairs fused into its integer
kernels, QLinearConv and friends) and with none (the QDQ graph as written:
DequantizeLinear, float operator, QuantizeLinear). The differences are rounding
(TFLite's integer requantization against onnxruntime's float one, the residual add's
integer rescaling, the requantization after average pooling), compounded over the
layers; they are figures, not pass criteria (docs/user-guide.md, "ONNX models").

    python bench/onnx_agreement.py [--samples 64] [--models resnet8,...]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np
import torch

import sw
from hw import NPUConfig
from sw import zoo

MODELS = {
    "resnet8": lambda: zoo.build("resnet8")[0],
    "mobilenetv2_small": lambda: zoo.build("mobilenetv2_small")[0],
    "squeezenet1_1": lambda: _vision().SqueezeNet(),
    "mobilenet_v3_small": lambda: _vision().MobileNetV3(blocks=5, last_channel=128),
    "shufflenet_v2": lambda: _vision().ShuffleNetV2(stages_repeats=(2, 2, 2)),
}
SHAPE = (3, 32, 32)


def _vision():
    from sw import zoo_vision
    return zoo_vision


def qdq_model(model: torch.nn.Module, path: str, shape, *, per_channel: bool,
              activations: str = "int8", calib: int = 16) -> str:
    """Export ``model`` to ``path`` and quantize it with onnxruntime (QDQ); returns the
    QDQ file's path."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    torch.onnx.export(model.eval(), (torch.randn(1, *shape),), path, dynamo=False,
                      input_names=["x"], output_names=["y"])
    gen = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(1, *shape, generator=gen).numpy()} for _ in range(calib)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    out = path.replace(".onnx", "_qdq.onnx")
    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel)
    return out


def ort_run(path: str, x: torch.Tensor, optimize: bool = True) -> torch.Tensor:
    """onnxruntime's output for ``x``, one sample at a time (the export fixes batch 1)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return torch.from_numpy(np.concatenate([s.run(None, {name: x[i:i + 1].numpy()})[0]
                                            for i in range(len(x))]))


def agreement(y: torch.Tensor, ref: torch.Tensor, step: float) -> dict:
    """Output steps apart: the fraction equal, within one step, the largest; top-1."""
    d = ((y - ref).abs() / step).round()
    return {"equal": float((d == 0).float().mean()), "within1": float((d <= 1).float().mean()),
            "max_steps": int(d.max()), "top1": float((y.argmax(1) == ref.argmax(1)).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    cfg = NPUConfig.preset("small")
    print(f"{'model':<20} {'weights':<12} {'act':<5} {'vs':<16} {'equal':>7} {'<=1 step':>9} "
          f"{'max':>4} {'top-1':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for per_channel, act in ((True, "int8"), (False, "uint8")):
                torch.manual_seed(0)
                model = zoo.randomize_bn(MODELS[name]())
                path = qdq_model(model, os.path.join(tmp, f"{name}.onnx"), SHAPE,
                                 per_channel=per_channel, activations=act)
                qmodel = sw.quantize(sw.import_onnx(path), None)
                program = sw.compile(qmodel, cfg)
                x = torch.randn(args.samples, *SHAPE, generator=torch.Generator().manual_seed(5))
                y = sw.Device(cfg).run(program, x)
                assert torch.equal(y, qmodel(x)), "not bit-exact against the golden"
                step = qmodel.output_qparams.scale
                fused, plain = ort_run(path, x), ort_run(path, x, optimize=False)
                for vs, ref, a in (("ort", fused, y), ("ort-noopt", plain, y),
                                   ("ort~noopt", plain, fused)):
                    r = agreement(a, ref, step)
                    who = "ort vs noopt" if vs == "ort~noopt" else f"npu vs {vs}"
                    print(f"{name:<20} {'per-channel' if per_channel else 'per-tensor':<12} "
                          f"{act:<5} {who:<16} {r['equal']:>7.1%} {r['within1']:>9.1%} "
                          f"{r['max_steps']:>4} {r['top1']:>6.1%}")


if __name__ == "__main__":
    main()
