"""sw/ops/conv.py: the golden within quantization error of the float convolution, the
lowering bit-exact on the functional model, the front end's checks."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from sw.ops.conv import Conv, QConv

from .common import Seq, bit_exact_on_func, golden_vs_float, output_step


def conv_tolerance(q, fargs, node, qins):
    """Output rounding, bias rounding, and each weight's rounding times |x|."""
    a = node.attrs
    s_w = a.weight.flatten(1).abs().amax(1) / 127
    half = (s_w / 2)[:, None, None, None].expand_as(a.weight)
    weights = F.conv2d(fargs[0].abs(), half, None, a.stride, a.padding, 1, a.groups)
    bias = (0.5 * qins[0].scale * s_w)[None, :, None, None]
    return output_step(q) + weights + bias


CASES = {
    "3x3_pad1": (lambda: Seq(nn.Conv2d(3, 6, 3, padding=1)), (3, 6, 5)),
    "stride2_rect": (lambda: Seq(nn.Conv2d(4, 5, (3, 1), stride=2, padding=(1, 0))), (4, 7, 6)),
    "depthwise_relu6": (lambda: Seq(nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.ReLU6()), (6, 5, 5)),
    "same_valid": (lambda: Seq(nn.Conv2d(3, 4, (3, 5), padding="same"), nn.Conv2d(4, 2, 3, padding="valid")),
                   (3, 6, 7)),
    "grouped_bn_relu": (lambda: Seq(nn.Conv2d(4, 6, 3, groups=2, bias=False), nn.BatchNorm2d(6),
                                    nn.ReLU()), (4, 6, 6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tracks_float(case):
    factory, shape = CASES[case]
    golden_vs_float(factory, shape, "conv", conv_tolerance)


@pytest.mark.parametrize("case", list(CASES))
def test_lowering_bit_exact(case):
    factory, shape = CASES[case]
    bit_exact_on_func(factory, shape)


def test_typed_attributes_and_batchnorm_folding():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model = Seq(nn.Conv2d(2, 4, 3, stride=(2, 1), padding=1), bn).eval()
    graph = sw.frontend.trace(model)
    (conv,) = [n for n in graph.nodes if n.op == "conv"]
    assert isinstance(conv.attrs, Conv)
    assert conv.attrs.stride == (2, 1) and conv.attrs.padding == (1, 1) and conv.attrs.groups == 1
    x = torch.randn(2, 2, 5, 5)
    folded = F.conv2d(x, conv.attrs.weight, conv.attrs.bias, (2, 1), 1)
    assert torch.allclose(folded, model(x), atol=1e-5)
    qmodel = sw.quantize(model, [x])
    q = qmodel.node(conv.name)
    assert isinstance(q.attrs, QConv) and q.attrs.w_q.dtype == torch.int8
    assert q.attrs.bias_q.dtype == torch.int32 and q.attrs.zp_in == qmodel.input_qparams.zero_point


@pytest.mark.parametrize("mod, message", [
    (nn.Conv2d(2, 2, 3, dilation=2), r"Conv2d at body.0: dilation=\(2, 2\) is not supported"),
    (nn.Conv2d(2, 2, 2, padding="same"), "Conv2d at body.0: padding='same' is not supported"),
    (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", dilation=3),
     r"Conv2d at body.0: dilation=\(3, 3\), padding_mode='reflect' are not supported"),
])
def test_unsupported_options(mod, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(Seq(mod), [torch.randn(2, 2, 8, 8)])


def _bn(n, seed=0):
    from sw.zoo import randomize_bn
    return randomize_bn(nn.BatchNorm2d(n), seed)


class PreActivation(nn.Module):
    """DenseNet's order: BatchNorm -> ReLU -> convolution, the BatchNorm after an activation."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = _bn(6)
        self.conv1 = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.conv1(torch.relu(self.norm(torch.relu(self.conv0(x)))))


def test_standalone_batchnorm_is_a_depthwise_1x1_conv():
    graph = sw.frontend.trace(PreActivation())
    (bn,) = [n for n in graph.nodes if n.name == "norm"]
    assert bn.op == "conv" and bn.attrs.groups == 6 and bn.attrs.weight.shape == (6, 1, 1, 1)
    y = torch.randn(4, 6, 5, 5)
    assert torch.allclose(sw.ops.get("conv").forward(bn, [y]), _bn(6).eval()(y), atol=1e-5)


@pytest.mark.parametrize("factory, shape", [
    (PreActivation, (3, 5, 5)),
    (lambda: Seq(_bn(3)), (3, 4, 4)),                       # a BatchNorm on the input itself
])
def test_standalone_batchnorm_bit_exact(factory, shape):
    bit_exact_on_func(factory, shape)


def test_batchnorm_without_running_statistics_is_refused():
    with pytest.raises(sw.UnsupportedOpError, match="track_running_stats=False"):
        sw.quantize(Seq(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.BatchNorm2d(2, track_running_stats=False)),
                    [torch.randn(2, 2, 4, 4)])


@pytest.mark.parametrize("factory, shape", [
    (lambda: Seq(nn.Conv2d(4100, 6, 1)), (4100, 2, 3)),
    (lambda: Seq(nn.Conv2d(2050, 4, 3, stride=2, padding=1), nn.ReLU()), (2050, 5, 4)),
])
def test_pixels_further_apart_than_x_stride(factory, shape):
    """Input pixels more than 4095 bytes apart (the 12-bit LOAD.x_stride): one LOAD per
    output row, its pixels as the LOAD's rows; bit-exact on tiny."""
    from hw import isa
    from .common import TINY
    torch.manual_seed(0)
    model = factory().eval()
    qmodel = sw.quantize(model, [torch.randn(2, *shape)])
    program = sw.compile(qmodel, TINY)
    cin, stride = shape[0], model.body[0].stride[1]
    loads = [i for i in program.instructions() if i.opcode is isa.Opcode.LOAD
             and i.mem == isa.Mem.SPAD and i.x_size == 1 and i.y_stride == stride * cin]
    assert loads
    bit_exact_on_func(factory, shape, configs=[TINY])
