"""The ONNX front end (sw.import_onnx): zoo CNNs exported with torch.onnx.export are
bit-exact with the torch path; operators against onnxruntime's float output; QDQ models
from onnxruntime's static quantization run with their quantization as given; errors."""
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw import zoo
from sw.frontend.onnx import OnnxGraph
from sw.quant import float_forward

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CFG = NPUConfig()


def export(model: nn.Module, shape, path) -> str:
    """The TorchScript exporter (dynamo=False: no onnxscript needed), batch 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, *shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    return str(path)


def ort_run(path, x: torch.Tensor, optimize: bool = True) -> torch.Tensor:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return torch.from_numpy(np.concatenate([s.run(None, {name: x[i:i + 1].numpy()})[0]
                                            for i in range(len(x))]))


def _vision():
    from sw import zoo_vision
    return zoo_vision


# Small members of the zoo's families at 32x32: residual adds, inverted residuals with
# ReLU6 (Clip), fire modules (Concat, ceil_mode MaxPool), channel split and shuffle
# (Shape/Gather/Slice, Reshape/Transpose/Reshape), Hardswish and squeeze-and-excitation.
CNNS = {
    "resnet8": lambda: zoo.build("resnet8")[0],
    "squeezenet1_1": lambda: zoo.randomize_bn(_vision().SqueezeNet(num_classes=10)),
    "shufflenet_v2": lambda: zoo.randomize_bn(_vision().ShuffleNetV2(
        stages_repeats=(2, 1, 1), num_classes=10)),
    "mobilenet_v3_small": lambda: zoo.randomize_bn(_vision().MobileNetV3(
        num_classes=10, blocks=3, last_channel=32)),
}


@pytest.mark.parametrize("name", list(CNNS))
def test_exported_cnn_bit_exact_with_torch_path(name, tmp_path):
    torch.manual_seed(0)
    model = CNNS[name]()
    shape = (3, 32, 32)
    graph = sw.import_onnx(export(model, shape, tmp_path / f"{name}.onnx"))
    assert isinstance(graph, sw.ir.Graph) and graph.input_shape == shape
    assert not graph.prequantized
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(2, *shape, generator=gen)]
    q_torch, q_onnx = sw.quantize(model, calib), sw.quantize(graph, calib)
    p_torch, p_onnx = sw.compile(q_torch, CFG), sw.compile(q_onnx, CFG)
    assert p_onnx.insn_count == p_torch.insn_count
    x = torch.randn(2, *shape, generator=gen)
    y = sw.Device(CFG).run(p_onnx, x)
    assert torch.equal(y, q_onnx(x))
    assert torch.equal(y, sw.Device(CFG).run(p_torch, x))


class Activations(nn.Module):
    """The table activations as PyTorch exports them: GELU (Gelu at opset 20, its erf form
    before), SiLU (x * Sigmoid(x)), LeakyReLU, Hardsigmoid, Tanh; a view(batch, -1)."""

    def __init__(self, tanh_gelu: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 6)
        self.act = nn.GELU(approximate="tanh") if tanh_gelu else nn.Identity()

    def forward(self, x):
        x = self.pool(nn.functional.silu(nn.functional.gelu(self.conv(x))))
        x = nn.functional.hardsigmoid(nn.functional.leaky_relu(x, 0.2)) * torch.tanh(x)
        return self.act(self.fc(x.view(x.size(0), -1)))


@pytest.mark.parametrize("opset", [17, 20])
def test_exported_activations_bit_exact_with_torch_path(opset, tmp_path):
    torch.manual_seed(0)
    # GELU's tanh form is one Gelu node from opset 20 (before, its formula: Mul, Add, Tanh).
    model, shape = Activations(tanh_gelu=True).eval(), (3, 8, 8)
    path = str(tmp_path / "a.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, *shape),), path, dynamo=False,
                          opset_version=opset)
    graph = sw.import_onnx(path)
    assert {"gelu", "silu", "leaky_relu", "hardsigmoid", "tanh", "mul"} <= {n.op for n in graph.nodes}
    calib = [torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))]
    cfg = NPUConfig.preset("tiny")
    x = torch.randn(2, *shape)
    y = [sw.Device(cfg).run(sw.compile(sw.quantize(m, calib), cfg), x) for m in (model, graph)]
    assert torch.equal(y[0], y[1])


# --- operators, on hand-written ONNX graphs -------------------------------------------------

def make_model(nodes, inits, in_shape, out_shape, opset=20) -> "onnx.ModelProto":
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *out_shape])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3


def _cases():
    c = {}
    c["matmul_add_relu6"] = (
        [helper.make_node("Flatten", ["x"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "w"], ["m"]),
         helper.make_node("Add", ["m", "b"], ["a"]),
         helper.make_node("Clip", ["a", "lo", "hi"], ["y"])],
        {"w": rand(48, 10), "b": rand(10, seed=1), "lo": np.float32(0), "hi": np.float32(6)},
        (3, 4, 4), (10,), ["input", "flatten", "linear"])
    c["gemm_transb0_leaky"] = (
        [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=0),
         helper.make_node("LeakyRelu", ["g"], ["y"], alpha=0.1)],
        {"w": rand(16, 8), "b": rand(8, seed=1)}, (16,), (8,), ["input", "linear", "leaky_relu"])
    conv = helper.make_node("Conv", ["x", "w", "cb"], ["c"], kernel_shape=[3, 3], pads=[1] * 4)
    c["conv_bn_gelu_erf"] = (
        [conv, helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"]),
         helper.make_node("Div", ["n", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
         helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["n", "p"], ["t"]),
         helper.make_node("Mul", ["t", "half"], ["y"])],
        {"w": rand(4, 3, 3, 3), "cb": rand(4, seed=1), "g": 1 + rand(4, seed=2),
         "be": rand(4, seed=3), "mu": rand(4, seed=4), "var": 1 + np.abs(rand(4, seed=5)),
         "sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)},
        (3, 6, 6), (4, 6, 6), ["input", "conv", "gelu"])
    c["avgpool_silu_gelu_tanh"] = (
        [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Sigmoid", ["p"], ["s"]), helper.make_node("Mul", ["p", "s"], ["m"]),
         helper.make_node("Gelu", ["m"], ["g"], approximate="tanh"),
         helper.make_node("Tanh", ["g"], ["y"])],
        {}, (3, 6, 6), (3, 3, 3), ["input", "avgpool", "silu", "gelu", "tanh"])
    c["bn_alone_hardsigmoid_hardswish_mul"] = (
        [helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "var"], ["n"]),
         helper.make_node("HardSigmoid", ["n"], ["h"], alpha=1 / 6, beta=0.5),
         helper.make_node("HardSwish", ["n"], ["w"]),
         helper.make_node("GlobalAveragePool", ["h"], ["gp"]),
         helper.make_node("Mul", ["w", "gp"], ["y"])],
        {"g": 1 + rand(3, seed=2), "be": rand(3, seed=3), "mu": rand(3, seed=4),
         "var": 1 + np.abs(rand(3, seed=5))},
        (3, 5, 5), (3, 5, 5), ["input", "conv", "hardsigmoid", "hardswish", "gap", "mul"])
    c["maxpool_concat_reducemean"] = (
        [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                          pads=[1] * 4),
         helper.make_node("Relu", ["m"], ["r"]),
         helper.make_node("Concat", ["m", "r"], ["c"], axis=1),
         helper.make_node("ReduceMean", ["c", "axes"], ["y"], keepdims=0)],
        {"axes": np.array([2, 3], np.int64)}, (3, 8, 8), (6,),
        ["input", "maxpool", "relu", "cat", "gap", "flatten"])
    return c


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
def test_operators_against_onnxruntime(case, tmp_path):
    nodes, inits, in_shape, out_shape, ops = CASES[case]
    model = make_model(nodes, inits, in_shape, out_shape)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    graph = sw.import_onnx(model)
    assert [n.op for n in graph.nodes] == ops
    x = torch.randn(3, *in_shape, generator=torch.Generator().manual_seed(2))
    y_float = float_forward(graph, {graph.inputs[0]: x})[graph.output]
    torch.testing.assert_close(y_float, ort_run(path, x), rtol=1e-4, atol=1e-5)
    qmodel = sw.quantize(graph, [x])
    cfg = NPUConfig.preset("tiny")
    assert torch.equal(sw.Device(cfg).run(sw.compile(qmodel, cfg), x), qmodel(x))


# --- QDQ models from onnxruntime's static quantization ---------------------------------------

def qdq(path: str, shape, *, per_channel=True, activations="int8", weights="int8",
        symmetric=True) -> str:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    gen = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(1, *shape, generator=gen).numpy()} for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    out = path.replace(".onnx", "_qdq.onnx")
    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=types[activations], weight_type=types[weights],
                    per_channel=per_channel, extra_options={"WeightSymmetric": symmetric})
    return out


def steps(y, ref, step):
    return ((y - ref).abs() / step).round()


def test_qdq_resnet8_as_given_against_onnxruntime(tmp_path):
    model, shape = zoo.build("resnet8")
    path = qdq(export(model, shape, tmp_path / "r8.onnx"), shape)
    graph = sw.import_onnx(path)
    assert graph.prequantized and graph.quantizes_all()
    assert len(graph.weights) == 10                      # every conv and the linear layer
    qmodel = sw.quantize(graph, None)                     # no calibration: all given
    # The given scales and zero points are the quantized model's.
    m = onnx.load(path)
    scales = {numpy_helper.to_array(i).item() for i in m.graph.initializer
              if i.name.endswith("_scale") and numpy_helper.to_array(i).size == 1}
    assert {n.out.scale for n in qmodel.nodes} <= {float(np.float32(s)) for s in scales}
    # Weights and int32 biases as given: the bias at s_in * s_w, the input zero point
    # folded in (sw.ops.gemm).
    for name, given in graph.weights.items():
        node = qmodel.node(name)
        q_in = qmodel.node(node.inputs[0]).out
        assert torch.equal(node.attrs.w_q, given.w_q)
        folded = given.bias_q - q_in.zero_point * given.w_q.to(torch.int64).flatten(1).sum(1)
        assert torch.equal(node.attrs.bias_q.to(torch.int64), folded)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(5))
    y = sw.Device(CFG).run(sw.compile(qmodel, CFG), x)
    assert torch.equal(y, qmodel(x))
    step = qmodel.output_qparams.scale
    d_plain = steps(y, ort_run(path, x, optimize=False), step)
    fused = ort_run(path, x)
    d_fused = steps(y, fused, step)
    top1 = float((y.argmax(1) == fused.argmax(1)).float().mean())
    print(f"\nresnet8 QDQ: NPU vs onnxruntime (QDQ as written): {float((d_plain <= 1).float().mean()):.1%} "
          f"within one output step, max {int(d_plain.max())}; vs onnxruntime's fused kernels: "
          f"{float((d_fused <= 1).float().mean()):.1%} within one step, max {int(d_fused.max())}, "
          f"top-1 agreement {top1:.1%}")
    assert float((d_plain <= 1).float().mean()) > 0.95 and int(d_plain.max()) <= 3
    assert top1 >= 0.9


class Small(nn.Module):
    """Conv-BN-ReLU, MaxPool, a residual add, global pooling, a linear layer."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.pool(self.c1(x))
        x = torch.relu(self.c2(x) + x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_qdq_per_tensor_uint8(tmp_path):
    torch.manual_seed(0)
    model, shape = zoo.randomize_bn(Small()), (3, 8, 8)
    path = qdq(export(model, shape, tmp_path / "s.onnx"), shape, per_channel=False,
               activations="uint8")
    graph = sw.import_onnx(path)
    # uint8 zero points become int8 ones (q - 128); a per-tensor weight scale is every
    # channel's.
    assert all(-128 <= q.zero_point <= 127 for q in graph.given.values())
    assert all(len(set(w.scale.tolist())) == 1 for w in graph.weights.values())
    qmodel = sw.quantize(graph, None)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(5))
    y = sw.Device(CFG).run(sw.compile(qmodel, CFG), x)
    assert torch.equal(y, qmodel(x))
    d = steps(y, ort_run(path, x, optimize=False), qmodel.output_qparams.scale)
    assert float((d <= 1).float().mean()) > 0.95
    # Calibration data changes nothing the model quantizes itself.
    assert torch.equal(sw.quantize(graph, [3 * x])(x), qmodel(x))


def test_qdq_quantization_the_npu_cannot_represent_is_refused(tmp_path):
    torch.manual_seed(0)
    model, shape = zoo.randomize_bn(Small()), (3, 8, 8)
    m = onnx.load(qdq(export(model, shape, tmp_path / "s.onnx"), shape))
    inits = {i.name: i for i in m.graph.initializer}
    # Asymmetric weights (onnxruntime writes symmetric ones for int8): zero point 3.
    zp = inits["c2.weight_zero_point"]
    zp.CopyFrom(numpy_helper.from_array(np.full(8, 3, np.int8), zp.name))
    with pytest.raises(ValueError, match="weights 'c2.weight_quantized' are asymmetric"):
        sw.import_onnx(m)
    zp.CopyFrom(numpy_helper.from_array(np.zeros(8, np.int8), zp.name))
    # 16-bit activations.
    for name in ("x_zero_point",):
        z = inits[name]
        z.CopyFrom(numpy_helper.from_array(np.zeros((), np.int16), name))
    with pytest.raises(ValueError, match="activations of type int16 cannot be represented"):
        sw.import_onnx(m, check=False)


def test_calibration_none_needs_a_qdq_model(tmp_path):
    graph = sw.import_onnx(make_model(*CASES["matmul_add_relu6"][:4]))
    with pytest.raises(ValueError, match="only a QDQ ONNX model"):
        sw.quantize(graph, None)


# --- errors --------------------------------------------------------------------------------------

def test_unsupported_ops_are_all_named_with_their_nodes():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok"),
             helper.make_node("LRN", ["r"], ["l"], size=3, name="norm1"),
             helper.make_node("Softmax", ["l"], ["y"], axis=1, name="probs")]
    with pytest.raises(sw.UnsupportedOpError) as info:
        sw.import_onnx(make_model(nodes, {}, (3, 4, 4), (3, 4, 4)))
    msg = str(info.value)
    assert "2 unsupported operations" in msg
    assert "LRN at node 'norm1'" in msg and "Softmax node 'probs': Softmax over axis 1" in msg
    assert isinstance(info.value, ValueError)


def test_unsupported_attributes_name_the_node():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], dilations=[2, 2],
                              name="dil")]
    with pytest.raises(sw.UnsupportedOpError, match="Conv node 'dil': dilations"):
        sw.import_onnx(make_model(nodes, {"w": rand(2, 3, 3, 3)}, (3, 8, 8), (2, 4, 4)))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        sw.import_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    with pytest.raises(ValueError, match="not a readable ONNX model|invalid"):
        sw.import_onnx(bad)
    with pytest.raises(ValueError, match="is a directory"):
        sw.import_onnx(tmp_path)
    with pytest.raises(TypeError, match="a path or an onnx.ModelProto"):
        sw.import_onnx(42)
    broken = make_model([helper.make_node("Relu", ["nowhere"], ["y"])], {}, (3,), (3,))
    with pytest.raises(ValueError, match="invalid"):
        sw.import_onnx(broken)


# --- the CLI ---------------------------------------------------------------------------------------

def test_cli_runs_an_onnx_file(tmp_path, capsys):
    from sw.run import main
    torch.manual_seed(0)
    path = export(zoo.randomize_bn(Small()), (3, 8, 8), tmp_path / "small.onnx")
    assert main([path, "--preset", "small", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "small.onnx: input (3, 8, 8)" in out and "bit-exact against the golden: True" in out
    qpath = qdq(path, (3, 8, 8))
    assert main([qpath, "--preset", "tiny"]) == 0
    assert "bit-exact against the golden: True" in capsys.readouterr().out


def test_cli_onnx_errors(tmp_path, capsys):
    from sw.run import main
    with pytest.raises(SystemExit):
        main(["--help"])
    assert ".onnx file" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "nope.onnx")])
    assert info.value.code == 2 and "no such file" in capsys.readouterr().err


def test_onnx_graph_is_a_graph():
    graph = sw.import_onnx(make_model(*CASES["gemm_transb0_leaky"][:4]))
    assert isinstance(graph, OnnxGraph) and graph.source == "<ModelProto>"
    assert graph.output == graph.nodes[-1].name


@pytest.mark.parametrize("pool", [
    nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),
    nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
    nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
    nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
])
def test_exported_pooling_options_bit_exact_with_torch_path_and_onnxruntime(pool, tmp_path):
    """ceil_mode and count_include_pad as exported: the imported graph's float result is
    onnxruntime's, and its program is bit-exact with the torch path's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool).eval()
    shape = (3, 9, 9)
    path = export(model, shape, tmp_path / "pool.onnx")
    graph = sw.import_onnx(path)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, generator=gen)
    y_float = float_forward(graph, {graph.inputs[0]: x})[graph.output]
    torch.testing.assert_close(y_float, ort_run(path, x), atol=1e-5, rtol=1e-5)
    calib = [torch.randn(4, *shape, generator=gen)]
    q_torch, q_onnx = sw.quantize(model, calib), sw.quantize(graph, calib)
    config = NPUConfig.preset("tiny")
    y = sw.Device(config).run(sw.compile(q_onnx, config), x)
    assert torch.equal(y, q_onnx(x))
    assert torch.equal(y, sw.Device(config).run(sw.compile(q_torch, config), x))
