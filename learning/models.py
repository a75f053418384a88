"""Networks whose penultimate features the learning functor reads.

Each model is an `nn.Module` with two children: ``features`` (input to
penultimate features) and ``head`` (a linear classifier on the features).
The learning functor evaluates ``features`` by name through
`torch.func.functional_call`, so any module with a submodule of that name
can be used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from learning.config import ModelConfig


class FeatureClassifier(nn.Module):
    """A feature extractor followed by a linear head."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        logits: torch.Tensor = self.head(self.features(x))
        return logits


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], n_classes: int
) -> FeatureClassifier:
    """Build the network a config names, with PyTorch's default initialization.

    Seed the global generator (``torch.manual_seed``) before calling this to
    fix the initialization.
    """
    n_inputs = math.prod(input_shape)
    if config.kind == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        return FeatureClassifier(nn.Sequential(*layers), nn.Linear(width, n_classes))

    c = config.channels
    length = n_inputs
    for _ in range(2):
        length = (length + 1) // 2  # stride-2 convolutions with padding 1, kernel 3
    features = nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (1, n_inputs)),
        nn.Conv1d(1, c, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c * length, config.hidden),
        nn.ReLU(),
    )
    return FeatureClassifier(features, nn.Linear(config.hidden, n_classes))
