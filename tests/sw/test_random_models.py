"""Random models (issue 13): property-based layer stacks within what the compiler supports,
quantized, compiled and run on ``func`` bit-exactly against the integer golden, a few
of them on ``rtl`` too.

Hypothesis draws the stack: convolutions (kernel, stride, padding, groups, channels),
BatchNorm, activations, max and average pooling, residual blocks, concatenation, then a
classifier head. The run is derandomized (the same examples every CI run, no example
database), so a failure reproduces with the same command; hypothesis prints the
shrunk failing model's description.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sw
from hw import NPUConfig

CONFIGS = {
    "tiny": NPUConfig.preset("tiny"),
    "3x5": NPUConfig.preset("tiny", rows=3, cols=5),
    "8x4-wide": NPUConfig.preset("tiny", rows=8, cols=4, dma_data_width=64),
}

#: Every generated model and the count of each layer kind, summed over the run (a test
#: at the end checks that the strategy really exercised each kind).
SEEN: dict[str, int] = {}


class Residual(nn.Module):
    """``relu(x + bn(conv(x)))`` with a same-shape convolution."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class Branches(nn.Module):
    """Two convolutions of the same input, concatenated along channels."""

    def __init__(self, c: int, a: int, b: int):
        super().__init__()
        self.left = nn.Conv2d(c, a, 1)
        self.right = nn.Conv2d(c, b, 3, padding=1)

    def forward(self, x):
        return torch.relu(torch.cat([self.left(x), self.right(x)], 1))


def _count(kind: str) -> None:
    SEEN[kind] = SEEN.get(kind, 0) + 1


@st.composite
def models(draw):
    """``(model, input shape, description)``: a random CNN that the compiler supports."""
    c = draw(st.integers(1, 6))
    h = w = draw(st.integers(5, 12))
    shape = (c, h, w)
    layers, desc = [], []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "depthwise", "pool", "residual", "cat"]))
        if kind in ("conv", "depthwise"):
            k = draw(st.sampled_from([1, 3, 5]))
            if k > h:
                k = 1
            stride = draw(st.integers(1, 2))
            pad = draw(st.integers(0, k // 2))
            if kind == "depthwise":
                groups, out = c, c * draw(st.integers(1, 2))
            else:
                groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
                out = groups * draw(st.integers(1, 8 // groups + 1))
            layers.append(nn.Conv2d(c, out, k, stride=stride, padding=pad, groups=groups,
                                    bias=draw(st.booleans())))
            desc.append(f"conv{k}x{k}/s{stride}p{pad}g{groups} {c}->{out}")
            if draw(st.booleans()):
                layers.append(nn.BatchNorm2d(out))
                desc.append("bn")
            act = draw(st.sampled_from(["relu", "relu6", "none"]))
            if act != "none":
                layers.append(nn.ReLU() if act == "relu" else nn.ReLU6())
                desc.append(act)
            c, h, w = out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        elif kind == "pool":
            if h < 2:
                continue
            k = draw(st.integers(2, min(3, h)))
            stride = draw(st.integers(1, k))
            op = draw(st.sampled_from(["max", "avg"]))
            layers.append((nn.MaxPool2d if op == "max" else nn.AvgPool2d)(k, stride))
            desc.append(f"{op}pool{k}/s{stride}")
            h, w = (h - k) // stride + 1, (w - k) // stride + 1
        elif kind == "residual":
            k = draw(st.sampled_from([1, 3]))
            layers.append(Residual(c, k))
            desc.append(f"residual{k}x{k} {c}")
        else:
            a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
            layers.append(Branches(c, a, b))
            desc.append(f"cat {c}->{a}+{b}")
            c = a + b
        _count(kind)
    head = draw(st.sampled_from(["gap", "flatten"]))
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        features = c
    else:
        layers.append(nn.Flatten())
        features = c * h * w
    layers.append(nn.Linear(features, draw(st.integers(1, 10))))
    desc.append(f"{head} linear {features}")
    model = nn.Sequential(*layers).eval()
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):   # statistics that keep activations alive
                module.running_mean.uniform_(-0.2, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
    return model, shape, " | ".join(desc)


def _check(model, shape, desc, config, backend, seed=0):
    gen = torch.Generator().manual_seed(seed)
    calibration = [torch.randn(4, *shape, generator=gen) for _ in range(2)]
    qmodel = sw.quantize(model, calibration)
    program = sw.compile(qmodel, config)
    x = torch.randn(2, *shape, generator=gen)
    y = sw.Device(config, backend=backend).run(program, x)
    expect = qmodel(x)
    assert y.shape == expect.shape, desc
    assert torch.equal(y, expect), f"{desc}: {int((y != expect).sum())} outputs differ"
    return program


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(models(), st.sampled_from(sorted(CONFIGS)))
def test_random_models_are_bit_exact_on_func(case, config_name):
    model, shape, desc = case
    program = _check(model, shape, desc, CONFIGS[config_name], "func")
    assert program.insn_count > 0


@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_random_models_are_bit_exact_on_rtl(case):
    model, shape, desc = case
    _check(model, shape, desc, CONFIGS["tiny"], "rtl")


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(models())
def test_the_strategy_draws_every_layer_kind(case):
    """Cheap (no compile): the models the strategy draws include each layer kind."""
    assert isinstance(case[0], nn.Sequential)


def test_every_layer_kind_was_drawn():
    """Runs after the property tests (file order): each kind was drawn at least once."""
    if not SEEN:
        test_the_strategy_draws_every_layer_kind()
    assert {"conv", "depthwise", "pool", "residual", "cat"} <= set(SEEN), SEEN
