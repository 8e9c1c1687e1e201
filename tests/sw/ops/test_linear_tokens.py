"""Token-shaped tensors ([batch, tokens, features]) through Linear, ReLU/ReLU6, table
activations (GELU), residual add and flatten: the golden takes the leading dimensions as
GEMM rows, the compiler lowers T rows per sample, and ``qmodel(x)`` and the device agree
bit for bit and return [B, T, out]; operators without token support are refused by name."""
import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw import golden

from .common import CONFIGS, TINY, Seq, bit_exact_on_func, golden_vs_float
from .test_linear import linear_tolerance

#: tiny, non-square (4x6), and 8x4 with an accumulator so small (m_max 8) that 16 tokens
#: take two row blocks.
TOKEN_CONFIGS = CONFIGS + [NPUConfig.preset("tiny", rows=8, cols=4, acc_depth=16)]


class Block(nn.Module):
    """A transformer-style MLP block on tokens with its residual add."""

    def __init__(self, f=16, hidden=24):
        super().__init__()
        self.up = nn.Linear(f, hidden)
        self.act = nn.GELU()
        self.down = nn.Linear(hidden, f)

    def forward(self, x):
        return torch.relu(x + self.down(self.act(self.up(x))))


CASES = {
    "relu_stack": lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)),
    "gelu_relu6": lambda: Seq(nn.Linear(16, 24), nn.GELU(approximate="tanh"), nn.Linear(24, 16),
                              nn.ReLU6()),
    "residual_gelu": lambda: Block(),
    # A ReLU on the input (nothing to fuse into: a standalone clamp), a table after it.
    "standalone_relu": lambda: Seq(nn.ReLU(), nn.Linear(16, 8), nn.Tanh()),
}


@pytest.mark.parametrize("t", [1, 5, 16])
@pytest.mark.parametrize("case", list(CASES))
def test_tokens_bit_exact_on_func(case, t):
    bit_exact_on_func(CASES[case], (t, 16), configs=TOKEN_CONFIGS if t == 16 else CONFIGS)


def test_output_shapes_and_device_agree():
    """``qmodel`` and ``Device.run`` return [B, T, out] for a batch, [T, out] for a sample."""
    torch.manual_seed(1)
    model = CASES["relu_stack"]().eval()
    x = torch.randn(3, 5, 16)
    qmodel = sw.quantize(model, [x])
    assert qmodel.input_shape == (5, 16)
    assert [n.shape for n in qmodel.nodes if n.op == "linear"] == [(5, 32), (5, 8)]
    program = sw.compile(qmodel, TINY)
    device = sw.Device(TINY, "func")
    y = device.run(program, x)
    assert y.shape == (3, 5, 8) and torch.equal(y, qmodel(x))
    one = device.run(program, x[1])
    assert one.shape == (5, 8) and torch.equal(one, qmodel(x[1])) and torch.equal(one, y[1])
    # Each token is its own row: permuting the tokens permutes the result.
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(device.run(program, x[:, perm]), y[:, perm])
    # And it is the quantized float model.
    assert (y - model(x)).abs().max() < 0.1


def test_golden_linear_tracks_float_on_tokens():
    assert golden_vs_float(CASES["relu_stack"], (5, 16), "linear", linear_tolerance) == 2


def test_golden_gemm_takes_leading_dims_as_rows():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (2, 5, 7), generator=gen, dtype=torch.int8)
    w = torch.randint(-127, 128, (3, 7), generator=gen, dtype=torch.int8)
    got = golden.gemm(a, w)
    assert got.shape == (2, 5, 3) and got.dtype == torch.int32
    assert torch.equal(got.reshape(10, 3), golden.gemm(a.reshape(10, 7), w))
    with pytest.raises(ValueError, match="gemm: need"):
        golden.gemm(a, w[:, :6])


def test_flatten_of_tokens_feeds_a_linear():
    """[B, T, F] flattened to [B, T*F]: PyTorch's order is the bytes' (T rows of F)."""
    bit_exact_on_func(lambda: Seq(nn.Linear(6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(20, 3)),
                      (4, 6))


class ConvAfterTokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(self.proj(x))


class MulOfTokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(x) * x


@pytest.mark.parametrize("factory, op, where", [(ConvAfterTokens, "conv", "conv"),
                                                (MulOfTokens, "mul", "mul")])
def test_unsupported_op_on_tokens_is_named(factory, op, where):
    with pytest.raises(sw.UnsupportedOpError, match=rf"^{op} at {where}.*token-shaped \[5, 8\]"):
        sw.quantize(factory().eval(), [torch.randn(3, 5, 8)])


def test_tokens_bit_exact_on_rtl():
    torch.manual_seed(2)
    model = Block(8, 8).eval()
    qmodel = sw.quantize(model, [torch.randn(4, 3, 8)])
    program = sw.compile(qmodel, TINY)
    x = torch.randn(3, 8)
    y = sw.Device(NPUConfig.preset("tiny"), backend="rtl").run(program, x)
    assert y.shape == (3, 8) and torch.equal(y, qmodel(x))


@pytest.mark.parametrize("t", [1, 16])
def test_layer_model_counts_equal_the_program_on_tokens(t):
    """sw.analysis.layers prices a token Linear as the compiler lowers it (T rows)."""
    from sw.analysis import layers
    from sw.analysis.traffic import count_traffic
    torch.manual_seed(3)
    qmodel = sw.quantize(Block().eval(), [torch.randn(2, t, 16)])
    for cfg in TOKEN_CONFIGS:
        est = layers.estimate_layers(qmodel, cfg)
        program = sw.compile(qmodel, cfg)
        total, _ = count_traffic(program.words, cfg)
        assert est.total.mac_slots == total.mac_slots, cfg.describe()
        assert est.total.dram_read_bytes == total.dram_read_bytes, cfg.describe()
        assert est.total.instructions == total.instructions - 2, cfg.describe()
        assert [e.mac_slots for e in est.layers] == [p["mac_slots"] for p in program.layers]


def test_wide_tokens_and_save_load(tmp_path):
    """An LLM-width Linear(4096, n) on tokens (4096-byte token rows), and a program of
    token tensors saved and loaded."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4096, 12), nn.ReLU(), nn.Linear(12, 5)).eval()
    x = torch.randn(2, 3, 4096)
    qmodel = sw.quantize(model, [x])
    program = sw.compile(qmodel, TINY)
    y = sw.Device(TINY).run(program, x)
    assert y.shape == (2, 3, 5) and torch.equal(y, qmodel(x))
    program.save(tmp_path / "tokens.npu")
    loaded = sw.Program.load(tmp_path / "tokens.npu")
    assert loaded.input.shape == (3, 4096) and loaded.output.shape == (3, 5)
    assert torch.equal(sw.Device(TINY).run(loaded, x), y)


def test_compiler_refuses_token_operands_by_layer(monkeypatch):
    """The compiler's own check (behind the quantizer's): an operator without token
    support given a token tensor is a CompileError naming the layer, not an assertion."""
    qmodel = sw.quantize(Seq(nn.ReLU(), nn.Linear(8, 4)).eval(), [torch.randn(2, 5, 8)])
    monkeypatch.setattr(type(sw.ops.get("relu")), "tokens", False)
    with pytest.raises(sw.CompileError, match=r"relu at body\.0\).*token-shaped operand"):
        sw.compile(qmodel, TINY)
