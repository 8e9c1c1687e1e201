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


RTL_MODELS = {
    "bert": (lambda: BertEncoder(layers=1, hidden=16, heads=2, ffn=32), (8, 16)),
    "gpt2": (lambda: GPT2Block(hidden=16, heads=2), (8, 16)),
    "encoder_layer": (lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
                      (8, 16)),
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


class MaskedSDPA(SDPA):
    """SDPA with a constant mask buffer (as a model that builds its mask once has)."""

    def __init__(self, mask):
        super().__init__(causal=False)
        self.register_buffer("mask", mask)

    def forward(self, x):
        def heads(t):
            return t.unflatten(-1, (self.h, -1)).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                           attn_mask=self.mask)
        return self.o(y.transpose(1, 2).flatten(2))


T = 6
CAUSAL_BOOL = torch.ones(T, T, dtype=torch.bool).tril()
CAUSAL_ADD = torch.zeros(T, T).masked_fill(~CAUSAL_BOOL, float("-inf"))


@pytest.mark.parametrize("mask, same_as", [(CAUSAL_BOOL, True), (CAUSAL_ADD, True),
                                           (CAUSAL_BOOL[None, None].expand(1, 2, T, T), True),
                                           (torch.ones(T, T, dtype=torch.bool), False)])
def test_a_constant_causal_or_empty_mask_is_understood(mask, same_as):
    torch.manual_seed(4)
    model = MaskedSDPA(mask.clone()).eval()
    ref = SDPA(causal=same_as).eval()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k != "mask"})
    calib = [torch.randn(4, T, 24) for _ in range(3)]
    q, qref = sw.quantize(model, calib), sw.quantize(ref, calib)
    x = torch.randn(2, T, 24)
    assert torch.equal(q(x), qref(x))
    program = sw.compile(q, TINY)
    assert torch.equal(sw.Device(TINY).run(program, x), q(x))


def test_other_masks_are_refused_by_name():
    band = CAUSAL_BOOL & torch.ones(T, T, dtype=torch.bool).triu(-2)     # a sliding window
    with pytest.raises(UnsupportedOpError, match="other than none or causal"):
        sw.quantize(MaskedSDPA(band).eval(), [torch.randn(2, T, 24)])
    soft = torch.randn(T, T)
    with pytest.raises(UnsupportedOpError, match="other than 0 and -inf"):
        sw.quantize(MaskedSDPA(soft).eval(), [torch.randn(2, T, 24)])


def _hf(kind, hidden=32, layers=2, heads=2):
    transformers = pytest.importorskip("transformers")
    if kind == "bert":
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=2 * hidden,
                                      max_position_embeddings=32, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
        model = transformers.BertModel(cfg, add_pooling_layer=False)
    else:
        cfg = transformers.GPT2Config(vocab_size=64, n_embd=hidden, n_layer=layers, n_head=heads,
                                      n_positions=32, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2Model(cfg)

    class LastHidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model(input_ids=ids).last_hidden_state
    return LastHidden().eval()


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_hugging_face_models_run_with_only_the_embedding_on_the_host(kind):
    torch.manual_seed(5)
    model = _hf(kind)
    qmodel = sw.quantize(model, [torch.randint(0, 64, (4, 12)) for _ in range(2)])
    x = torch.randint(0, 64, (2, 12))
    for cfg in (TINY, NPUConfig()):
        program = sw.compile(qmodel, cfg)
        assert program.host_ops == ["embedding"]
        assert {"matmul", "softmax", "layernorm"} <= {layer["op"] for layer in program.layers}
        assert torch.equal(sw.Device(cfg).run(program, x), qmodel(x)), cfg.describe()
    with torch.no_grad():
        cos = F.cosine_similarity(qmodel(x).flatten(), model(x).flatten(), dim=0)
    assert cos > 0.98, float(cos)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_hugging_face_model_bit_exact_on_rtl(kind):
    torch.manual_seed(6)
    model = _hf(kind, hidden=16, layers=1)
    qmodel = sw.quantize(model, [torch.randint(0, 64, (4, 8)) for _ in range(2)])
    program = sw.compile(qmodel, TINY)
    x = torch.randint(0, 64, (1, 8))
    with sw.Device(TINY, backend="rtl") as rtl:
        y = rtl.run(program, x)
    assert torch.equal(y, qmodel(x))
