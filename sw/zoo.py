"""Proxy workloads defined in the project (no torchvision needed).

Each factory returns an ``nn.Module`` in eval mode with random (seeded) weights
and BatchNorm statistics; :data:`ZOO` maps a name to its factory and default
input shape (one sample, PyTorch layout).
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["MLP", "LeNet5", "ResNet8", "ResNet18", "ResNet50", "MobileNetV2", "ZOO", "build",
           "randomize_bn"]


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so that folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                mod.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


class MLP(nn.Module):
    def __init__(self, in_features: int = 784, hidden: tuple[int, ...] = (256, 128),
                 classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 (padding 2 on the first convolution, as in the 32x32 original)."""

    def __init__(self, in_channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    """A residual block's projection shortcut (1x1 convolution and batch norm), when the
    block changes the shape; None for the identity."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.down(x) if self.down is not None else x
        return self.relu(out + identity)


class ResNet8(nn.Module):
    """CIFAR-style ResNet-8: a stem and three stages of one basic block (16, 32, 64)."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNet18(nn.Module):
    """ResNet-18 (ImageNet layout: 7x7/2 stem, 3x3/2 max pool, four stages of two blocks)."""

    def __init__(self, classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks = []
        cin = width
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(cin, w, stride), BasicBlock(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class Bottleneck(nn.Module):
    """ResNet-50's block: 1x1 reduce, 3x3 (stride here, as torchvision's v1.5), 1x1 expand x4."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.down(x) if self.down is not None else x
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (ImageNet layout: 7x7/2 stem, 3x3/2 max pool, bottleneck stages 3-4-6-3)."""

    def __init__(self, classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks = []
        cin = width
        for i, (n, w) in enumerate(zip((3, 4, 6, 3), (width, 2 * width, 4 * width, 8 * width))):
            for j in range(n):
                blocks.append(Bottleneck(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (inverted residual blocks, depthwise convolutions, ReLU6).

    ``width`` scales the channels (rounded to multiples of 8), ``stages`` limits how
    many of the seven block stages are built (all by default).
    """

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, classes: int = 1000, width: float = 1.0, stages: int = 7) -> None:
        super().__init__()

        def ch(c):
            return max(8, int(c * width + 4) // 8 * 8)
        cin = ch(32)
        layers: list[nn.Module] = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin),
                                   nn.ReLU6()]
        for t, c, n, s in self.SETTINGS[:stages]:
            cout = ch(c)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = ch(1280) if stages == 7 else 4 * cin
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


#: name -> (factory, input shape of one sample)
ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(), (784,)),
    "lenet5": (lambda: LeNet5(), (1, 28, 28)),
    "resnet8": (lambda: ResNet8(), (3, 32, 32)),
    "resnet18": (lambda: ResNet18(), (3, 224, 224)),
    "resnet50": (lambda: ResNet50(), (3, 224, 224)),
    "mobilenetv2": (lambda: MobileNetV2(), (3, 224, 224)),
    "mobilenetv2_small": (lambda: MobileNetV2(classes=10, width=0.35, stages=4), (3, 32, 32)),
    # torchvision's families (sw.zoo_vision), at their ImageNet input size.
    "alexnet": (lambda: _vision().AlexNet(), (3, 224, 224)),
    "vgg11": (lambda: _vision().VGG("A"), (3, 224, 224)),
    "squeezenet1_1": (lambda: _vision().SqueezeNet(), (3, 224, 224)),
    "googlenet": (lambda: _vision().GoogLeNet(), (3, 224, 224)),
    "densenet121": (lambda: _vision().DenseNet(), (3, 224, 224)),
    "mnasnet0_5": (lambda: _vision().MNASNet(0.5), (3, 224, 224)),
    "regnet_x_400mf": (lambda: _vision().RegNet(), (3, 224, 224)),
    "shufflenet_v2_x0_5": (lambda: _vision().ShuffleNetV2(), (3, 224, 224)),
    "efficientnet_b0": (lambda: _vision().EfficientNet(), (3, 224, 224)),
    "mobilenet_v3_small": (lambda: _vision().MobileNetV3(), (3, 224, 224)),
    # transformers (sw.zoo_transformer): hidden states [tokens, features] in, the same out.
    "bert_encoder": (lambda: _transformer().BertEncoder(), (16, 64)),
    "gpt2_decoder": (lambda: _transformer().GPT2Decoder(), (16, 64)),
}


def _transformer():
    from . import zoo_transformer
    return zoo_transformer


def _vision():
    from . import zoo_vision
    return zoo_vision


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A zoo model with seeded random weights (and BN statistics), and its input shape."""
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    torch.manual_seed(seed)
    factory, shape = ZOO[name]
    return randomize_bn(factory(), seed), shape


def load(spec: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...] | None]:
    """A model as the CLIs name it: a zoo name (with its input shape) or ``module:attr``
    naming an ``nn.Module`` instance or a function returning one (shape ``None``).

    Raises ValueError naming what is wrong (unknown name, import failure, not a module).
    """
    if spec in ZOO:
        return build(spec, seed)
    if ":" not in spec:
        raise ValueError(f"model {spec!r} is neither a zoo name ({', '.join(ZOO)}) "
                         f"nor module:attr")
    mod_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {mod_name!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {mod_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, nn.Module) and callable(obj):
        obj = obj()
    if not isinstance(obj, nn.Module):
        raise ValueError(f"{spec} is not an nn.Module (or a function returning one)")
    return obj.eval(), None
