"""The main job's analyses, each a stage from stored runs to a JSON-ready dict.

- `check_functor_laws`: L's functor laws (and Param's and Rep's category
  laws) on segments of the recorded trajectories;
- `analyze_homotopy`: barriers, homotopy classes, class accuracies with
  intervals, within- and between-class gaps, beside the claimed ones, and
  optionally the same after weight matching (classes modulo permutations);
- `analyze_landscapes`: persistent homology of the loss on a random plane
  around each network, and the fit of the generalization gap on it.

Diverged runs are left out of every analysis that needs a finite network,
and each analysis reports how many it left out.
"""

from __future__ import annotations

import itertools
import logging
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import topology
from categories import LawReport, category_law_failures
from categories.functor import functor_law_failures
from learning import claims
from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.evaluate import StackedEvaluator
from learning.fisher import NonFiniteError, fisher_length
from learning.functor import LearningFunctor
from learning.homotopy import class_labels, homotopy_classes, loss_barriers
from learning.laws import check_learning_functor
from learning.matching import (
    PermutationSpec,
    PermutationSpecError,
    permutation_spec,
    weight_matching,
)
from learning.param import ParamLayout, Trajectory
from learning.stats import paired_difference_interval, wilson_interval
from learning.store import read_array_cache, write_array_cache
from learning.training import RunResult, initial_model

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

DRAWN_LAW_EXAMPLES = 100
"""Composable pairs of recorded sub-trajectories Hypothesis draws to check L."""


def finite_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """Return the runs that completed with finite metrics."""
    return [r for r in runs if r.status == "complete"]


# ---------------------------------------------------------------- functor laws


def check_functor_laws(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check L's laws on consecutive segments of every recorded trajectory.

    Each trajectory is cut at checkpoints into ``config.functor_segments``
    segments s_1, ..., s_k. Checked: L(id_x) = id_{L(x)} at every cut point;
    domains and codomains of every L(s_i); L(s_i;s_{i+1}) = L(s_i);L(s_{i+1})
    and L((s_1;...;s_i);s_{i+1}) = L(s_1;...;s_i);L(s_{i+1}). Param's and
    Rep's own category laws are checked on the same segments and images.
    Then the core's property-based checker draws composable pairs of
    sub-trajectories of the recorded runs and checks L's laws on them.
    """
    functor = LearningFunctor(initial_model(config, dataset, 0), dataset.probe, device)
    param, rep = functor.source, functor.target
    checked_runs = [r for r in runs if len(r.trajectory.steps) >= 3]

    reports: dict[str, list[LawReport]] = {"functor": [], "param": [], "rep": []}
    segment_counts: list[int] = []
    for done, run in enumerate(checked_runs, start=1):
        # A trajectory with c checkpoints has at most c - 1 segments.
        segments = run.trajectory.split(
            min(config.functor_segments, len(run.trajectory.steps) - 1)
        )
        segment_counts.append(len(segments))
        objects = [s.start for s in segments] + [segments[-1].end]
        pairs = [(a, b) for a, b in itertools.pairwise(segments)]
        prefix = segments[0]
        for nxt in segments[1:]:
            pairs.append((prefix, nxt))
            prefix = param.compose(prefix, nxt)
        morphisms: list[Trajectory] = list(segments) + [prefix]
        triples = [(a, b, c) for a, b, c in zip(segments, segments[1:], segments[2:])]

        reports["functor"].append(
            functor_law_failures(functor, objects, morphisms, pairs)
        )
        reports["param"].append(
            category_law_failures(
                param, objects, morphisms, pairs=pairs, triples=triples
            )
        )
        images = [functor.map_morphism(s) for s in segments]
        image_pairs = list(itertools.pairwise(images))
        image_triples = list(zip(images, images[1:], images[2:]))
        rep_objects = [functor.map_object(x) for x in objects]
        reports["rep"].append(
            category_law_failures(rep, rep_objects, images, image_pairs, image_triples)
        )
        if progress is not None:
            progress(done, len(checked_runs))

    summary: dict[str, Any] = {
        "runs_checked": len(checked_runs),
        "runs_skipped": len(runs) - len(checked_runs),
        "segments_requested": config.functor_segments,
        "segments_per_run": segment_counts,
        "rep_tolerance": {"rtol": rep.rtol, "atol": rep.atol},
        "probe_size": int(dataset.probe.shape[0]),
    }
    for part, part_reports in reports.items():
        laws: dict[str, dict[str, int]] = {}
        failures: list[str] = []
        for report in part_reports:
            for law, counts in report.summary().items():
                entry = laws.setdefault(law, {"checked": 0, "failed": 0})
                entry["checked"] += counts["checked"]
                entry["failed"] += counts["failed"]
            failures += [str(f) for f in report.failures]
        summary[part] = {"laws": laws, "ok": not failures, "failures": failures[:20]}
    if checked_runs:
        drawn = check_learning_functor(
            functor, [r.trajectory for r in checked_runs], DRAWN_LAW_EXAMPLES
        )
        summary["drawn"] = {
            "examples": DRAWN_LAW_EXAMPLES,
            "laws": drawn.summary(),
            "ok": drawn.ok,
            "failures": [str(f) for f in drawn.failures[:20]],
        }
        reports["drawn"] = [drawn]
    summary["ok"] = all(summary[p]["ok"] for p in reports)
    return summary


# ---------------------------------------------------------------- homotopy


def analyze_homotopy(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    cache_dir: Path,
    progress: Progress | None = None,
    aligned_progress: Progress | None = None,
) -> dict[str, Any]:
    """Compute barriers and homotopy classes, and compare class accuracies.

    With ``config.homotopy.align_permutations`` the same is done with the
    barriers after weight matching, reported under ``modulo_permutations``,
    with `aligned_progress` called as pairs are done.
    """
    usable = finite_runs(runs)
    excluded = [r.name for r in runs if r.status != "complete"]
    result: dict[str, Any] = {
        "definition": (
            "barrier(a, b) = max over alpha of l((1-alpha)a + alpha b)"
            " - ((1-alpha) l(a) + alpha l(b)), l = training cross-entropy (nats) on the"
            " training set, straight line, alpha on an even grid with both ends;"
            " pairs with barrier <= tau are joined; classes are connected components"
            + _batchnorm_convention(config)
        ),
        "tau": config.homotopy.tau,
        "n_alpha": config.homotopy.n_alpha,
        "runs": [r.name for r in usable],
        "excluded_runs": excluded,
    }
    if len(usable) < 2:
        result["status"] = f"not computed: {len(usable)} finite run(s), need at least 2"
        return result

    barriers = _cached_barriers(config, dataset, usable, device, cache_dir, progress)
    accuracies = np.array([r.test_accuracy for r in usable], dtype=float)
    labels_test = dataset.y_test.numpy()
    correct = np.stack([np.asarray(r.test_predictions) == labels_test for r in usable])

    result.update(
        _class_summary(config, dataset, usable, barriers, accuracies, correct)
    )
    if config.homotopy.align_permutations:
        result["modulo_permutations"] = _aligned_classes(
            config,
            dataset,
            usable,
            device,
            cache_dir,
            accuracies,
            correct,
            aligned_progress,
        )
    return result


def _aligned_classes(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    cache_dir: Path,
    accuracies: np.ndarray,
    correct: np.ndarray,
    progress: Progress | None,
) -> dict[str, Any]:
    """Compute the barriers after weight matching, and the classes and gaps they give."""
    result: dict[str, Any] = {
        "definition": (
            "For each pair a, b (a the earlier run), b's hidden units are permuted"
            " to bring it closest to a in Euclidean distance (weight matching,"
            " learning.matching), which leaves b's function unchanged; the barrier"
            " is then that of the line from a to the permuted b"
        ),
    }
    model = initial_model(config, dataset, 0)
    try:
        spec = permutation_spec(model)
    except PermutationSpecError as error:
        result["status"] = f"not computed: {error}"
        return result
    barriers, distances = _cached_aligned_barriers(
        config, dataset, runs, device, cache_dir, spec, progress
    )
    upper = np.triu_indices(len(runs), k=1)
    result.update(
        distance_before=distances[0].tolist(),
        distance_after=distances[1].tolist(),
        mean_distance_ratio=float(np.mean(distances[1][upper] / distances[0][upper])),
    )
    result.update(_class_summary(config, dataset, runs, barriers, accuracies, correct))
    return result


def _class_summary(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    barriers: np.ndarray,
    accuracies: np.ndarray,
    correct: np.ndarray,
) -> dict[str, Any]:
    """Return the classes a barrier matrix gives at tau, their accuracies and gaps."""
    tau = config.homotopy.tau
    classes = homotopy_classes(barriers, tau)
    labels = class_labels(classes, len(runs))
    n_test = len(dataset.y_test)
    gaps = accuracy_gaps(accuracies, labels, correct)
    return {
        "status": "computed",
        "barriers": barriers.tolist(),
        "classes": [[runs[i].name for i in members] for members in classes],
        "class_of_run": {r.name: int(labels[i]) for i, r in enumerate(runs)},
        "class_stats": [
            _class_stats(accuracies[members], n_test) for members in classes
        ],
        "gaps": gaps,
        "tau_sweep": [
            _sweep_entry(barriers, t, accuracies, correct)
            for t in sorted(set(config.homotopy.tau_sweep) | {tau})
        ],
        "claims": _homotopy_verdicts(gaps),
    }


def _cached_aligned_barriers(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    cache_dir: Path,
    spec: PermutationSpec,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the aligned barriers (n, n) and the distances before and after (2, n, n)."""
    key = {
        **_barrier_key(config, runs),
        "aligned": "weight matching, seed 0, 100 passes at most",
    }
    path = cache_dir / "aligned_barriers.npz"
    cached = read_array_cache(path, repr(key))
    if cached is not None and cached.shape == (3, len(runs), len(runs)):
        logger.info("reusing aligned barriers from %s", path)
        return cached[0], cached[1:]

    evaluator = StackedEvaluator(initial_model(config, dataset, 0), device)
    ends = [r.trajectory.end for r in runs]
    n = len(runs)
    table = np.zeros((3, n, n))
    pairs = list(itertools.combinations(range(n), 2))
    for done, (i, j) in enumerate(pairs, start=1):
        matching = weight_matching(spec, ends[i], ends[j], seed=0)
        matched = matching.matched
        points = torch.stack([ends[i].vector.cpu(), matched.vector.cpu()])
        own, other = ends[i].buffers, matched.buffers
        buffers = None
        if own is not None and other is not None:
            buffers = torch.stack([own.cpu(), other.cpu()])
        buffers = _end_statistics(config, dataset, evaluator, points, buffers)
        line = loss_barriers(
            evaluator,
            points,
            dataset.x_train,
            dataset.y_train,
            config.homotopy.n_alpha,
            buffers=buffers,
            bn_statistics=config.homotopy.bn_statistics,
        )
        table[0, i, j] = table[0, j, i] = line.barriers[0, 1]
        table[1, i, j] = table[1, j, i] = matching.distance_before
        table[2, i, j] = table[2, j, i] = matching.distance_after
        if progress is not None:
            progress(done, len(pairs))
    write_array_cache(path, repr(key), table)
    return table[0], table[1:]


def _cached_barriers(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    cache_dir: Path,
    progress: Progress | None,
) -> np.ndarray:
    key = _barrier_key(config, runs)
    path = cache_dir / "barriers.npz"
    cached = read_array_cache(path, repr(key))
    if cached is not None:
        logger.info("reusing barriers from %s", path)
        return cached

    evaluator = StackedEvaluator(initial_model(config, dataset, 0), device)
    points = torch.stack([r.final_point for r in runs])
    buffers = _end_statistics(
        config, dataset, evaluator, points, _final_buffers(evaluator, runs)
    )
    matrix = loss_barriers(
        evaluator,
        points,
        dataset.x_train,
        dataset.y_train,
        config.homotopy.n_alpha,
        progress,
        buffers=buffers,
        bn_statistics=config.homotopy.bn_statistics,
    )
    write_array_cache(path, repr(key), matrix.barriers)
    return matrix.barriers


def _barrier_key(config: ExperimentConfig, runs: Sequence[RunResult]) -> dict[str, Any]:
    """Return what a cached barrier matrix depends on."""
    return {
        "runs": [r.name for r in runs],
        "points": [r.trajectory.end.digest for r in runs],
        "data": config.data.model_dump(mode="json"),
        "n_alpha": config.homotopy.n_alpha,
        "bn_statistics": config.homotopy.bn_statistics,
        "endpoint_statistics": config.homotopy.endpoint_statistics,
    }


def _batchnorm_convention(config: ExperimentConfig) -> str:
    """Describe how points on a line get BatchNorm statistics, if there is BatchNorm."""
    if not config.model.has_batch_norm:
        return ""
    h = config.homotopy
    interior = (
        "recomputed on the training set"
        if h.bn_statistics == "recompute"
        else "interpolated between the ends'"
    )
    ends = (
        "recomputed too"
        if h.endpoint_statistics == "recompute"
        else "the networks' stored running averages"
    )
    return f"; BatchNorm statistics at interior points {interior}, at the ends {ends}"


def _end_statistics(
    config: ExperimentConfig,
    dataset: Dataset,
    evaluator: StackedEvaluator,
    points: torch.Tensor,
    buffers: torch.Tensor | None,
) -> torch.Tensor | None:
    """Return the buffers the ends of barrier lines use (see HomotopyConfig)."""
    if buffers is None or config.homotopy.endpoint_statistics == "stored":
        return buffers
    batches = max(1, math.ceil(dataset.x_train.shape[0] / evaluator.example_chunk))
    return evaluator.recompute_buffers(points, dataset.x_train, batches, buffers)


def _final_buffers(
    evaluator: StackedEvaluator, runs: Sequence[RunResult]
) -> torch.Tensor | None:
    """Return the runs' final BatchNorm statistics, stacked, or None without BatchNorm."""
    if evaluator.layout.buffer_size == 0:
        return None
    missing = [r.name for r in runs if r.trajectory.buffers is None]
    if missing:
        raise ValueError(
            f"runs {missing} have BatchNorm but no stored statistics; delete"
            " their folders under runs/ to retrain them"
        )
    return torch.stack([r.trajectory.buffers[-1] for r in runs])  # type: ignore[index]


def _class_stats(accuracies: np.ndarray, n_test: int) -> dict[str, Any]:
    mean = float(accuracies.mean())
    std = float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0
    interval = wilson_interval(round(mean * n_test), n_test)
    return {
        "size": len(accuracies),
        "test_accuracy_mean": mean,
        "test_accuracy_std": std,
        "test_accuracy_ci95": interval.to_json(),
        "ci_note": (
            "Wilson interval of the mean accuracy on the n_test shared test"
            " examples: the test-set sampling noise, not the spread across runs"
        ),
    }


def accuracy_gaps(
    accuracies: np.ndarray, labels: np.ndarray, correct: np.ndarray
) -> dict[str, Any]:
    """Summarize |accuracy difference| over pairs in the same class and in different ones.

    Gaps are in percentage points. Each pair's 95% half-width comes from the
    paired interval on the shared test set. The median over pairs shows
    which gaps the test set can resolve.
    """
    within: list[tuple[float, float]] = []
    between: list[tuple[float, float]] = []
    n = len(accuracies)
    for i in range(n):
        for j in range(i + 1, n):
            diff, interval = paired_difference_interval(correct[i], correct[j])
            entry = (100 * abs(diff), 100 * (interval.high - interval.low) / 2)
            (within if labels[i] == labels[j] else between).append(entry)
    return {
        "within_class": _gap_summary(within),
        "between_class": _gap_summary(between),
    }


def _gap_summary(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    if not pairs:
        return {"pairs": 0}
    gaps = np.array([g for g, _ in pairs])
    half_widths = np.array([h for _, h in pairs])
    return {
        "pairs": len(pairs),
        "mean_points": float(gaps.mean()),
        "min_points": float(gaps.min()),
        "max_points": float(gaps.max()),
        "median_ci95_half_width_points": float(np.median(half_widths)),
    }


def _sweep_entry(
    barriers: np.ndarray, tau: float, accuracies: np.ndarray, correct: np.ndarray
) -> dict[str, Any]:
    classes = homotopy_classes(barriers, tau)
    labels = class_labels(classes, len(accuracies))
    gaps = accuracy_gaps(accuracies, labels, correct)
    return {
        "tau": tau,
        "n_classes": len(classes),
        "class_sizes": [len(c) for c in classes],
        "within_class_mean_points": gaps["within_class"].get("mean_points"),
        "between_class_mean_points": gaps["between_class"].get("mean_points"),
    }


def _verdict(summary: dict[str, Any], bound: float, below: bool, empty: str) -> str:
    """Compare a mean gap with a claimed bound, allowing for test-set resolution.

    A mean closer to the bound than the median 95% half-width of one pair's
    gap is reported as unresolved: the test set cannot tell the two apart.
    """
    if summary["pairs"] == 0:
        return f"not testable: {empty}"
    mean, resolution = summary["mean_points"], summary["median_ci95_half_width_points"]
    if abs(mean - bound) <= resolution:
        return (
            f"unresolved: the mean gap {mean:.2f} is within this test set's"
            f" resolution (+-{resolution:.2f} points) of the claimed bound {bound}"
        )
    holds = mean <= bound if below else mean > bound
    relation = "at most" if below else "over"
    if holds:
        return f"consistent: the mean gap {mean:.2f} is {relation} {bound} points"
    return f"not consistent: the mean gap {mean:.2f} is not {relation} {bound} points"


def _homotopy_verdicts(gaps: dict[str, Any]) -> dict[str, Any]:
    within, between = gaps["within_class"], gaps["between_class"]
    return {
        "source": claims.SOURCE,
        "setup_claimed": claims.HOMOTOPY_SETUP,
        "within_class": {
            "claimed_at_most_points": claims.HOMOTOPY_WITHIN_POINTS,
            "measured_mean_points": within.get("mean_points"),
            "verdict": _verdict(
                within,
                claims.HOMOTOPY_WITHIN_POINTS,
                below=True,
                empty="no homotopy class has two runs",
            ),
        },
        "between_class": {
            "claimed_over_points": claims.HOMOTOPY_BETWEEN_POINTS,
            "measured_mean_points": between.get("mean_points"),
            "verdict": _verdict(
                between,
                claims.HOMOTOPY_BETWEEN_POINTS,
                below=False,
                empty="all runs are in one class",
            ),
        },
    }


# ---------------------------------------------------------------- landscapes


def analyze_landscapes(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    device: torch.device,
    cache_dir: Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Compute each network's landscape persistence and fit the gap on it."""
    cfg = config.landscape
    usable = finite_runs(runs)
    n_examples = min(cfg.n_examples, len(dataset.y_train))
    x, y = dataset.x_train[:n_examples], dataset.y_train[:n_examples]
    evaluator = StackedEvaluator(initial_model(config, dataset, 0), device)

    per_run: list[dict[str, Any]] = []
    for done, run in enumerate(usable, start=1):
        per_run.append(_run_landscape(config, evaluator, run, x, y, cache_dir))
        if progress is not None:
            progress(done, len(usable))

    fitted = [e for e in per_run if e["total_persistence"] is not None]
    gaps = np.array([e["generalization_gap"] for e in fitted], dtype=float)
    closed = np.array([e["total_persistence"] for e in fitted], dtype=float)
    finite_only = np.array([e["total_persistence_finite"] for e in fitted], dtype=float)
    optimizer_of = {
        r.name: config.train.optimizer_label(r.spec.optimizer) for r in usable
    }
    by_optimizer = {}
    for optimizer in sorted(set(optimizer_of.values())):
        mask = np.array(
            [optimizer_of[e["run"]] == optimizer for e in fitted], dtype=bool
        )
        by_optimizer[optimizer] = topology.fit_gap(
            closed[mask], gaps[mask], n_bootstrap=1000, seed=cfg.seed
        ).to_json()
    return {
        "definition": (
            "sublevel-set persistent homology (gudhi cubical complex, H0 and H1) of the"
            " training loss on a filter-normalized random plane theta + a d1 + b d2,"
            " a and b in [-span, span]; total persistence = sum of (death - birth) over"
            " all bars, essential bars closed at the largest loss on the grid;"
            " generalization gap = train accuracy - test accuracy"
        ),
        "resolution": cfg.resolution,
        "span": cfg.span,
        "n_examples": n_examples,
        "direction_seed": cfg.seed,
        "excluded_runs": [r.name for r in runs if r.status != "complete"]
        + [e["run"] for e in per_run if e["total_persistence"] is None],
        "runs": per_run,
        "fit": topology.fit_gap(
            closed, gaps, n_bootstrap=1000, seed=cfg.seed
        ).to_json(),
        "fit_finite_bars_only": topology.fit_gap(
            finite_only, gaps, n_bootstrap=1000, seed=cfg.seed
        ).to_json(),
        "fit_by_optimizer": by_optimizer,
        "runs_without_finite_bars": sum(
            1 for e in fitted if e["total_persistence_finite"] == 0.0
        ),
        "claim": {
            "source": claims.SOURCE,
            "claimed_r2": claims.PERSISTENCE_R2,
            "setup_claimed": claims.PERSISTENCE_SETUP,
        },
    }


def _run_landscape(
    config: ExperimentConfig,
    evaluator: StackedEvaluator,
    run: RunResult,
    x: torch.Tensor,
    y: torch.Tensor,
    cache_dir: Path,
) -> dict[str, Any]:
    cfg = config.landscape
    key = repr(
        {
            "point": run.trajectory.end.digest,
            "landscape": cfg.model_dump(mode="json"),
            "data": config.data.model_dump(mode="json"),
        }
    )
    path = cache_dir / "landscapes" / f"{run.name}.npz"
    values = read_array_cache(path, key)
    if values is None:
        params = evaluator.layout.unflatten(run.final_point)
        generator = torch.Generator().manual_seed(cfg.seed)
        directions = topology.random_plane(params, generator)
        surface = topology.loss_surface(
            # NOTE: with BatchNorm every grid point uses the trained network's
            # stored statistics, not statistics recomputed at that point.
            evaluator.loss_fn(x, y, buffers=run.trajectory.end.buffers),
            params,
            directions,
            cfg.span,
            cfg.resolution,
        )
        values = surface.values
        write_array_cache(path, key, values)

    entry: dict[str, Any] = {
        "run": run.name,
        "generalization_gap": run.generalization_gap,
        "loss_at_centre": float(values[cfg.resolution // 2, cfg.resolution // 2]),
        "loss_max": float(np.nanmax(values)) if np.isfinite(values).any() else None,
    }
    try:
        diagram = topology.sublevel_persistence(values)
    except ValueError as error:
        logger.warning("landscape of run %s has non-finite losses: %s", run.name, error)
        entry.update(
            total_persistence=None,
            total_persistence_finite=None,
            diagram=None,
            error=str(error),
        )
        return entry
    entry.update(
        total_persistence=topology.total_persistence(
            diagram, essential_death=float(values.max())
        ),
        total_persistence_finite=topology.total_persistence(diagram),
        finite_bars=len(diagram.finite()),
        diagram=diagram.to_json(),
    )
    return entry


def landscape_grid(cache_dir: Path, run_name: str) -> np.ndarray | None:
    """Return a run's cached loss grid, if it has been computed."""
    path = cache_dir / "landscapes" / f"{run_name}.npz"
    try:
        with np.load(path, allow_pickle=False) as cached:
            return np.asarray(cached["value"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


# ---------------------------------------------------------------- Fisher lengths


def analyze_fisher_lengths(
    config: ExperimentConfig,
    dataset: Dataset,
    runs: Sequence[RunResult],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure every finite run's trajectory in the empirical Fisher metric.

    Runs from the same initialization are grouped, so optimizers can be
    compared side by side. The claim under test is that natural gradient
    follows geodesics of the Fisher metric. A path is compared only with
    paths from the same start. Runs also end at different points, so a
    shorter path is an observation, not a proof of a geodesic.
    """
    cfg = config.fisher
    result: dict[str, Any] = {
        "definition": (
            "sum over segments of sqrt(d^T F d), d the step between consecutive"
            " checkpoints and F the empirical Fisher at the segment's start"
        ),
        "kind": cfg.kind,
        "rank": cfg.rank,
        "checkpoint_every": config.train.checkpoint_every,
        "claim": {
            "claimed": (
                "natural gradient follows geodesics of the Fisher metric, so its"
                " path from a given start is the shortest (a hypothesis under test)"
            ),
        },
    }
    if not cfg.enabled:
        result["status"] = "not computed: disabled in the config"
        return result
    model = initial_model(config, dataset, 0)
    if ParamLayout.of(model).buffer_size:
        result["status"] = "not computed: Fisher lengths of BatchNorm models"
        return result

    usable = finite_runs(runs)
    n_examples = min(cfg.n_examples, len(dataset.y_train))
    x, y = dataset.x_train[:n_examples], dataset.y_train[:n_examples]
    rows: list[dict[str, Any]] = []
    excluded: list[str] = []
    for done, run in enumerate(usable, start=1):
        try:
            length = fisher_length(
                model, run.trajectory, x, y, kind=cfg.kind, rank=cfg.rank
            )
        except NonFiniteError as error:
            # A run can finish with a finite loss and still have weights so
            # large that its per-example gradients overflow.
            logger.warning("run %s left out of the Fisher lengths: %s", run.name, error)
            excluded.append(run.name)
        else:
            rows.append(
                {
                    "run": run.name,
                    "init_seed": run.spec.init_seed,
                    "optimizer": run.spec.optimizer.name,
                    "optimizer_label": config.train.optimizer_label(run.spec.optimizer),
                    "fisher_length": length.length,
                    "euclidean_length": length.euclidean_length,
                    "segments": len(length.segment_lengths),
                }
            )
        if progress is not None:
            progress(done, len(usable))

    shortest: dict[str, int] = {}
    wins = 0
    for seed in sorted({row["init_seed"] for row in rows}):
        group = [row for row in rows if row["init_seed"] == seed]
        best = min(group, key=lambda row: row["fisher_length"])
        label = best["optimizer_label"]
        shortest[label] = shortest.get(label, 0) + 1
        if best["optimizer"] == "natural_gradient":
            wins += 1
    optimizers = {row["optimizer"] for row in rows}
    groups = len({row["init_seed"] for row in rows})
    if "natural_gradient" not in optimizers:
        reading = "not testable: no natural-gradient run in this sweep"
    elif wins == groups:
        reading = "consistent: natural gradient's path is the shortest from every start"
    else:
        reading = (
            f"not consistent: natural gradient's path is the shortest from {wins}"
            f" of {groups} initializations"
        )
    result.update(
        status="computed",
        n_examples=n_examples,
        excluded_runs=excluded,
        runs=rows,
        shortest_by_optimizer=shortest,
        reading=reading,
    )
    return result
