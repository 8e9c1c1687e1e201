"""Software: quantizer, compiler, driver and analysis for the NPU.

    import sw
    qmodel = sw.quantize(model, calibration)
    program = sw.compile(qmodel, config)
    device = sw.Device(config, backend="func")   # or "rtl"
    y = device.run(program, x)

    graph = sw.import_onnx("model.onnx")         # an ONNX model instead of an nn.Module
    qmodel = sw.quantize(graph, calibration)

    qmodel = sw.quantize(hf_model, [token_ids])  # torch.export where torch.fx cannot trace
"""

from .compiler import CompileError, compile  # noqa: A004 - the public name is compile
from .runtime import BACKENDS, Device, DeviceError
from .frontend import TraceError, UnsupportedOpError
from .frontend.onnx import import_onnx
from .program import Program, ProgramError, TensorInfo
from .quant import QuantizedModel, quantize

__all__ = ["quantize", "import_onnx", "compile", "Device", "Program", "TensorInfo", "QuantizedModel",
           "CompileError", "DeviceError", "ProgramError", "UnsupportedOpError", "TraceError", "BACKENDS"]
