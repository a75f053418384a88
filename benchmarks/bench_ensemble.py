"""Time vectorized ensemble training against a loop of single runs.

The workload is 32 runs of the MNIST-1D CNN (``ModelConfig(kind="cnn")``:
16 channels, 128 hidden units, 23,562 parameters), 16 init seeds times 2
data seeds. Each run trains for 5 epochs (200 steps) with SGD (learning
rate 0.05, momentum 0.9) in batches of 100 on 4,000 training examples, with
a checkpoint every 40 steps. The test set is cut to 1,000 examples, so that
the final evaluation, which both ways perform, does not dominate the timing.

The baseline is `learning.training.train_run` called once per run, as the
main job calls it. Ours is one call of `learning.ensemble.train_ensemble`,
which trains the 32 runs in one vectorized pass. It computes the losses as
batched matrix products over the runs, and their gradients with the
hand-written backward passes of `learning.stacked`. The same call with
``batched_products=False``, which uses vmap over `functional_call` and
autograd instead, is timed too and printed beside them, so that the gain
over vmap is measured in the same run.
(Its final evaluation still uses the batched products.) The last line
printed is ``speedup: X``, the loop's wall-clock time over the ensemble's,
all measured in this process.

Both ways must agree run by run:

- The checkpoint steps and the status of every run are equal.
- On the first ``EARLY_RUNS`` runs, trained both ways for one epoch with a
  checkpoint at every step (this also warms both ways up before the timing),
  every checkpoint up to step ``EARLY_STEPS`` agrees within ``EARLY_ATOL``.
  There the two differ only by float rounding: a convolution computed as a
  batched product over gathered windows sums in another order than
  train_run's convolution kernel.
- The final points agree within ``FINAL_RTOL`` of their norm, and the mean
  test accuracy over the runs within ``MEAN_ACCURACY_ATOL``. These bounds are
  loose because, over 200 steps, training itself amplifies last-bit
  differences. train_run alone shows it: in 12 runs of this workload (torch
  2.13, one thread), moving one initial weight by one float32 ulp moved the
  final point by up to 4.4% of its norm. The test accuracy moved by up to
  1.8 points.

Before either way runs, `learning.cpu.retain_freed_memory` sets glibc's
malloc to keep freed memory for reuse, as ``catinv reproduce`` does on the
CPU. The setting is global to the process, so both ways run with it. It
helps the vectorized pass, whose tensors are large, and leaves the loop's
small ones alone. ``--return-freed-memory`` leaves malloc as it is.

Run it with ``python benchmarks/bench_ensemble.py``. On idle 2-core CPUs it
took 27 s (AMD EPYC, Zen 4) and 53 s (AMD EPYC, Zen 3). ``--threads N``
sets torch's thread count, and ``--batch-size`` and ``--epochs`` change the
workload; the final-point bounds were sized for the defaults.

NOTE: measure on an idle machine. When other processes keep the cores busy,
the loop's many small two-thread kernels wait for each other far more than
the ensemble's large ones do. At a load average of 3.4 on 2 cores the loop
took 144 s and the ensemble 5.7 s, a speedup of 25 that an idle machine does
not show. The load average is printed for this reason.

The speedup also depends on the processor. The loop's time goes mostly to
per-call overhead and the ensemble's mostly to matrix products, and the
ratio of these two costs differs from one processor to another. On idle
2-core AMD EPYC machines, a Zen 4 one printed 3.1 to 4.4 and a Zen 3 one
(family 25, model 1) 4.7 to 5.9. The first line printed names the processor.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time

import torch

from learning.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    OptimizerConfig,
    RunSpec,
    TrainConfig,
)
from learning.cpu import retain_freed_memory
from learning.data import Dataset, load_dataset
from learning.ensemble import train_ensemble
from learning.training import RunResult, train_run

INIT_SEEDS = 16
DATA_SEEDS = 2
CHECKPOINT_EVERY = 40
EARLY_RUNS = 4
EARLY_STEPS = 10
EARLY_ATOL = 1e-5
FINAL_RTOL = 0.2
MEAN_ACCURACY_ATOL = 0.01


def make_config(
    epochs: int, batch_size: int, checkpoint_every: int
) -> ExperimentConfig:
    """Return the benchmark's sweep: 32 CNN runs with SGD."""
    return ExperimentConfig(
        name="bench-ensemble",
        data=DataConfig(n_train=4000, n_test=1000, probe_size=100),
        model=ModelConfig(kind="cnn"),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            checkpoint_every=checkpoint_every,
            init_seeds=list(range(INIT_SEEDS)),
            data_seeds=list(range(DATA_SEEDS)),
            optimizers=[OptimizerConfig(name="sgd", lr=0.05, momentum=0.9)],
        ),
        device="cpu",
    )


def check_same_records(ensemble: list[RunResult], loop: list[RunResult]) -> None:
    """Assert that every run has the same status and checkpoint steps both ways."""
    for ours, reference in zip(ensemble, loop, strict=True):
        name = reference.name
        assert ours.status == reference.status, f"{name}: status differs"
        assert ours.trajectory.steps == reference.trajectory.steps, (
            f"{name}: checkpoint steps differ"
        )


def early_gap(
    dataset: Dataset, specs: list[RunSpec], batch_size: int, device: torch.device
) -> float:
    """Train a few runs for one epoch both ways and return the early gap."""
    config = make_config(epochs=1, batch_size=batch_size, checkpoint_every=1)
    ensemble = train_ensemble(config, dataset, specs, device)
    loop = [train_run(config, dataset, spec, device) for spec in specs]
    check_same_records(ensemble, loop)
    gap = 0.0
    for ours, reference in zip(ensemble, loop, strict=True):
        difference = ours.trajectory.points - reference.trajectory.points
        gap = max(gap, float(difference[: EARLY_STEPS + 1].abs().max()))
    return gap


def final_gaps(ensemble: list[RunResult], loop: list[RunResult]) -> tuple[float, float]:
    """Return the largest relative final-point gap and the mean accuracy gap."""
    relative = 0.0
    accuracies: list[tuple[float, float]] = []
    for ours, reference in zip(ensemble, loop, strict=True):
        difference = ours.final_point - reference.final_point
        relative = max(
            relative, float(difference.norm() / reference.final_point.norm())
        )
        if ours.test_accuracy is not None and reference.test_accuracy is not None:
            accuracies.append((ours.test_accuracy, reference.test_accuracy))
    mean_gap = abs(sum(a - b for a, b in accuracies)) / max(len(accuracies), 1)
    return relative, mean_gap


def processor_name() -> str:
    """Return the processor's model name with its family and model numbers."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name")
    if name is None:
        return platform.processor() or platform.machine() or "an unknown processor"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run")
    parser.add_argument(
        "--batch-size", type=int, default=100, help="examples per optimizer step"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--return-freed-memory",
        action="store_true",
        help="leave glibc's malloc as it is (see learning.cpu); both ways run so",
    )
    args = parser.parse_args()
    retained = False if args.return_freed_memory else retain_freed_memory()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)

    device = torch.device("cpu")
    config = make_config(args.epochs, args.batch_size, CHECKPOINT_EVERY)
    dataset = load_dataset(config.data)
    specs = config.train.run_specs()
    early = early_gap(dataset, specs[:EARLY_RUNS], args.batch_size, device)
    assert early <= EARLY_ATOL, f"early checkpoints differ by {early:.3g}"

    started = time.perf_counter()
    loop = [train_run(config, dataset, spec, device) for spec in specs]
    loop_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ensemble = train_ensemble(config, dataset, specs, device)
    ensemble_seconds = time.perf_counter() - started

    started = time.perf_counter()
    through_vmap = train_ensemble(
        config, dataset, specs, device, batched_products=False
    )
    vmap_seconds = time.perf_counter() - started
    check_same_records(through_vmap, loop)

    check_same_records(ensemble, loop)
    relative, accuracy_gap = final_gaps(ensemble, loop)
    assert relative <= FINAL_RTOL, f"final points differ by {relative:.3g}"
    assert accuracy_gap <= MEAN_ACCURACY_ATOL, f"accuracies differ: {accuracy_gap}"

    steps = loop[0].trajectory.duration
    load = os.getloadavg()[0]
    print(
        f"{len(specs)} runs of the MNIST-1D CNN, {steps} steps of batch"
        f" {args.batch_size} each, {torch.get_num_threads()} torch threads"
        f" on {processor_name()} ({os.cpu_count()} cores), load average"
        f" {load:.1f}, freed memory kept for reuse: {retained}"
    )
    print(
        f"largest parameter gap up to step {EARLY_STEPS}: {early:.2g};"
        f" largest final gap {relative:.2g} of the point's norm;"
        f" mean test accuracy gap {accuracy_gap:.4f}"
    )
    print(f"loop of train_run: {loop_seconds:.2f} s")
    print(
        f"train_ensemble through vmap: {vmap_seconds:.2f} s"
        f" (speedup over the loop {loop_seconds / vmap_seconds:.1f})"
    )
    print(f"train_ensemble: {ensemble_seconds:.2f} s")
    print(f"speedup: {loop_seconds / ensemble_seconds:.1f}")


if __name__ == "__main__":
    main()
