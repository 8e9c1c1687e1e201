"""Every zoo model compiles and runs bit-exactly on the functional model."""
import pytest
import torch

import sw
from hw import NPUConfig
from sw import zoo

CASES = [
    ("mlp", None, NPUConfig.preset("small")),
    ("lenet5", None, NPUConfig.preset("tiny", cols=6)),
    ("resnet8", None, NPUConfig.preset("small")),
    ("mobilenetv2_small", None, NPUConfig.preset("tiny")),
    ("mobilenetv2", (3, 64, 64), NPUConfig()),
    ("resnet18", (3, 64, 64), NPUConfig()),
    ("resnet50", (3, 32, 32), NPUConfig()),
]


@pytest.mark.parametrize("name, shape, cfg", CASES, ids=[c[0] for c in CASES])
def test_zoo_model_bit_exact_on_func(name, shape, cfg):
    model, default_shape = zoo.build(name)
    shape = shape or default_shape
    gen = torch.Generator().manual_seed(1)
    qmodel = sw.quantize(model, [torch.randn(2, *shape, generator=gen)])
    program = sw.compile(qmodel, cfg)
    batch = int(torch.randint(1, 3, (1,), generator=gen))
    x = torch.randn(batch, *shape, generator=gen)
    y = sw.Device(cfg).run(program, x)
    assert y.shape[0] == batch
    assert torch.equal(y, qmodel(x))


def test_unknown_zoo_model():
    with pytest.raises(KeyError, match="the zoo has: mlp"):
        zoo.build("inception_v9")


# torchvision's families as torchvision writes them (sw.zoo_vision), at 64x64; the wide
# ones with a narrower classifier or fewer channels so that the suite stays fast (their
# full sizes: bench/zoo_vision.py).
VISION = {
    "alexnet": lambda v: v.AlexNet(hidden=64),
    "vgg11": lambda v: v.VGG("A", width=0.25, hidden=64),
    "squeezenet1_1": lambda v: v.SqueezeNet(),
    "googlenet": lambda v: v.GoogLeNet(width=0.25),
    "densenet121": lambda v: v.DenseNet(growth_rate=8, block_config=(2, 3, 4, 3), num_init_features=16),
    "mnasnet0_5": lambda v: v.MNASNet(0.5),
    "regnet_x_400mf": lambda v: v.RegNet(depths=(1, 1, 2, 2)),
    "shufflenet_v2_x0_5": lambda v: v.ShuffleNetV2(stages_repeats=(2, 2, 2)),
    "efficientnet_b0": lambda v: v.EfficientNet(stages=4),
    "mobilenet_v3_small": lambda v: v.MobileNetV3(blocks=5, last_channel=128),
}


@pytest.mark.parametrize("name", list(VISION))
def test_torchvision_family_bit_exact_on_func(name):
    from sw import zoo_vision
    torch.manual_seed(0)
    model = zoo.randomize_bn(VISION[name](zoo_vision))
    gen = torch.Generator().manual_seed(1)
    shape = (3, 64, 64)
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=gen)])
    cfg = NPUConfig()
    x = torch.randn(2, *shape, generator=gen)
    y = sw.Device(cfg).run(sw.compile(qmodel, cfg), x)
    assert torch.equal(y, qmodel(x))
    # What the float model computes, within quantization loss (a loose bound: the figure
    # itself is in bench/zoo_vision.py).
    assert torch.nn.functional.cosine_similarity(y.flatten(1), model(x).flatten(1), 1).min() > 0.9


def test_vision_families_are_in_the_zoo():
    for name in VISION:
        assert name in zoo.ZOO
