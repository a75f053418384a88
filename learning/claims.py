"""Published claims that the main job tests, kept apart from every measured number.

These values are hypotheses from the literature. They appear in reports
only in fields and columns labelled as claimed, next to what the run
measured under its own setup.
"""

from __future__ import annotations

from typing import Any

SOURCE = "Tamim 2025, arXiv:2510.04376"

HOMOTOPY_WITHIN_POINTS = 0.5
"""Claimed: homotopic runs differ in test accuracy by at most this many points."""

HOMOTOPY_BETWEEN_POINTS = 3.0
"""Claimed: non-homotopic runs differ in test accuracy by more than this many points."""

HOMOTOPY_SETUP = "MNIST, 100 networks, 7 homotopy classes"

PERSISTENCE_R2 = 0.82
"""Claimed: R^2 of the generalization gap regressed on landscape persistence."""

PERSISTENCE_SETUP = "CIFAR-10, 50 ResNet-18 networks"


def claims_json() -> dict[str, Any]:
    """Return every claim with its source and setup, for results.json."""
    return {
        "source": SOURCE,
        "homotopy": {
            "within_class_gap_at_most_points": HOMOTOPY_WITHIN_POINTS,
            "between_class_gap_over_points": HOMOTOPY_BETWEEN_POINTS,
            "setup": HOMOTOPY_SETUP,
        },
        "persistence": {"r2": PERSISTENCE_R2, "setup": PERSISTENCE_SETUP},
    }
