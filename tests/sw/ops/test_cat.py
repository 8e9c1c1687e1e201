"""sw/ops/cat.py: concatenation along channels (DenseNet, GoogLeNet, SqueezeNet forms),
operands of different quantizations requantized to the output's: the golden within a
step of PyTorch's float cat, bit-exact on the functional model."""
import pytest
import torch
import torch.nn as nn

import sw

from .common import TINY, bit_exact_on_func, golden_vs_float, output_step


class Fire(nn.Module):
    """SqueezeNet's fire module: a squeeze, two expands concatenated."""

    def __init__(self, cin=3, squeeze=4, e1=5, e3=7):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, e1, 1)
        self.e3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.squeeze(x))
        return torch.cat([self.act(self.e1(x)), self.act(self.e3(x))], 1)


class Dense(nn.Module):
    """DenseNet's pattern: each layer reads the concatenation of all earlier features,
    the input among them."""

    def __init__(self, cin=3, growth=4, layers=3):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin + i * growth, growth, 3, padding=1)
                                   for i in range(layers))

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(torch.relu(conv(torch.cat(feats, 1))))
        return torch.cat(feats, dim=1)


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(6, 3)

    def forward(self, x):
        return torch.concat((self.a(x), self.b(x)), dim=-1)


CASES = {
    "fire": (Fire, (3, 5, 6)),
    "dense": (Dense, (3, 4, 4)),
    "wide": (lambda: Fire(3, 4, 20, 9), (3, 3, 3)),        # operands over one array column tile
    "flat": (Flat, (6,)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_float(case):
    factory, shape = CASES[case]
    golden_vs_float(factory, shape, "cat", lambda q, fargs, node, qins: output_step(q))


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape)


def test_same_quantization_is_an_exact_copy():
    from sw import ops
    from sw.ir import QNode, QParams
    from sw.ops.cat import QCat
    q = QParams(0.1, 3)
    m, s = sw.golden.quantize_multiplier(1.0)
    node = QNode("c", "cat", ["a", "b"], q, (4, 2, 2), QCat((3, 3), (m, m), (s, s)), None, "c")
    a = torch.randint(-128, 128, (2, 1, 2, 2), dtype=torch.int8)
    b = torch.randint(-128, 128, (2, 3, 2, 2), dtype=torch.int8)
    assert torch.equal(ops.get("cat").golden(node, [a, b]), torch.cat([a, b], 1))


@pytest.mark.parametrize("dim", [2, -1])
def test_other_dimensions_are_refused(dim):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return torch.cat([self.conv(x), x], dim)
    with pytest.raises(sw.UnsupportedOpError, match=f"cat at .*not dim={dim}"):
        sw.quantize(M(), [torch.randn(2, 2, 4, 4)])


def test_operands_made_for_the_concatenation_are_stored_in_place():
    """SqueezeNet's fire module: both expands store into their slices; no copy, no layer."""
    torch.manual_seed(0)
    model = Fire().eval()
    x = torch.randn(2, 3, 5, 6)
    qmodel = sw.quantize(model, [x])
    cat = next(n for n in qmodel.nodes if n.op == "cat")
    assert all(qmodel.node(i).out == cat.out for i in cat.inputs)     # one quantization
    cfg = TINY
    program = sw.compile(qmodel, cfg)
    assert "cat" not in [layer["op"] for layer in program.layers]
    device = sw.Device(cfg)
    assert torch.equal(device.run(program, x), qmodel(x))
    # DRAM traffic: the expands' outputs are written once (no read back for a copy).
    written = sum(layer["dram_write_bytes"] for layer in device.stats["layers"])
    assert written == 5 * 6 * (5 + 7) + 5 * 6 * 4     # one sample: the expands, the squeeze


def test_operands_read_elsewhere_are_copied():
    """DenseNet's pattern: features read by later concatenations too (and the input) are
    copied; the last layer's feature, read only by the final concatenation, is not."""
    torch.manual_seed(0)
    model = Dense().eval()
    qmodel = sw.quantize(model, [torch.randn(2, 3, 4, 4)])
    from sw.ops.cat import folded_operands
    folded = folded_operands(qmodel.nodes, qmodel.output)
    last_cat = qmodel.nodes[-1]
    assert list(folded) == [last_cat.inputs[-1]]
