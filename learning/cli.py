"""The ``catinv`` command line.

    catinv reproduce --preset quick --out results/quick
    catinv reproduce --config my.json --out results/mine
    catinv config --preset quick > my.json

Progress bars, logging output and the summary table are drawn with rich on
standard error and standard output respectively.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from learning.config import (
    PRESETS,
    ConfigError,
    ExperimentConfig,
    describe_validation_error,
    load_config,
    preset,
)
from learning.readers import DatasetFormatError, DatasetNotFoundError
from learning.store import StoreCorruptError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catinv",
        description="Training as a functor L: Param -> Rep: law checks, homotopy"
        " classes of trained networks, persistent homology of loss landscapes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "reproduce",
        help="train a sweep and write results.json, figures and report.md",
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named configuration (default: quick, 12 runs on MNIST-1D)",
    )
    source.add_argument("--config", help="path of a JSON ExperimentConfig")
    run.add_argument(
        "--out",
        required=True,
        type=_results_folder,
        help="results folder (resumed if it exists)",
    )
    run.add_argument(
        "--device", help="'auto', 'cpu' or 'cuda:N' (overrides the config)"
    )
    run.add_argument(
        "--tau", type=float, help="barrier threshold in nats (overrides the config)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")

    show = commands.add_parser("config", help="print a preset's configuration as JSON")
    show.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    return parser


def _results_folder(value: str) -> str:
    """Return `value` unless it is empty, which would mean the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "the results folder is empty; name one, such as results/quick"
        )
    return value


def _resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    config = load_config(args.config) if args.config else preset(args.preset or "quick")
    updates: dict[str, object] = {}
    if args.device is not None:
        updates["device"] = args.device
    if args.tau is not None:
        updates["homotopy"] = {**config.homotopy.model_dump(), "tau": args.tau}
    if updates:
        merged = {**config.model_dump(), **updates}
        try:
            config = ExperimentConfig.model_validate(merged)
        except ValidationError as error:
            raise ConfigError(
                f"invalid command-line value: {describe_validation_error(error)}"
            ) from None
    return config


def _reproduce(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from learning.cpu import retain_freed_memory
    from learning.evaluate import resolve_device
    from learning.experiment import reproduce
    from learning.report import summary_rows

    errors = Console(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=False)],
        force=True,
    )
    config = _resolve_config(args)
    if resolve_device(config.device).type == "cpu":
        # A separate process: its peak memory is kept until it exits.
        retain_freed_memory()
    # Checked here as well as in reproduce, so that the error is printed
    # before the progress display starts.
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder")
    labels = {
        "train": "training runs",
        "functor": "checking L's laws",
        "barriers": "loss barriers (pairs)",
        "aligned": "barriers after weight matching (pairs)",
        "landscapes": "landscape persistence",
        "fisher": "Fisher lengths",
    }
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(labels.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        results = reproduce(config, args.out, progress)

    table = Table(title=f"catinv reproduce, config {config.name!r}: summary")
    table.add_column("quantity")
    table.add_column("measured here", justify="right")
    table.add_column("claimed (other setup)", justify="right")
    table.add_column("reading")
    for row in summary_rows(results):
        table.add_row(*row)
    # Piped output defaults to 80 columns, which wraps every row of the table.
    console = Console(width=max(Console().width, 140))
    console.print(table)
    console.print(f"Results in {args.out}: results.json, report.md, figures.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "config":
            print(json.dumps(preset(args.preset).model_dump(mode="json"), indent=2))
            return 0
        return _reproduce(args)
    except (ConfigError, DatasetNotFoundError) as error:
        # Both name an input the user gave (a field, a data folder): exit 2,
        # like a command-line error.
        print(f"catinv: error: {error}", file=sys.stderr)
        return 2
    except (StoreCorruptError, DatasetFormatError) as error:
        print(f"catinv: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"catinv: error: cannot write results: {error}; choose a writable --out"
            " folder",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "catinv: interrupted; run the same command again to resume from the"
            " finished runs",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
