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
        zoo.build("alexnet")
