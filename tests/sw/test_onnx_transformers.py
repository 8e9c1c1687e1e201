"""The ONNX front end on transformers: the zoo's BERT-style encoder and GPT-2 block exported
with torch.onnx.export (opset 17) import as the graph the torch.fx front end makes (linears,
head views, matmuls of two activations with attention's scaling folded in, softmax, causal
where the exporter writes the mask, LayerNorm, GELU in its erf and tanh forms), run
bit-exactly against the golden on func with no host operator, and give the torch path's
quantized output; masks and forms the NPU does not take are named."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw.frontend import UnsupportedOpError
from sw.zoo_transformer import BertEncoder, GPT2Block

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CFG = NPUConfig.preset("tiny")
SHAPE = (16, 64)
MODELS = {"bert_encoder": BertEncoder, "gpt2_block": GPT2Block}


def export(model: nn.Module, shape, path) -> str:
    """The TorchScript exporter at opset 17 (LayerNormalization; GELU as its formula), batch 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, *shape),), str(path), dynamo=False,
                          opset_version=17)
    return str(path)


def ort_run(path, x: torch.Tensor) -> torch.Tensor:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return torch.from_numpy(np.concatenate([s.run(None, {name: x[i:i + 1].numpy()})[0]
                                            for i in range(len(x))]))


def _skeleton(graph):
    """The graph as its operators and their attributes in order (views, matmul factors to
    float32 precision: ONNX keeps the scale as a float32, softmax's causal flag, GELU's
    form), names left out."""
    out = []
    for n in graph.nodes:
        a = n.attrs
        if n.op == "matmul":
            a = round(a.factor, 6)
        elif n.op not in ("view", "softmax", "gelu"):
            a = None
        out.append((n.op, a, n.act))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx_transformers")
    out = {}
    for name, cls in MODELS.items():
        torch.manual_seed(0)
        model = cls().eval()
        out[name] = (model, export(model, SHAPE, tmp / f"{name}.onnx"))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_transformer_bit_exact_and_as_the_torch_path(name, exported):
    model, path = exported[name]
    graph = sw.import_onnx(path)
    assert graph.input_shape == SHAPE and not graph.prequantized
    ops = [n.op for n in graph.nodes]
    assert ops.count("matmul") == 2 * (2 if name == "bert_encoder" else 1)
    softmax = [n for n in graph.nodes if n.op == "softmax"]
    assert all(n.attrs.causal == (name == "gpt2_block") for n in softmax)
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(4, *SHAPE, generator=gen) for _ in range(2)]
    q_onnx, q_torch = sw.quantize(graph, calib), sw.quantize(model, calib)
    program = sw.compile(q_onnx, CFG)
    assert program.host_ops == [], program.host_ops
    x = torch.randn(2, *SHAPE, generator=gen)
    y = sw.Device(CFG).run(program, x)
    assert torch.equal(y, q_onnx(x))
    # The fx front end's IR, but for the kᵀ view: ONNX transposes the heads of k once
    # ([0, 2, 3, 1]) where the model writes two transposes (two views).
    fx_skel = _skeleton(sw.frontend.trace(model, calib[0]))
    onnx_skel = _skeleton(graph)
    assert [s for s in onnx_skel if s[0] != "view"] == [s for s in fx_skel if s[0] != "view"]
    views = [s for s in onnx_skel if s[0] == "view"]
    assert len(views) == len([s for s in fx_skel if s[0] == "view"]) - len(softmax)
    # The same calibration gives the same ranges, so the same quantized output.
    assert torch.equal(q_torch(x), q_onnx(x))
    # Float agreement with onnxruntime is a figure (bench/onnx_transformers.py); here a
    # bound that a wrong head order or a lost mask would break.
    cos = F.cosine_similarity(y.flatten(), ort_run(path, x).flatten(), dim=0)
    assert cos > 0.98, float(cos)


def test_layernorm_decomposition_of_older_opsets_and_a_dynamic_batch(tmp_path):
    # Before opset 17 nn.LayerNorm exports as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt,
    # Div, Mul, Add; with a dynamic batch the head reshapes' shapes come from Shape of
    # tensors whose batch is unknown.
    torch.manual_seed(0)
    model = GPT2Block().eval()
    path = str(tmp_path / "gpt2_14.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, *SHAPE),), path, dynamo=False, opset_version=14,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert "LayerNormalization" not in {n.op_type for n in onnx.load(path).graph.node}
    graph = sw.import_onnx(path)
    norms = [n for n in graph.nodes if n.op == "layernorm"]
    assert len(norms) == 2 and norms[0].attrs.eps == 1e-5 and norms[0].attrs.weight == tuple(
        float(v) for v in model.ln_1.weight.detach())
    calib = [torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))]
    q = sw.quantize(graph, calib)
    x = torch.randn(3, *SHAPE)
    assert torch.equal(sw.Device(CFG).run(sw.compile(q, CFG), x), q(x))
    assert torch.equal(q(x), sw.quantize(model, calib)(x))


class DividedScores(nn.Module):
    """Single-head attention written with a division and 3-D transposes, a GELU of the tanh
    form between two linears."""

    def __init__(self, d=16):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.act, self.d = nn.GELU(approximate="tanh"), d

    def forward(self, x):
        q, k, v = self.qkv(x).split(self.d, dim=-1)
        p = (q @ k.transpose(1, 2) / self.d ** 0.5).softmax(-1)
        return self.out(self.act(p @ v))


def test_division_by_a_scalar_and_split_match_the_torch_path(tmp_path):
    torch.manual_seed(2)
    model = DividedScores().eval()
    graph = sw.import_onnx(export(model, (6, 16), tmp_path / "div.onnx"))
    matmuls = [n for n in graph.nodes if n.op == "matmul"]
    assert [n.attrs.factor for n in matmuls] == [0.25, 1.0]
    assert [n.attrs for n in graph.nodes if n.op == "gelu"] == ["tanh"]
    calib = [torch.randn(4, 6, 16)]
    q = sw.quantize(graph, calib)
    x = torch.randn(2, 6, 16)
    assert torch.equal(sw.Device(CFG).run(sw.compile(q, CFG), x), q(x))
    assert torch.equal(q(x), sw.quantize(model, calib)(x))


def test_tanh_gelu_needs_its_whole_formula(tmp_path):
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with another constant is no GELU:
    # its Muls by constants are named, not taken for one.
    class NotGelu(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1 + torch.tanh(0.7 * (x + 0.044715 * x * x * x)))
    with pytest.raises(UnsupportedOpError, match="Mul node"):
        sw.import_onnx(export(NotGelu(), (4, 8), tmp_path / "g.onnx"))


def _attention_graph(mask: np.ndarray | None, t=4, d=8):
    """``softmax(x xᵀ + mask) x`` (no mask: ``softmax(x xᵀ) x``) on ``[1, t, d]`` as a
    hand-written ONNX graph."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["s" if mask is not None else "m"]),
             helper.make_node("Softmax", ["m"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "x"], ["y"])]
    if mask is not None:
        nodes.insert(2, helper.make_node("Add", ["s", "mask"], ["m"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, d])],
        [] if mask is None else [numpy_helper.from_array(mask.astype(np.float32), "mask")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_causal_mask_constant_is_softmax_causal():
    t = 4
    mask = np.triu(np.full((t, t), -np.inf, np.float32), 1)
    graph = sw.import_onnx(_attention_graph(mask))
    softmax = [n for n in graph.nodes if n.op == "softmax"]
    assert len(softmax) == 1 and softmax[0].attrs.causal
    calib = [torch.randn(4, t, 8)]
    q = sw.quantize(graph, calib)
    x = torch.randn(2, t, 8)
    assert torch.equal(sw.Device(CFG).run(sw.compile(q, CFG), x), q(x))
    # The mask matters: the first token sees only itself.
    plain = sw.quantize(sw.import_onnx(_attention_graph(None)), calib)
    assert not torch.equal(q(x)[:, 0], plain(x)[:, 0])


class MaskedFill(nn.Module):
    """Attention masked as model code writes it: ``scores.masked_fill(mask, -inf)``."""

    def __init__(self, mask):
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.register_buffer("mask", mask)

    def forward(self, x):
        q = self.q(x).unflatten(-1, (2, -1)).transpose(1, 2)
        s = (q @ q.transpose(-2, -1)).masked_fill(self.mask, float("-inf"))
        return (s.softmax(-1) @ q).transpose(1, 2).flatten(2)


def test_masked_fill_of_the_keys_after_each_query_is_causal(tmp_path):
    torch.manual_seed(4)
    model = MaskedFill(torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)).eval()
    graph = sw.import_onnx(export(model, (6, 16), tmp_path / "mf.onnx"))
    assert [n.attrs.causal for n in graph.nodes if n.op == "softmax"] == [True]
    q = sw.quantize(graph, [torch.randn(4, 6, 16)])
    x = torch.randn(2, 6, 16)
    y = sw.Device(CFG).run(sw.compile(q, CFG), x)
    assert torch.equal(y, q(x))
    assert F.cosine_similarity(y.flatten(), model(x).flatten(), dim=0) > 0.98
    # Another mask (the diagonal's keys hidden too) is named.
    other = MaskedFill(torch.triu(torch.ones(6, 6, dtype=torch.bool), 0)).eval()
    with pytest.raises(UnsupportedOpError, match="Where node '/Where': a mask of shape"):
        sw.import_onnx(export(other, (6, 16), tmp_path / "mf2.onnx"))


@pytest.mark.parametrize("mask", [
    np.tril(np.full((4, 4), -np.inf), -1),            # upper triangle kept: anti-causal
    np.where(np.eye(4) > 0, 0.0, -1.0),               # a soft bias, not a mask
    np.zeros((2, 4, 4)),                              # per-head
])
def test_other_masks_are_refused_naming_the_node(mask):
    with pytest.raises(UnsupportedOpError, match=r"Add node 'm': an added mask .* not a "
                                                 r"causal one"):
        sw.import_onnx(_attention_graph(mask))


def test_attention_mask_input_is_named(tmp_path):
    class Masked(nn.Module):
        def forward(self, x, mask):
            q = x.unflatten(-1, (2, -1)).transpose(1, 2)
            return F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Masked().eval(), (torch.randn(1, 4, 16), torch.zeros(4, 4)), path,
                          dynamo=False, opset_version=17, input_names=["x", "attn_mask"])
    with pytest.raises(UnsupportedOpError, match="2 inputs.*attn_mask"):
        sw.import_onnx(path)


def test_broadcast_matmul_is_refused_naming_the_node():
    # [1, 2, t, d] @ [1, 1, d, t]: broadcasting over heads.
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"]),
             helper.make_node("Reshape", ["x", "s2"], ["b"]),
             helper.make_node("MatMul", ["a", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 8])],
        [numpy_helper.from_array(np.array([1, 2, 4, 4], np.int64), "s1"),
         numpy_helper.from_array(np.array([1, 1, 4, 8], np.int64), "s2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match="^MatMul node 'y': operands .*no broadcasting"):
        sw.import_onnx(model)


# --- QDQ models from onnxruntime's static quantization ---------------------------------------

def qdq(path: str, *, symmetric: bool, exclude=()) -> str:
    """``path`` quantized by onnxruntime (QDQ, int8, weights per channel), calibrated on
    random inputs; ``symmetric``: activations too (zero points 0)."""
    import logging

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    logging.getLogger().setLevel(logging.ERROR)
    name = onnx.load(path).graph.input[0].name
    gen = torch.Generator().manual_seed(0)
    batches = iter([{name: torch.randn(1, *SHAPE, generator=gen).numpy()} for _ in range(8)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    out = path.replace(".onnx", f"_qdq{'_sym' if symmetric else ''}.onnx")
    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, nodes_to_exclude=list(exclude),
                    extra_options={"ActivationSymmetric": symmetric})
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_qdq_transformer_runs_with_its_quantization_as_given(name, exported):
    _, path = exported[name]
    graph = sw.import_onnx(qdq(path, symmetric=True))
    assert graph.prequantized and graph.quantizes_all()
    assert {"matmul", "softmax", "layernorm", "gelu"} <= {n.op for n in graph.nodes}
    assert [n.attrs.causal for n in graph.nodes if n.op == "softmax"][0] == (name == "gpt2_block")
    q = sw.quantize(graph, None)
    # The given scales, not calibrated ones: the first linear's output is the QDQ model's.
    first = next(n for n in q.nodes if n.op == "linear")
    assert first.out == graph.given[first.name]
    program = sw.compile(q, CFG)
    assert program.host_ops == []
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sw.Device(CFG).run(program, x), q(x))


def test_qdq_matmul_operands_with_zero_points_are_requantized_symmetric(exported):
    # onnxruntime's asymmetric activations give q, k, v zero points; the NPU's matmul takes
    # symmetric operands: their producers are quantized symmetric over the given range.
    _, path = exported["bert_encoder"]
    graph = sw.import_onnx(qdq(path, symmetric=False))
    q = sw.quantize(graph, None)
    by_name = {n.name: n for n in q.nodes}
    query = next(n for n in q.nodes if n.op == "linear")      # the first: q, k or v
    given = graph.given[query.name]
    assert given.zero_point != 0 and query.out.zero_point == 0
    span = max(abs(given.scale * (-128 - given.zero_point)), given.scale * (127 - given.zero_point))
    assert query.out.scale == pytest.approx(span / 127)
    for n in q.nodes:
        if n.op == "matmul":
            assert all(by_name[i].out.zero_point == 0 for i in n.inputs)
    # Elsewhere the given quantization stays: a LayerNorm's output is asymmetric as given.
    norm = next(n for n in q.nodes if n.op == "layernorm")
    assert norm.out == graph.given[norm.name] and norm.out.zero_point != 0
    program = sw.compile(q, CFG)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sw.Device(CFG).run(program, x), q(x))


def test_qdq_quantized_mask_of_infinite_scale_stays_a_mask(exported):
    # onnxruntime quantizes the causal mask's -inf with scale inf: the mask is read as its
    # float values (still causal), the masked scores' quantization is not used.
    _, path = exported["gpt2_block"]
    proto = onnx.load(qdq(path, symmetric=True))
    scales = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer
              if i.name.endswith("_scale")}
    assert any(np.isinf(v).any() for v in scales.values())
    graph = sw.import_onnx(proto)
    assert [n.attrs.causal for n in graph.nodes if n.op == "softmax"] == [True]


def test_qdq_reshape_with_a_quantization_of_its_own_is_named():
    # A Transpose whose output a QDQ graph quantizes unlike its input: views keep theirs.
    def qdq_pair(v, s, name):
        return [helper.make_node("QuantizeLinear", [v, f"s{s}", "z"], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", f"s{s}", "z"], [f"{name}_d"])]
    nodes = (qdq_pair("x", 1, "x") +
             [helper.make_node("Transpose", ["x_d"], ["t"], perm=[0, 2, 1], name="heads")] +
             qdq_pair("t", 2, "t") +
             [helper.make_node("MatMul", ["x_d", "t_d"], ["m"])] + qdq_pair("m", 3, "m") +
             [helper.make_node("Identity", ["m_d"], ["y"])])
    inits = {"s1": np.float32(0.02), "s2": np.float32(0.03), "s3": np.float32(0.1),
             "z": np.int8(0)}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="ONNX node 'heads': the QDQ model quantizes this "
                                         "reshape's output"):
        sw.import_onnx(model)


@pytest.mark.parametrize("name", ["bert_encoder", "gpt2_block"])
def test_exported_transformer_bit_exact_on_rtl(name, tmp_path):
    """The imported encoder and decoder block, small, on Verilator (tiny 4x4)."""
    torch.manual_seed(2)
    model = BertEncoder(1, 16, 2, 32) if name == "bert_encoder" else GPT2Block(16, 2)
    path = export(model, (8, 16), tmp_path / f"{name}.onnx")
    qmodel = sw.quantize(sw.import_onnx(path), [torch.randn(4, 8, 16) for _ in range(2)])
    program = sw.compile(qmodel, CFG)
    assert program.host_ops == []
    x = torch.randn(1, 8, 16)
    with sw.Device(CFG, backend="rtl") as rtl:
        y = rtl.run(program, x)
    assert torch.equal(y, qmodel(x))
