"""Time reading each run's final checkpoint lazily against loading whole runs.

The workload is a store of 20 runs, each with 50 checkpoints of 100,000
float32 parameters (20 MB per run, 400 MB in all), written by
`learning.store.RunStore.save` into a temporary folder. The task is what
the barrier analysis needs: the final checkpoint of every run.

- The baseline is `RunStore.load` for every run, keeping the runs as
  `learning.experiment.train_sweep` does; it verifies both checksums and
  reads every checkpoint into memory.
- Ours is `RunStore.open_trajectory` followed by ``trajectory[-1]``, which
  maps ``checkpoints.npy`` and copies one row. With ``verify=True`` (the
  default) it still hashes every byte of the file once, streamed; with
  ``verify=False`` it reads only the header and the final row.

It also times the query "the five complete runs with the highest test
accuracy" through the SQLite index against reading and sorting every
``run.json``.

The last line printed is ``speedup: X``, the baseline's time over the
verified lazy path's. Peak RSS growth (``ru_maxrss``) is printed for each
way, measured in the order unverified, verified, eager, because the peak
only grows. It is growth above the peak that writing the store left, so
it understates the eager way's memory, which keeps all 400 MB.

NOTE: the files are read right after they are written, so they come from
the page cache, not the disk. Reads from a cold cache are slower for every
way, and most for the ways that read all 400 MB.

Run it with ``python benchmarks/bench_store.py``; ``--runs``,
``--checkpoints`` and ``--params`` change the workload. On a 2-core CPU
(load average 1.6, numpy 2.4, torch 2.13) it took 6 s and printed: lazy
unverified 0.011 s, lazy verified 0.31 s, eager 1.1 s (peak RSS +339 MB),
speedup 3.7; the index query took 0.08 ms against 0.7 ms for the scan.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from learning.config import OptimizerConfig, RunSpec
from learning.param import Trajectory
from learning.store import RunStore
from learning.training import RunResult


def _peak_bytes() -> int:
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _fill(store: RunStore, runs: int, checkpoints: int, params: int) -> list[RunSpec]:
    generator = torch.Generator().manual_seed(0)
    specs = []
    for index in range(runs):
        spec = RunSpec(
            index=index,
            init_seed=index,
            data_seed=0,
            optimizer=OptimizerConfig(name="sgd", lr=0.05),
        )
        points = torch.randn(checkpoints, params, generator=generator)
        accuracy = float(torch.rand(1, generator=generator))
        store.save(
            RunResult(
                spec=spec,
                status="complete",
                trajectory=Trajectory(tuple(range(checkpoints)), points),
                train_accuracy=accuracy,
                test_accuracy=accuracy * 0.9,
            ),
            "key",
        )
        specs.append(spec)
    return specs


def _time_lazy(
    store: RunStore, specs: list[RunSpec], verify: bool
) -> tuple[float, list[torch.Tensor]]:
    start = time.perf_counter()
    finals = []
    for spec in specs:
        lazy = store.open_trajectory(spec, "key", verify=verify)
        assert lazy is not None
        with lazy:
            finals.append(lazy[-1])
    return time.perf_counter() - start, finals


def _time_eager(
    store: RunStore, specs: list[RunSpec]
) -> tuple[float, list[torch.Tensor]]:
    # The runs are kept, as learning.experiment.train_sweep keeps them.
    start = time.perf_counter()
    runs = [store.load(spec, "key") for spec in specs]
    finals = [run.final_point for run in runs if run is not None]
    return time.perf_counter() - start, finals


def _time_scan(store: RunStore) -> tuple[float, list[str]]:
    start = time.perf_counter()
    records = []
    for folder in sorted(store.root.iterdir()):
        path = folder / "run.json"
        if path.is_file():
            records.append((folder.name, json.loads(path.read_text())))
    complete = [(name, r) for name, r in records if r["status"] == "complete"]
    complete.sort(key=lambda item: (-item[1]["test_accuracy"], item[0]))
    return time.perf_counter() - start, [name for name, _ in complete[:5]]


def _time_query(store: RunStore) -> tuple[float, list[str]]:
    start = time.perf_counter()
    rows = store.index.query(status="complete", order_by="-test_accuracy", limit=5)
    return time.perf_counter() - start, [row["name"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="number of runs")
    parser.add_argument(
        "--checkpoints", type=int, default=50, help="checkpoints per run"
    )
    parser.add_argument(
        "--params", type=int, default=100_000, help="parameters per checkpoint"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    size_mb = args.runs * args.checkpoints * args.params * 4 / 1e6
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        start = time.perf_counter()
        specs = _fill(store, args.runs, args.checkpoints, args.params)
        print(
            f"wrote {args.runs} runs x {args.checkpoints} checkpoints x"
            f" {args.params} parameters ({size_mb:.0f} MB) in"
            f" {time.perf_counter() - start:.2f} s"
        )

        peak = _peak_bytes()
        unverified_seconds, unverified = _time_lazy(store, specs, verify=False)
        unverified_growth, peak = _peak_bytes() - peak, _peak_bytes()
        verified_seconds, verified = _time_lazy(store, specs, verify=True)
        verified_growth, peak = _peak_bytes() - peak, _peak_bytes()
        eager_seconds, eager = _time_eager(store, specs)
        eager_growth = _peak_bytes() - peak
        for ours in (unverified, verified):
            if not all(torch.equal(a, b) for a, b in zip(ours, eager, strict=True)):
                raise SystemExit("lazy and eager final checkpoints differ")

        _time_query(store)  # opens (and builds) the index outside the timing
        query_seconds, queried = _time_query(store)
        scan_seconds, scanned = _time_scan(store)
        if queried != scanned:
            raise SystemExit(f"index query {queried} differs from scan {scanned}")
        store.close()

    print(
        f"final checkpoints, lazy unverified: {unverified_seconds:.3f} s,"
        f" peak RSS +{unverified_growth / 1e6:.0f} MB"
    )
    print(
        f"final checkpoints, lazy verified:   {verified_seconds:.3f} s,"
        f" peak RSS +{verified_growth / 1e6:.0f} MB"
    )
    print(
        f"final checkpoints, eager load:      {eager_seconds:.3f} s,"
        f" peak RSS +{eager_growth / 1e6:.0f} MB"
    )
    print(
        f"top 5 by test accuracy: index {query_seconds * 1e3:.2f} ms,"
        f" scan of run.json {scan_seconds * 1e3:.2f} ms"
    )
    print(f"speedup: {eager_seconds / verified_seconds:.1f}")


if __name__ == "__main__":
    main()
