"""Evaluate one architecture at many parameter points at once.

`StackedEvaluator` wraps a module and its `ParamLayout`. Given flat parameter
vectors of shape (B, size), it returns logits, losses, accuracies or the
output of a named submodule at every point. It calls
`torch.func.functional_call` under `torch.func.vmap`, and processes points
and examples in chunks so that memory stays bounded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from learning.config import ConfigError
from learning.param import ParamLayout


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device a config names: 'auto' is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a torch device; use 'auto', 'cpu' or 'cuda:0'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested, but CUDA is not available; use 'cpu' or 'auto'"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA"
            " device(s) exist; use 'cuda:0'"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {name!r} requested, but MPS is not available; use 'cpu'"
        )
    return device


class StackedEvaluator:
    """Evaluate a module, or one of its submodules, at stacked parameter points."""

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        point_chunk: int = 32,
        example_chunk: int = 4096,
    ) -> None:
        self.layout = ParamLayout.of(module)
        self.module = copy.deepcopy(module).to(device).eval()
        self.device = device
        self.point_chunk = point_chunk
        self.example_chunk = example_chunk

    def _apply(
        self, submodule: str | None, points: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """Return submodule(x) for each point, shape (B, n, ...)."""
        target = (
            self.module if submodule is None else self.module.get_submodule(submodule)
        )
        prefix = "" if submodule is None else submodule + "."

        def one_point(
            params: dict[str, torch.Tensor], inputs: torch.Tensor
        ) -> torch.Tensor:
            own = {
                k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)
            }
            out: torch.Tensor = functional_call(target, own, (inputs,))
            return out

        params = self.layout.unflatten(points)
        batched: Callable[..., torch.Tensor] = vmap(one_point, in_dims=(0, None))
        return batched(params, x)

    @torch.no_grad()
    def outputs(
        self, points: torch.Tensor, x: torch.Tensor, submodule: str | None = None
    ) -> torch.Tensor:
        """Return the module's (or a submodule's) outputs, (B, n, ...), on the CPU."""
        results = []
        for start in range(0, points.shape[0], self.point_chunk):
            chunk = points[start : start + self.point_chunk].to(self.device)
            parts = [
                self._apply(
                    submodule, chunk, x[i : i + self.example_chunk].to(self.device)
                )
                for i in range(0, x.shape[0], self.example_chunk)
            ]
            results.append(torch.cat(parts, dim=1).cpu())
        return torch.cat(results)

    @torch.no_grad()
    def loss_and_accuracy(
        self, points: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return mean cross-entropy (nats) and accuracy at each point, both (B,)."""
        losses, correct = [], []
        for start in range(0, points.shape[0], self.point_chunk):
            chunk = points[start : start + self.point_chunk].to(self.device)
            loss_sum = torch.zeros(
                chunk.shape[0], device=self.device, dtype=torch.float64
            )
            hits = torch.zeros(chunk.shape[0], device=self.device, dtype=torch.float64)
            for i in range(0, x.shape[0], self.example_chunk):
                xs = x[i : i + self.example_chunk].to(self.device)
                ys = y[i : i + self.example_chunk].to(self.device)
                logits = self._apply(None, chunk, xs)
                per_example = nn.functional.cross_entropy(
                    logits.flatten(0, 1), ys.repeat(chunk.shape[0]), reduction="none"
                ).view(chunk.shape[0], -1)
                loss_sum += per_example.double().sum(dim=1)
                hits += (logits.argmax(dim=-1) == ys).double().sum(dim=1)
            losses.append((loss_sum / x.shape[0]).cpu())
            correct.append((hits / x.shape[0]).cpu())
        return torch.cat(losses), torch.cat(correct)

    def loss_fn(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """Return a function from stacked named parameters (B, ...) to losses (B,)."""
        names = self.layout.names

        def losses(params: dict[str, torch.Tensor]) -> torch.Tensor:
            flat = torch.cat([params[n].flatten(1) for n in names], dim=1)
            loss, _ = self.loss_and_accuracy(flat, x, y)
            return loss

        return losses
