"""Matmul of two activations (Q @ K^T, P @ V, bmm, batched over heads) and the head views
(view, reshape, transpose, permute, contiguous): the golden against the float reference,
the lowering bit-exact against the golden on the functional model with both ways of
transposing V, a few cases on the RTL, and the errors for what is not supported."""
import math

import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw import golden
from sw.ops import matmul as mm

from .common import TINY, bit_exact_on_func, golden_vs_float, output_step


class QK(nn.Module):
    """Scores of one head: ``q @ k^T`` on tokens [T, F]."""

    def __init__(self, f=12):
        super().__init__()
        self.q, self.k = nn.Linear(f, f), nn.Linear(f, f)

    def forward(self, x):
        return self.q(x) @ self.k(x).transpose(-2, -1)


class PV(nn.Module):
    """``p @ v``: V row-major [T, D], reduced over T, so it is transposed first."""

    def __init__(self, t, f=12, d=6):
        super().__init__()
        self.p, self.v = nn.Linear(f, t), nn.Linear(f, d)

    def forward(self, x):
        return torch.matmul(torch.relu(self.p(x)), self.v(x))


class Bmm(nn.Module):
    def __init__(self, f=12):
        super().__init__()
        self.q, self.k = nn.Linear(f, f), nn.Linear(f, f)

    def forward(self, x):
        return torch.bmm(self.q(x), self.k(x).transpose(1, 2))


class Attention(nn.Module):
    """A multi-head attention block without softmax (a ReLU in its place): the heads split
    by view + transpose, scores scaled, merged by transpose + contiguous + view."""

    def __init__(self, f=12, heads=2):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(f, f) for _ in range(4))

    def forward(self, x):
        b, t, f = x.shape
        h, d = self.heads, f // self.heads
        q = self.q(x).view(b, t, h, d).transpose(1, 2)
        k = self.k(x).view(b, t, h, d).transpose(1, 2)
        v = self.v(x).view(b, t, h, d).transpose(1, 2)
        p = torch.relu(q @ k.transpose(-2, -1) / math.sqrt(d))
        y = (p @ v).transpose(1, 2).contiguous().view(b, t, f)
        return self.o(y)


class Permuted(nn.Module):
    """Heads split by torch.reshape + permute, scores scaled by a product, merged by
    permute + reshape (a reshape that copies)."""

    def __init__(self, f=12, heads=3):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(f, f)
        self.o = nn.Linear(f, f)

    def forward(self, x):
        b, t, f = x.shape
        h = torch.reshape(self.qkv(x), (b, t, self.heads, f // self.heads)).permute(0, 2, 1, 3)
        p = 0.5 * torch.matmul(h, h.permute(0, 1, 3, 2))
        return self.o((p @ h).permute(0, 2, 1, 3).reshape(b, t, f))


class HeadRoundTrip(nn.Module):
    """Split into heads and merge back: views only (transposing twice is row-major again)."""

    def __init__(self, f=12, heads=2):
        super().__init__()
        self.heads = heads
        self.a, self.b = nn.Linear(f, f), nn.Linear(f, f)

    def forward(self, x):
        b, t, f = x.shape
        y = self.a(x).view(b, t, self.heads, f // self.heads).transpose(1, 2)
        return self.b(y.transpose(1, 2).contiguous().view(b, t, f))


class Scores(nn.Module):
    """Per-head scores as the model's output: [B, H, T, T], a flat 3-D sample."""

    def __init__(self, f=12, heads=3):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(f, f)

    def forward(self, x):
        b, t, f = x.shape
        q = self.q(x).view(b, t, self.heads, f // self.heads).transpose(1, 2)
        return q @ q.transpose(2, 3)


class InputGram(nn.Module):
    """``x @ x^T`` of the model input itself (quantized symmetric for it)."""

    def forward(self, x):
        return x @ x.transpose(-2, -1)


class TransposedA(nn.Module):
    """``x^T @ x``: the streamed operand is a transposed view (copied row-major first)."""

    def __init__(self, f=12):
        super().__init__()
        self.a = nn.Linear(f, f)

    def forward(self, x):
        y = self.a(x)
        return y.transpose(-2, -1) @ x


CASES = {
    "scores": lambda t: Scores(),
    "input_gram": lambda t: InputGram(),
    "transposed_a": lambda t: TransposedA(),
    "qk": lambda t: QK(),
    "pv": lambda t: PV(t),
    "bmm": lambda t: Bmm(),
    "attention": lambda t: Attention(),
    "permuted": lambda t: Permuted(),
}


@pytest.fixture(params=["array", "dma"])
def transpose(request, monkeypatch):
    monkeypatch.setattr(mm, "TRANSPOSE", request.param)
    return request.param


def test_golden_matmul_is_int32_of_int8():
    a = torch.tensor([[[127, -128], [1, 2]]], dtype=torch.int8)
    b = torch.tensor([[[127, 3], [-128, 4]]], dtype=torch.int8)
    want = torch.tensor([[[127 * 127 + 128 * 128, 381 - 512], [127 - 256, 3 + 8]]])
    assert torch.equal(golden.matmul(a, b), want.to(torch.int32))
    with pytest.raises(ValueError, match="same leading dimensions"):
        golden.matmul(a, b[0])


@pytest.mark.parametrize("case", ["qk", "pv", "attention", "permuted"])
def test_golden_vs_float(case):
    """Symmetric operands: the golden is the float product of the dequantized operands up
    to the output's rounding."""
    def tolerance(q, fargs, node, _):
        # Where the float product leaves the calibrated range (the golden's operands
        # differ from the float model's by their quantization) the output saturates.
        want = mm.MatmulOp().forward(node, fargs)
        if node.act is not None:
            want = torch.relu(want)
        lo, hi = ((v - q.out.zero_point) * q.out.scale for v in q.clamp)
        return output_step(q) + (want - hi).clamp(min=0) + (lo - want).clamp(min=0)
    golden_vs_float(lambda: CASES[case](5), (5, 12), "matmul", tolerance)


def test_operands_are_symmetric():
    qmodel = sw.quantize(Attention().eval(), [torch.randn(4, 5, 12)])
    for node in qmodel.nodes:
        if node.op == "matmul":
            for name in node.inputs:
                assert qmodel.node(name).out.zero_point == 0, name
    # The producers themselves (the linear layers behind the views) are symmetric.
    assert all(qmodel.node(n).out.zero_point == 0 for n in ("q", "k", "v"))


@pytest.mark.parametrize("t", [1, 5, 9])
@pytest.mark.parametrize("case", list(CASES))
def test_bit_exact_on_func(case, t, transpose):
    bit_exact_on_func(lambda: CASES[case](t), (t, 12))


def test_bit_exact_on_16x16():
    bit_exact_on_func(lambda: Attention(40, 2), (20, 40), configs=[NPUConfig.preset("default")])


def test_views_run_no_instructions():
    """The head round trip is views only; a reshape of a permuted tensor copies, once."""
    torch.manual_seed(0)
    qmodel = sw.quantize(HeadRoundTrip().eval(), [torch.randn(3, 5, 12)])
    assert [n.op for n in qmodel.nodes].count("copy") == 0
    program = sw.compile(qmodel, TINY)
    assert [layer["op"] for layer in program.layers] == ["linear", "linear"]
    bit_exact_on_func(HeadRoundTrip, (5, 12))
    qmodel = sw.quantize(Permuted().eval(), [torch.randn(3, 5, 12)])
    assert [n.op for n in qmodel.nodes].count("copy") == 1


class PatchAttention(nn.Module):
    """A vision transformer's way in and out: patch tokens of a convolution's output
    (``flatten(2).transpose(1, 2)``), attention on them, and back to an image for a
    convolution (``transpose(1, 2).reshape(B, C, H, W)``). In the channel-last bytes all
    four are views."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 2, stride=2)
        self.lin = nn.Linear(8, 8)
        self.conv = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        b = x.shape[0]
        t = torch.relu(self.lin(self.patch(x).flatten(2).transpose(1, 2)))   # [b, 16, 8]
        u = (t @ t.transpose(-2, -1) * 0.1) @ t
        return self.conv(u.transpose(1, 2).reshape(b, 8, 4, 4))


def test_patch_tokens_are_views(transpose):
    torch.manual_seed(0)
    qmodel = sw.quantize(PatchAttention().eval(), [torch.randn(3, 3, 8, 8)])
    program = sw.compile(qmodel, TINY)
    assert [layer["op"] for layer in program.layers] == ["conv", "linear", "matmul", "matmul", "conv"]
    bit_exact_on_func(PatchAttention, (3, 8, 8))


def test_copy_of_elements_further_apart_than_a_load_strides():
    """A transpose whose elements are 4097 bytes apart, over the 4095 of LOAD.x_stride:
    the copy makes them the pattern's y dimension instead."""
    class Wide(nn.Module):
        def forward(self, x):
            return x.transpose(1, 2).contiguous()
    torch.manual_seed(0)
    qmodel = sw.quantize(Wide().eval(), [torch.randn(3, 3, 4097)])
    assert [n.op for n in qmodel.nodes] == ["input", "view", "copy"]
    program = sw.compile(qmodel, TINY)
    x = torch.randn(3, 4097)
    assert torch.equal(sw.Device(TINY).run(program, x), qmodel(x))


def test_transpose_modes_differ_only_in_cost():
    """Both ways of transposing V give the same bytes; the array needs MAC slots, the
    DMA none; "auto" picks one of them."""
    torch.manual_seed(1)
    qmodel = sw.quantize(PV(8).eval(), [torch.randn(3, 8, 12)])
    x = torch.randn(2, 8, 12)
    slots = {}
    for mode in ("array", "dma", "auto"):
        with mm.transposing(mode):
            program = sw.compile(qmodel, TINY)
        slots[mode] = next(la["mac_slots"] for la in program.layers if la["op"] == "matmul")
        assert torch.equal(sw.Device(TINY).run(program, x), qmodel(x)), mode
    assert slots["array"] > slots["dma"]
    assert slots["auto"] in (slots["array"], slots["dma"])
    assert mm.transpose_mode(1, 1, 4, 4) == "dma" and mm.transpose_mode(256, 256, 16, 16) == "array"


def test_bad_transpose_switch():
    qmodel = sw.quantize(PV(4).eval(), [torch.randn(3, 4, 12)])
    with mm.transposing("sideways"), pytest.raises(ValueError, match="TRANSPOSE is 'sideways'"):
        sw.compile(qmodel, TINY)


@pytest.mark.parametrize("case, t, mode", [("attention", 5, "array"), ("attention", 5, "dma"),
                                           ("pv", 1, "array"), ("permuted", 3, "dma"),
                                           ("patch", None, "array")])
def test_bit_exact_on_rtl(case, t, mode, monkeypatch):
    monkeypatch.setattr(mm, "TRANSPOSE", mode)
    torch.manual_seed(2)
    model = PatchAttention().eval() if case == "patch" else CASES[case](t).eval()
    shape = (3, 8, 8) if case == "patch" else (t, 12)
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    program = sw.compile(qmodel, TINY)
    x = torch.randn(*shape)
    y = sw.Device(TINY, backend="rtl").run(program, x)
    assert torch.equal(y, qmodel(x))
    assert torch.equal(y, sw.Device(TINY).run(program, x))


class Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, 2, 4).transpose(1, 2)          # [b, 2, t, 4]
        k = self.k(x).view(b, t, 1, 4).transpose(1, 2)          # [b, 1, t, 4]: shared head
        return q @ k.transpose(-2, -1)


class ByWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        return x @ self.w


class ImageMatmul(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        return y @ y


class Divided(nn.Module):
    def forward(self, x):
        return x / 2


class NegativeScale(QK):
    def forward(self, x):
        return -2.0 * super().forward(x)


@pytest.mark.parametrize("factory, shape, message", [
    (Broadcast, (5, 8), r"matmul at matmul \(in the model's forward\): operands \[3, 2, 5, 4\] "
                        r"and \[3, 1, 4, 5\].*no broadcasting"),
    (ByWeight, (5, 8), r"matmul at matmul \(in the model's forward\): operand 'w' is a parameter"),
    (Divided, (5, 8), r"division at truediv .*only a matmul divided by a number"),
    (NegativeScale, (5, 12), r"matmul at matmul: a negative factor \(-2.0\)"),
])
def test_unsupported_forms_are_named(factory, shape, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(factory().eval(), [torch.randn(3, *shape)])


def test_matmul_of_images_is_refused_by_the_compiler():
    qmodel = sw.quantize(ImageMatmul().eval(), [torch.randn(3, 2, 4, 4)])
    with pytest.raises(sw.CompileError, match=r"layer matmul \(matmul at matmul\): operand conv "
                                              r"\[2, 4, 4\] is a channel-last image"):
        sw.compile(qmodel, TINY)


def test_strided_operand_of_another_operator_is_refused():
    class AddTransposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)

        def forward(self, x):
            y = self.a(x).view(x.shape[0], 6, 2, 3).transpose(1, 2)   # [b, 2, 6, 3]
            return y + y

    qmodel = sw.quantize(AddTransposed().eval(), [torch.randn(3, 6, 6)])
    with pytest.raises(sw.CompileError, match=r"operand transpose is a strided view .*"
                                              r"make it .contiguous\(\) first"):
        sw.compile(qmodel, TINY)
