"""The main job: train a sweep, build L, find homotopy classes, measure landscapes.

`reproduce` runs the stages in order, config -> data -> runs (in the store)
-> analyses -> report, and writes everything under one results folder.
Finished runs and analysis results are cached there, so calling it again
on the same folder resumes where an interrupted call stopped.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from learning import claims
from learning.analyses import (
    analyze_fisher_lengths,
    analyze_homotopy,
    analyze_landscapes,
    check_functor_laws,
)
from learning.config import ConfigError, ExperimentConfig, preset
from learning.data import Dataset, load_dataset
from learning.ensemble import supports, train_ensemble, unsupported_features
from learning.evaluate import resolve_device
from learning.report import write_report
from learning.store import RunStore, atomic_write_json, run_key
from learning.training import RunResult, initial_model, train_run

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages are 'train', 'functor',
'barriers', 'aligned' (barriers after weight matching, when asked for),
'landscapes' and 'fisher'."""


def train_sweep(
    config: ExperimentConfig,
    dataset: Dataset,
    store: RunStore,
    device: torch.device,
    progress: ProgressCallback | None = None,
) -> list[RunResult]:
    """Train every run of the sweep that the store does not already hold."""
    specs = config.train.run_specs()
    keys = [run_key(config, spec) for spec in specs]
    stored = [store.load(spec, key) for spec, key in zip(specs, keys, strict=True)]
    reused = sum(run is not None for run in stored)
    if reused:
        logger.info("reusing %d of %d runs from %s", reused, len(specs), store.root)

    done = reused
    if progress is not None:
        progress("train", done, len(specs))
    missing = [i for i, run in enumerate(stored) if run is None]
    together: list[int] = []
    if config.train.vectorized:
        buffers = [
            name for name, _ in initial_model(config, dataset, 0).named_buffers()
        ]
        if buffers:
            logger.info(
                "training one run at a time: the vectorized pass cannot update"
                " the model's buffers (%s)",
                ", ".join(buffers),
            )
        else:
            together = [i for i in missing if supports(specs[i])]
            alone: dict[str, list[str]] = {}
            for i in sorted(set(missing) - set(together)):
                reason = " and ".join(unsupported_features(specs[i]))
                alone.setdefault(reason, []).append(specs[i].name)
            for reason, names in alone.items():
                logger.info(
                    "training %d run(s) on their own, because the vectorized"
                    " pass does not implement %s: %s",
                    len(names),
                    reason,
                    ", ".join(names),
                )
    if together:
        trained = train_ensemble(config, dataset, [specs[i] for i in together], device)
        for i, run in zip(together, trained, strict=True):
            store.save(run, keys[i])
            stored[i] = run
        done += len(together)
        if progress is not None:
            progress("train", done, len(specs))
    for i in missing:
        if stored[i] is not None:
            continue
        run = train_run(config, dataset, specs[i], device)
        store.save(run, keys[i])
        stored[i] = run
        done += 1
        if progress is not None:
            progress("train", done, len(specs))
    return [run for run in stored if run is not None]


def check_results_folder(config: ExperimentConfig, out: Path) -> None:
    """Raise `ConfigError` if `out` contains runs of a different sweep.

    Settings that only change the analyses (tau, the landscape grid) may
    differ, because the stored runs stay valid; data, model and training
    settings may not, so that one folder never mixes two sweeps.
    """
    previous_path = out / "config.json"
    if not previous_path.exists():
        return
    try:
        previous = ExperimentConfig.model_validate_json(previous_path.read_text())
    except ValueError:
        raise ConfigError(
            f"{previous_path} is not a valid config; choose another --out or"
            f" delete {out}"
        ) from None
    sections = ("data", "model", "train")
    if previous.fingerprint(*sections) != config.fingerprint(*sections):
        changed = [
            s for s in sections if previous.fingerprint(s) != config.fingerprint(s)
        ]
        raise ConfigError(
            f"{out} contains results of another sweep (its {', '.join(changed)} settings"
            f" differ); choose another --out, or delete {out} to start over"
        )


def reproduce(
    config: ExperimentConfig | str,
    out: str | Path,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run the main job and write results.json, figures and report.md under `out`.

    Parameters
    ----------
    config : ExperimentConfig or str
        A config, or the name of a preset ('tiny', 'quick', 'full').
    out : path
        The results folder. Runs already stored there under the same
        settings are reused, not retrained.
    progress : callable, optional
        Called as ``progress(stage, done, total)`` as work finishes.

    Returns
    -------
    dict
        The content of results.json.
    """
    if isinstance(config, str):
        config = preset(config)
    if not str(out).strip():
        raise ConfigError(
            "the results folder is empty; name one, such as results/quick"
        )
    out = Path(out)
    device = resolve_device(config.device)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder")
    check_results_folder(config, out)
    started = time.perf_counter()
    logger.info("main job %r on %s, writing to %s", config.name, device, out)

    # Data first, so that a missing local data set leaves no config behind.
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    dataset = load_dataset(config.data)
    try:
        # Built once before anything is written, so that a model that does
        # not fit the data (a 2-D CNN on 1-D inputs, say) is a config error.
        initial_model(config, dataset, 0)
    except ValueError as error:
        raise ConfigError(
            f"model.kind {config.model.kind!r} does not fit the"
            f" {config.data.name} data: {error}"
        ) from None
    timings["data"] = time.perf_counter() - clock
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config.model_dump(mode="json"))

    def stage(name: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    clock = time.perf_counter()
    with RunStore(out) as store:
        runs = train_sweep(config, dataset, store, device, progress)
    timings["train"] = time.perf_counter() - clock

    cache = out / "analysis"
    clock = time.perf_counter()
    functor = check_functor_laws(config, dataset, runs, device, stage("functor"))
    timings["functor"] = time.perf_counter() - clock

    clock = time.perf_counter()
    homotopy = analyze_homotopy(
        config,
        dataset,
        runs,
        device,
        cache,
        stage("barriers"),
        aligned_progress=stage("aligned"),
    )
    timings["homotopy"] = time.perf_counter() - clock

    clock = time.perf_counter()
    landscapes = analyze_landscapes(
        config, dataset, runs, device, cache, stage("landscapes")
    )
    timings["landscapes"] = time.perf_counter() - clock

    clock = time.perf_counter()
    fisher = analyze_fisher_lengths(config, dataset, runs, stage("fisher"))
    timings["fisher"] = time.perf_counter() - clock

    results: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "environment": _environment(device),
        "data": {
            "name": dataset.name,
            "n_train": len(dataset.y_train),
            "n_test": len(dataset.y_test),
            "probe_size": int(dataset.probe.shape[0]),
        },
        "runs": [
            _run_json(r, config.train.optimizer_label(r.spec.optimizer)) for r in runs
        ],
        "n_runs": len(runs),
        "n_diverged": sum(r.status == "diverged" for r in runs),
        "functor_laws": functor,
        "homotopy": homotopy,
        "topology": landscapes,
        "fisher": fisher,
        "claims": claims.claims_json(),
        "timings_seconds": timings,
    }
    timings["total"] = time.perf_counter() - started
    write_report(results, out, cache)
    logger.info("main job finished in %.1fs", results["timings_seconds"]["total"])
    return results


def _run_json(run: RunResult, optimizer_label: str) -> dict[str, Any]:
    return {
        "name": run.name,
        "init_seed": run.spec.init_seed,
        "data_seed": run.spec.data_seed,
        "optimizer": run.spec.optimizer.model_dump(mode="json"),
        "optimizer_label": optimizer_label,
        "status": run.status,
        "diverged_at_step": run.diverged_at_step,
        "recorded_steps": run.trajectory.duration,
        "checkpoints": len(run.trajectory.steps),
        "train_loss": run.train_loss,
        "train_accuracy": run.train_accuracy,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "generalization_gap": run.generalization_gap,
        "seconds": run.seconds,
    }


def _environment(device: torch.device) -> dict[str, Any]:
    import gudhi
    import numpy

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "device": str(device),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gudhi": gudhi.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        # Uncommitted edits mean the commit alone does not identify the code.
        "git_dirty": None if status is None else bool(status),
        "torch_threads": torch.get_num_threads(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _git(*args: str) -> str | None:
    """Return a git command's output in the package's folder, or None."""
    try:
        completed = subprocess.run(
            ["git", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()
