"""Persistent homology of training-loss landscapes and its link to generalization.

The pipeline runs :func:`random_plane` and :func:`loss_surface` to sample the loss
around a minimum, :func:`sublevel_persistence` to turn the samples into a
:class:`PersistenceDiagram`, :func:`total_persistence` to summarize the diagram,
and :func:`fit_gap` to regress the generalization gap on that summary across runs.
"""

from topology.generalization import LinearFit, fit_gap
from topology.landscape import LossSurface, loss_surface, random_plane
from topology.persistence import (
    PersistenceDiagram,
    bottleneck_distance,
    rips_persistence,
    sublevel_persistence,
    total_persistence,
    wasserstein_distance,
)

__all__ = [
    "LinearFit",
    "LossSurface",
    "PersistenceDiagram",
    "bottleneck_distance",
    "fit_gap",
    "loss_surface",
    "random_plane",
    "rips_persistence",
    "sublevel_persistence",
    "total_persistence",
    "wasserstein_distance",
]
