"""Transformers on the NPU, whole: the zoo's BERT-style encoder and GPT-2 style decoder,
``nn.TransformerEncoderLayer``/``nn.TransformerEncoder``, ``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention`` (causal or not) compile with no host operator and run
bit-exactly against the golden on ``func`` (and, small, on ``rtl``)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw import zoo
from sw.frontend import UnsupportedOpError
from sw.zoo_transformer import BertEncoder, GPT2Block, GPT2Decoder

TINY = NPUConfig.preset("tiny")
CONFIGS = [TINY, NPUConfig.preset("tiny", cols=6), NPUConfig()]


class MHA(nn.Module):
    def __init__(self, e=32, h=4, bias=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(e, h, batch_first=True, bias=bias)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class SDPA(nn.Module):
    """Three projections, heads as [B, H, T, D], F.scaled_dot_product_attention."""

    def __init__(self, e=24, h=2, causal=False, scale=None):
        super().__init__()
        self.h, self.causal, self.scale = h, causal, scale
        self.q, self.k, self.v, self.o = (nn.Linear(e, e) for _ in range(4))

    def forward(self, x):
        def heads(t):
            return t.unflatten(-1, (self.h, -1)).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                           is_causal=self.causal, scale=self.scale)
        return self.o(y.transpose(1, 2).flatten(2))


def _encoder(norm_first, activation):
    return nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True,
                                      norm_first=norm_first, activation=activation)


MODELS = {
    "bert_encoder": (lambda: BertEncoder(), (16, 64)),
    "gpt2_decoder": (lambda: GPT2Decoder(), (16, 64)),
    "encoder_layer": (lambda: _encoder(False, "relu"), (8, 32)),
    "encoder_layer_norm_first_gelu": (lambda: _encoder(True, "gelu"), (8, 32)),
    "encoder_stack": (lambda: nn.TransformerEncoder(_encoder(True, "gelu"), 2, norm=nn.LayerNorm(32),
                                                    enable_nested_tensor=False), (8, 32)),
    "mha": (lambda: MHA(), (8, 32)),
    "mha_no_bias": (lambda: MHA(16, 2, bias=False), (5, 16)),
    "sdpa": (lambda: SDPA(), (7, 24)),
    "sdpa_causal": (lambda: SDPA(causal=True), (7, 24)),
    "sdpa_causal_scaled": (lambda: SDPA(causal=True, scale=0.3), (6, 24)),
}


def _quantized(name, seed=0):
    torch.manual_seed(seed)
    factory, shape = MODELS[name]
    model = factory().eval()
    qmodel = sw.quantize(model, [torch.randn(4, *shape) for _ in range(3)])
    return model, qmodel, shape


@pytest.mark.parametrize("name", list(MODELS))
def test_transformer_bit_exact_on_func_with_no_host_operator(name):
    model, qmodel, shape = _quantized(name)
    x = torch.randn(2, *shape)
    want = qmodel(x)
    for cfg in CONFIGS:
        program = sw.compile(qmodel, cfg)
        assert program.host_ops == [], program.host_ops
        ops = {layer["op"] for layer in program.layers}
        assert {"matmul", "softmax"} <= ops, ops
        y = sw.Device(cfg).run(program, x)
        assert torch.equal(y, want), (name, cfg.describe())
    # Float agreement is a figure (bench/transformers.py); here only a sanity bound that
    # catches a scrambled layout (a wrong head order gives a cosine near 0).
    cos = F.cosine_similarity(want.flatten().float(), model(x).flatten(), dim=0)
    assert cos > 0.98, float(cos)


def test_causal_mask_is_applied():
    # The same weights with and without the mask: the first token's outputs differ (it sees
    # only itself with the mask), and the causal golden is nearer the float causal model.
    torch.manual_seed(3)
    causal, plain = SDPA(causal=True).eval(), SDPA(causal=False).eval()
    plain.load_state_dict(causal.state_dict())
    calib = [torch.randn(4, 7, 24) for _ in range(3)]
    x = torch.randn(2, 7, 24)
    qc, qp = sw.quantize(causal, calib), sw.quantize(plain, calib)
    assert not torch.equal(qc(x)[:, 0], qp(x)[:, 0])
    want = causal(x)
    assert (qc(x) - want).abs().mean() < (qp(x) - want).abs().mean()


def test_zoo_lists_the_transformers():
    for name in ("bert_encoder", "gpt2_decoder"):
        model, shape = zoo.build(name)
        assert model(torch.randn(1, *shape)).shape == (1, *shape)


@pytest.mark.parametrize("bad, match", [
    (lambda: nn.MultiheadAttention(16, 2), "batch_first=False"),
    (lambda: nn.TransformerEncoderLayer(16, 2, 32, batch_first=False, dropout=0.0), "batch_first"),
])
def test_unsupported_attention_forms_are_named(bad, match):
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = bad()

        def forward(self, x):
            y = self.m(x, x, x) if isinstance(self.m, nn.MultiheadAttention) else self.m(x)
            return y[0] if isinstance(y, tuple) else y
    with pytest.raises(UnsupportedOpError, match=match):
        sw.quantize(Wrap().eval(), [torch.randn(2, 4, 16)])


def test_sdpa_with_a_mask_tensor_is_refused():
    class Masked(nn.Module):
        def forward(self, x):
            q = x.unflatten(-1, (2, -1)).transpose(1, 2)
            return F.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(4, 4).bool())
    with pytest.raises(UnsupportedOpError, match="attn_mask"):
        sw.quantize(Masked().eval(), [torch.randn(2, 4, 16)])


RTL_MODELS = {
    "bert": (lambda: BertEncoder(layers=1, hidden=16, heads=2, ffn=32), (8, 16)),
    "gpt2": (lambda: GPT2Block(hidden=16, heads=2), (8, 16)),
}


@pytest.mark.parametrize("name", list(RTL_MODELS))
def test_transformer_bit_exact_on_rtl(name):
    torch.manual_seed(1)
    factory, shape = RTL_MODELS[name]
    qmodel = sw.quantize(factory().eval(), [torch.randn(4, *shape) for _ in range(2)])
    program = sw.compile(qmodel, TINY)
    x = torch.randn(1, *shape)
    rtl = sw.Device(TINY, backend="rtl")
    y = rtl.run(program, x)
    assert torch.equal(y, qmodel(x))
    func = sw.Device(TINY, backend="func")
    assert torch.equal(func.run(program, x), y)
    for key in ("macs", "dram_read_bytes", "dram_write_bytes"):
        assert rtl.stats[key] == func.stats[key], key
