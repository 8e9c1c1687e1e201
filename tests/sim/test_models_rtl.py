"""Models on the RTL backend (Verilator, fast harness): bit-exact against the golden."""
import pytest
import torch

import sw
from hw import NPUConfig
from sw import zoo

from ..sw.test_compiler import LAYERS, build
from ..sw.test_host_ops import MODELS as HOST_MODELS
from ..sw.test_host_ops import host_sigmoid  # noqa: F401 - a fixture

TINY = NPUConfig.preset("tiny")
NONSQUARE = NPUConfig.preset("tiny", cols=6, dma_data_width=64)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_bit_exact_on_rtl(layer):
    _, qmodel, shape = build(layer)
    program = sw.compile(qmodel, TINY)
    device = sw.Device(TINY, backend="rtl")
    x = torch.randn(2, *shape)
    y = device.run(program, x)
    assert torch.equal(y, qmodel(x))
    stats = device.stats
    assert stats["cycles"] > 0
    assert stats["macs"] == 2 * sum(layer["mac_slots"] for layer in program.layers)


@pytest.mark.parametrize("name, cfg, batch", [("lenet5", TINY, 3), ("lenet5", NONSQUARE, 2),
                                              ("resnet8", TINY, 1)])
def test_zoo_model_bit_exact_on_rtl(name, cfg, batch):
    model, shape = zoo.build(name)
    gen = torch.Generator().manual_seed(7)
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)
    x = torch.randn(batch, *shape, generator=gen)
    device = sw.Device(cfg, backend="rtl")
    y = device.run(program, x)
    assert torch.equal(y, qmodel(x))
    # The hardware counters agree with the functional model's.
    func = sw.Device(cfg, backend="func")
    assert torch.equal(func.run(program, x), y)
    for key in ("macs", "dram_read_bytes", "dram_write_bytes", "insn_read_bytes"):
        assert device.stats[key] == func.stats[key], key
    assert 0 < device.stats["utilization"] <= 1
    # Cycles per layer: they add up to the CYCLES counter, every layer that computes
    # takes at least its MACs' worth of array cycles, and each layer's GEMMs run inside
    # its own span (so no layer is over 100 % utilized).
    stats = device.stats
    layers = stats["layers"]
    # (per-run averages of integer counts: equal up to float rounding)
    assert sum(layer["cycles"] for layer in layers) + stats["other_cycles"] == \
        pytest.approx(stats["cycles_per_run"], rel=1e-12)
    for layer in layers:
        if layer["macs"]:
            assert layer["cycles"] * cfg.macs >= layer["macs"], layer["name"]
            assert 0 < layer["utilization"] <= 1
    assert stats["other_cycles"] < 0.05 * stats["cycles_per_run"]


def test_rtl_refuses_program_for_another_config():
    _, qmodel, shape = build("linear_odd")
    program = sw.compile(qmodel, NONSQUARE)
    with pytest.raises(sw.DeviceError, match="compiled for configuration"):
        sw.Device(TINY, backend="rtl").run(program, torch.randn(*shape))


def test_host_ops_between_npu_segments_on_rtl(host_sigmoid):  # noqa: F811 - the fixture
    """The NPU segments of a program with host operators run on the RTL, the host
    operators between them; counters equal the functional model's."""
    factory, shape, _ = HOST_MODELS["layouts"]
    torch.manual_seed(0)
    qmodel = sw.quantize(factory(), [torch.randn(4, *shape)])
    program = sw.compile(qmodel, TINY)
    x = torch.randn(2, *shape)
    device = sw.Device(TINY, backend="rtl")
    assert torch.equal(device.run(program, x), qmodel(x))
    func = sw.Device(TINY)
    func.run(program, x)
    for key in ("macs", "dram_read_bytes", "dram_write_bytes", "insn_read_bytes"):
        assert device.stats[key] == func.stats[key], key
    assert [h["name"] for h in device.stats["host_ops"]] == program.host_ops
    assert device.stats["cycles"] > 0


class _Coverage(torch.nn.Module):
    """The operators of the torchvision families in one small model: ceil_mode pooling, a
    fire module (cat), a channel shuffle and a chunk, squeeze-and-excitation (a per-channel
    multiply by a sigmoid), a standalone BatchNorm, adaptive pooling to 2 x 2, a mean, a wide
    linear, and table activations (SiLU, Sigmoid, Hardswish)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        from sw.zoo_vision import Fire
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fire = Fire(8, 4, 6, 6)
        self.branch = nn.Conv2d(6, 6, 1)
        self.se1, self.se2 = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 1)
        self.norm = zoo.randomize_bn(nn.BatchNorm2d(12))
        self.adapt = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        from sw.zoo_vision import channel_shuffle
        F = torch.nn.functional
        x = self.fire(self.pool(F.silu(self.stem(x))))
        x = channel_shuffle(x, 2)
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), 1)
        s = torch.sigmoid(self.se2(torch.relu(self.se1(x.mean([2, 3], keepdim=True)))))
        x = F.hardswish(self.norm(torch.relu(s * x)))
        return self.head(self.adapt(x).mean([2, 3]))


def test_torchvision_operators_bit_exact_on_rtl():
    torch.manual_seed(0)
    model = _Coverage().eval()
    shape = (3, 9, 9)
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    ops = {n.op for n in qmodel.nodes}
    assert {"cat", "channels", "mul", "adaptive_avgpool", "maxpool", "gap", "silu", "sigmoid",
            "hardswish"} <= ops
    _rtl_equals_golden_and_func(qmodel, torch.randn(2, *shape))


def _rtl_equals_golden_and_func(qmodel, x):
    """``qmodel`` compiled for tiny, run on ``x`` on the RTL: bit-exact against the golden
    and the functional model, with the functional model's MACs and DRAM bytes."""
    program = sw.compile(qmodel, TINY)
    device = sw.Device(TINY, backend="rtl")
    y = device.run(program, x)
    assert torch.equal(y, qmodel(x))
    func = sw.Device(TINY)
    assert torch.equal(func.run(program, x), y)
    for key in ("macs", "dram_read_bytes", "dram_write_bytes"):
        assert device.stats[key] == func.stats[key], key


#: torchvision families on the RTL (tiny config, 32 x 32 input, fewer blocks): the table
#: activations, squeeze-and-excitation and the channel shuffle inside whole networks.
RTL_VISION = {
    "mobilenet_v3_small": lambda v: v.MobileNetV3(blocks=3, last_channel=32, num_classes=10),
    "shufflenet_v2_x0_5": lambda v: v.ShuffleNetV2(stages_repeats=(1, 1, 1), num_classes=10),
    "efficientnet_b0": lambda v: v.EfficientNet(stages=2, num_classes=10),
    # Fire modules' in-place concatenations, ceil_mode max pooling, full width.
    "squeezenet1_1": lambda v: v.SqueezeNet(num_classes=10),
    # Concatenations copied, pre-activation BatchNorm, the transition's average pooling.
    "densenet121": lambda v: v.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16,
                                        num_classes=10),
}


@pytest.mark.parametrize("name", list(RTL_VISION))
def test_torchvision_family_bit_exact_on_rtl(name):
    from sw import zoo_vision
    torch.manual_seed(0)
    model = zoo.randomize_bn(RTL_VISION[name](zoo_vision)).eval()
    shape = (3, 32, 32)
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    _rtl_equals_golden_and_func(qmodel, torch.randn(1, *shape))


class _Lowerings(torch.nn.Module):
    """What the compiler lowers in more than one way: average pooling with border windows
    of their own divisors (ceil_mode, count_include_pad=False), a channel shuffle folded
    through a depthwise convolution into a dense one, and a convolution whose input
    pixels are 4100 bytes apart (re-strided LOADs)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.wide = nn.Conv2d(8, 4100, 1)
        self.narrow = nn.Conv2d(4100, 6, 1)

    def forward(self, x):
        from sw.zoo_vision import channel_shuffle
        x = channel_shuffle(self.pool(torch.relu(self.stem(x))), 2)
        return self.narrow(torch.relu(self.wide(torch.relu(self.dw(x)))))


def test_compiler_lowerings_bit_exact_on_rtl():
    torch.manual_seed(0)
    model = _Lowerings().eval()
    shape = (3, 6, 5)
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    program = sw.compile(qmodel, TINY)
    assert not any(layer["op"] == "channels" for layer in program.layers)   # folded
    _rtl_equals_golden_and_func(qmodel, torch.randn(2, *shape))


def test_pooling_in_column_spans_bit_exact_on_rtl():
    """Max and adaptive pooling whose rows of windows (3 x 62, 4 x 60 pixels) are over
    tiny's accumulator: spans of output columns that fit, bit-exact on the RTL."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 5, 1), nn.MaxPool2d(3, 1, 1),
                          nn.AdaptiveAvgPool2d((2, 7))).eval()
    shape = (3, 8, 60)
    _rtl_equals_golden_and_func(sw.quantize(model, [torch.randn(4, *shape)]),
                                torch.randn(2, *shape))
