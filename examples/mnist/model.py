"""The classic MNIST CNN (the well-known Keras tutorial's architecture), in PyTorch.

Conv2d 32 3x3 ReLU -> MaxPool 2x2 -> Conv2d 64 3x3 ReLU -> MaxPool 2x2 -> Conv2d 64 3x3 ReLU
-> Flatten -> Linear 64 ReLU -> Linear 10 -> softmax.

Input: FP32 ``[N, 1, 28, 28]``, pixels scaled to [0, 1] (0 = background, 1 = ink).
``forward`` returns class probabilities (the softmax is part of the exported model);
``logits`` is the same network without the softmax, used for training with cross-entropy.

Convert the trained weights with::

    shipyard convert examples/mnist/model.py:factory --weights examples/mnist/build/weights.pt \\
        --name mnist --repo demo-repo --input input:FP32:-1,1,28,28
"""

from __future__ import annotations

import torch
from torch import nn


class MnistCNN(nn.Module):
    """The classic 3-conv MNIST classifier; ``forward`` outputs probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3),  # 28 -> 26
            nn.ReLU(),
            nn.MaxPool2d(2),  # 26 -> 13
            nn.Conv2d(32, 64, 3),  # 13 -> 11
            nn.ReLU(),
            nn.MaxPool2d(2),  # 11 -> 5
            nn.Conv2d(64, 64, 3),  # 5 -> 3
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalized class scores ``[N, 10]`` (train on these with cross-entropy)."""
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[N, 10]`` for images ``[N, 1, 28, 28]`` in [0, 1]."""
        return torch.softmax(self.logits(x), dim=-1)


def factory() -> nn.Module:
    """An untrained :class:`MnistCNN` (``shipyard convert ... --weights`` loads the state dict)."""
    return MnistCNN()
