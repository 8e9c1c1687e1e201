"""sw/ops/layout.py: ShuffleNet's channel shuffle (view / transpose / contiguous / view, with
shapes from x.size()) and channel slices (chunk, split) as exact 0/1 1x1 convolutions:
equal to PyTorch's float result on the golden, bit-exact on the functional model."""
import pytest
import torch
import torch.nn as nn

import sw
from sw.ops.layout import shuffle_weights
from sw.zoo_vision import channel_shuffle

from .common import bit_exact_on_func


class Shuffle(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(self.conv(x), self.groups)


class Chunks(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3, padding=1)
        self.b = nn.Conv2d(5, 5, 1)

    def forward(self, x):
        x1, x2 = self.conv(x).chunk(2, dim=1)
        return torch.cat((x1, self.b(x2)), dim=1)


class Splits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 9, 1)

    def forward(self, x):
        a, b, c = torch.split(self.conv(x), [2, 3, 4], dim=1)
        return torch.cat([c, a, b], 1)


CASES = {
    "shuffle2": (Shuffle, (3, 4, 5)),
    "shuffle3": (lambda: Shuffle(3), (3, 3, 3)),
    "chunk": (Chunks, (3, 5, 4)),
    "split": (Splits, (3, 4, 4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_pytorch(case):
    """A permutation keeps its input's range, so its quantization, and moves int8 values
    exactly; a slice (or an operand stored into a concatenation) is requantized to its
    own range: within a step of PyTorch's float result."""
    factory, shape = CASES[case]
    from .common import golden_vs_float, output_step
    golden_vs_float(factory, shape, "channels", lambda q, fargs, node, qins: output_step(q))
    if case.startswith("shuffle"):
        torch.manual_seed(0)
        qmodel = sw.quantize(factory().eval(), [torch.randn(3, *shape)])
        (node,) = [n for n in qmodel.nodes if n.op == "channels"]
        assert node.out == qmodel.node(node.inputs[0]).out


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape)


def test_shuffle_is_exact_and_counts_no_macs():
    torch.manual_seed(0)
    model = Shuffle().eval()
    x = torch.randn(2, 3, 4, 4)
    qmodel = sw.quantize(model, [x])
    conv, shuf = qmodel.nodes[1], qmodel.nodes[2]
    # The shuffle's output is the conv's int8 output with its channels permuted.
    env = {}
    for node in qmodel.nodes:
        args = [x] if node.op == "input" else [env[i] for i in node.inputs]
        env[node.name] = sw.ops.get(node.op).golden(node, args)
    assert torch.equal(env[shuf.name], channel_shuffle(env[conv.name].float(), 2).to(torch.int8))
    assert sw.ops.get("channels").macs(shuf) == 0


def test_shuffle_weights_are_torchvisions():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    w = shuffle_weights(12, 3)
    assert torch.equal(torch.nn.functional.conv2d(x, w), channel_shuffle(x, 3))


def test_shapes_need_an_example():
    with pytest.raises(sw.UnsupportedOpError, match="shape arithmetic needs an example input"):
        sw.frontend.trace(Shuffle())


def test_other_transposes_are_refused():
    class T(nn.Module):
        def forward(self, x):
            return x.transpose(2, 3)
    with pytest.raises(sw.UnsupportedOpError, match="transpose at .*only the transpose of "
                                                     "channel groups"):
        sw.quantize(T(), [torch.randn(2, 3, 4, 4)])


class ShuffleInto(nn.Module):
    """A shuffle read by ``kind``: a dense conv, a depthwise conv then a dense one (the
    permutation passes through), ShuffleNet's chunk and cat, or a depthwise conv whose
    output is added (no reader can take the permutation: the shuffle stays)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 6, 1)
        self.b = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = channel_shuffle(self.conv(x), 2)
        if self.kind == "dense":
            return self.pw(x)
        if self.kind == "depthwise":
            return self.pw(torch.relu(self.dw(x)))
        if self.kind == "chunk":
            x1, x2 = x.chunk(2, dim=1)
            return self.pw(channel_shuffle(torch.cat((x1, self.b(x2)), 1), 2))
        return self.dw(x) + x


@pytest.mark.parametrize("kind, folded", [("dense", 1), ("depthwise", 1), ("chunk", 2),
                                          ("add", 0)])
def test_shuffle_folded_into_its_readers(kind, folded):
    """The compiler folds a shuffle into readers that can take their input channels in
    another order (no instructions for it), keeps the 0/1 convolution otherwise; bit-exact
    on the functional model either way."""
    from .common import CONFIGS
    torch.manual_seed(0)
    model = ShuffleInto(kind).eval()
    shape = (3, 5, 6)
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    shuffles = [n.name for n in qmodel.nodes if n.op == "channels"
                and "shuffle" in n.where]
    assert len(shuffles) == (2 if kind == "chunk" else 1)
    x = torch.randn(2, *shape)
    for cfg in CONFIGS:
        program = sw.compile(qmodel, cfg)
        lowered = {layer["name"] for layer in program.layers}
        assert len([s for s in shuffles if s not in lowered]) == folded
        assert torch.equal(sw.Device(cfg).run(program, x), qmodel(x))
