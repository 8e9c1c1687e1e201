"""Real data: scikit-learn's bundled handwritten digits (8x8, 10 classes, no download).

``train_digits_cnn()`` trains a small CNN in a few seconds on the CPU and returns
the model with the train/test split; ``evaluate()`` reports float and int8
accuracy and whether the NPU output equals the golden on the test set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


import torch
import torch.nn as nn

__all__ = ["DigitsCNN", "load", "train_digits_cnn", "DigitsData", "accuracy"]


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass
class DigitsData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load(seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """The 1797 digits as [N, 1, 8, 8] floats in [0, 1], split reproducibly."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return DigitsData(x[train], y[train], x[test], y[test])


def train_digits_cnn(data: DigitsData | None = None, *, epochs: int = 15, seed: int = 0,
                     verbose: bool = False) -> tuple[DigitsCNN, DigitsData]:
    """Train :class:`DigitsCNN` (Adam, a few seconds on 2 cores)."""
    data = data or load(seed)
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(data.x_train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
        if verbose:
            print(f"  epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}")
    model.eval()
    if verbose:
        print(f"  trained in {time.perf_counter() - t0:.1f} s")
    return model, data


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())



