"""The learning functor L: Param -> Rep.

L sends a parameter point to the penultimate features its network computes
on a fixed probe set, and a trajectory to the features at each of its
checkpoints, keeping the steps as times. Features come from the submodule
named ``feature_module`` (``"features"`` for the models of `learning.models`)
evaluated with `torch.func.functional_call` in eval mode, a whole trajectory
at a time. A network with BatchNorm is normalized with the running
statistics stored with each point or checkpoint. A point stored without
buffers uses those of the module given to the constructor.
"""

from __future__ import annotations

import torch
from torch import nn

from categories import Functor
from learning.evaluate import StackedEvaluator
from learning.param import ParamCategory, ParamLayout, ParamPoint, Trajectory
from learning.rep import RepCategory, RepPath, Representation


class LearningFunctor(Functor[ParamPoint, Trajectory, Representation, RepPath]):
    """L: Param -> Rep for one architecture and one probe set."""

    name = "L"

    def __init__(
        self,
        module: nn.Module,
        probe: torch.Tensor,
        device: torch.device,
        feature_module: str = "features",
        rep: RepCategory | None = None,
    ) -> None:
        try:
            module.get_submodule(feature_module)
        except AttributeError:
            raise ValueError(
                f"module {type(module).__name__} has no submodule {feature_module!r};"
                " pass feature_module= naming the layer whose output is the feature"
            ) from None
        self.evaluator = StackedEvaluator(module, device)
        self.probe = probe
        self.feature_module = feature_module
        self._source = ParamCategory(ParamLayout.of(module))
        self._target = rep if rep is not None else RepCategory()

    @property
    def source(self) -> ParamCategory:
        """Param for the module's architecture."""
        return self._source

    @property
    def target(self) -> RepCategory:
        """Rep on the probe set."""
        return self._target

    def map_object(self, x: ParamPoint) -> Representation:
        """Return the features and logits of the network at `x` on the probe set."""
        buffers = None if x.buffers is None else x.buffers.reshape(1, -1)
        points = x.vector.reshape(1, -1)
        features = self.evaluator.outputs(
            points, self.probe, self.feature_module, buffers
        )
        logits = self.evaluator.outputs(points, self.probe, None, buffers)
        return Representation(features[0].flatten(1), logits[0].flatten(1))

    def map_morphism(self, f: Trajectory) -> RepPath:
        """Return features and logits at every checkpoint of `f`, steps as times."""
        features = self.evaluator.outputs(
            f.points, self.probe, self.feature_module, f.buffers
        )
        logits = self.evaluator.outputs(f.points, self.probe, None, f.buffers)
        return RepPath(f.steps, features.flatten(2), logits.flatten(2))
