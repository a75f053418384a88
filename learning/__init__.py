"""Param, Rep and the learning functor L, training with recorded trajectories,
and the main job's experiments."""

from learning.config import ExperimentConfig, preset
from learning.experiment import reproduce
from learning.functor import LearningFunctor
from learning.param import ParamCategory, ParamLayout, ParamPoint, Trajectory
from learning.rep import RepCategory, RepPath, Representation

__all__ = [
    "ExperimentConfig",
    "LearningFunctor",
    "ParamCategory",
    "ParamLayout",
    "ParamPoint",
    "RepCategory",
    "RepPath",
    "Representation",
    "Trajectory",
    "preset",
    "reproduce",
]
