"""Real MACs of convolution and linear layers: ours against ptflops and thop, every zoo model.

Both tools count a MAC of a convolution or a linear layer as one "FLOP" (their
name for a MAC); their totals also include batch norms, activations and pooling,
which we do not count as MACs, so the comparison is per convolution and linear
layer, recorded by wrapping each tool's own counting hook. thop counts exactly
our MACs; ptflops adds one for each output element of a layer with a bias (the
bias addition), which we and thop leave out.
"""
import ptflops      # the test extra (make test installs it)
import pytest
import thop
import torch
import torch.nn as nn

from sw import zoo
from sw.analysis.workload import count_modules

SIZES = {"resnet18": 112, "resnet50": 64, "mobilenetv2": 96}   # smaller images: faster
SIZES.update({name: 64 for name in ("alexnet", "vgg11", "squeezenet1_1", "googlenet", "densenet121",
                                    "mnasnet0_5", "regnet_x_400mf", "shufflenet_v2_x0_5",
                                    "efficientnet_b0", "mobilenet_v3_small")})


def _ptflops_per_layer(model, shape):
    from ptflops.pytorch_engine import MODULES_MAPPING
    seen = {}

    def wrap(kind):
        base = MODULES_MAPPING[kind]

        def hook(module, inputs, output):
            before = module.__flops__
            base(module, inputs, output)
            seen[module] = seen.get(module, 0) + module.__flops__ - before
        return hook
    ptflops.get_model_complexity_info(
        model, shape, as_strings=False, print_per_layer_stat=False,
        custom_modules_hooks={nn.Conv2d: wrap(nn.Conv2d), nn.Linear: wrap(nn.Linear)})
    return seen


def _thop_per_layer(model, x):
    from thop.vision.basic_hooks import count_convNd, count_linear
    seen = {}

    def wrap(base):
        def hook(module, inputs, output):
            before = int(module.total_ops)
            base(module, inputs, output)
            seen[module] = seen.get(module, 0) + int(module.total_ops) - before
        return hook
    thop.profile(model, inputs=(x,), verbose=False,
                 custom_ops={nn.Conv2d: wrap(count_convNd), nn.Linear: wrap(count_linear)})
    return seen


@pytest.mark.parametrize("name", [n for n in zoo.ZOO])
def test_conv_and_linear_macs_agree_with_ptflops_and_thop(name):
    model, shape = zoo.build(name)
    if name in SIZES:
        shape = (shape[0], SIZES[name], SIZES[name])
    x = torch.randn(1, *shape)
    ours, _, _ = count_modules(model, (x,))
    mine = {m: w.macs for m, w in ours.items() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert mine and all(v > 0 for v in mine.values())
    assert _thop_per_layer(model, x) == mine
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.__setitem__(m, o.numel()))
             for m in mine]
    model(x)
    for h in hooks:
        h.remove()
    bias_adds = {m: (outputs[m] if m.bias is not None else 0) for m in mine}
    assert _ptflops_per_layer(model, shape) == {m: v + bias_adds[m] for m, v in mine.items()}


def test_resnet18_at_224_is_the_published_figure():
    model, shape = zoo.build("resnet18")
    ours, _, _ = count_modules(model, (torch.randn(1, *shape),))
    assert sum(w.macs for w in ours.values()) == 1_814_073_344     # 1.81 G MACs


@pytest.mark.parametrize("name", ["lenet5", "resnet8", "mobilenetv2_small"])
def test_the_analysis_real_macs_agree_with_thop(name):
    """What ``sw.analyze`` reports per layer (the compiler's real MACs, BatchNorm folded)
    is thop's count of the same module; the MAC slots are at least as many."""
    import sw
    from hw import NPUConfig
    from sw.analysis.metrics import analyze_program
    model, shape = zoo.build(name)
    if name in SIZES:
        shape = (shape[0], SIZES[name], SIZES[name])
    x = torch.randn(1, *shape)
    theirs = {mod_name: ops for mod, ops in _thop_per_layer(model, x).items()
              for mod_name, m in model.named_modules() if m is mod}
    qmodel = sw.quantize(model, [torch.randn(2, *shape)])
    program = sw.compile(qmodel, NPUConfig.preset("default"))
    a = analyze_program(qmodel, program, None, name=name)
    gemm = {m.name: m for m in a.layers if m.op_class == "gemm"}
    where = {layer["name"]: layer["where"] for layer in program.layers}
    assert len(gemm) == len(theirs)
    for m in gemm.values():
        assert m.macs == theirs[where[m.name].split("+")[0]], m.name   # "conv+bn"
        assert m.mac_slots >= m.macs and m.flops == 2 * m.macs
    assert a.total.macs == sum(theirs.values())
