"""Law failures: the common currency of every law checker in the package.

A checker never raises on a broken law. It returns a list of `LawFailure`
records, each naming the law, the witness (the objects or morphisms on which
the law was evaluated) and the two sides that should have been equal. Boolean
helpers such as `is_functor` are thin wrappers over these lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LawFailure:
    """One violated equation of a law, with its witness and both sides.

    Attributes
    ----------
    law : str
        The law's name, such as ``"functor.composition"``.
    witness : tuple
        The objects or morphisms the law was evaluated on.
    lhs, rhs : Any
        The two sides that were expected to be equal.
    detail : str
        A short explanation, such as the largest absolute difference.
    """

    law: str
    witness: tuple[Any, ...]
    lhs: Any
    rhs: Any
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.law} fails on {self.witness!r}: {self.lhs!r} != {self.rhs!r}"
        if self.detail:
            text += f" ({self.detail})"
        return text


@dataclass(frozen=True)
class LawReport:
    """The outcome of checking a set of laws: how many checks ran, and which failed."""

    checked: dict[str, int] = field(default_factory=dict)
    failures: tuple[LawFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every checked equation held."""
        return not self.failures

    def failures_of(self, law: str) -> list[LawFailure]:
        """Return the failures of one law."""
        return [f for f in self.failures if f.law == law]

    def summary(self) -> dict[str, dict[str, int]]:
        """Return, for each law, the number of equations checked and failed."""
        return {
            law: {"checked": count, "failed": len(self.failures_of(law))}
            for law, count in self.checked.items()
        }


def merge_reports(reports: Sequence[LawReport]) -> LawReport:
    """Combine reports: counts are added per law, and failures listed once each.

    Two failures are the same when their law, witness, sides and detail
    print the same; drawn examples often hit one failure many times.
    """
    checked: dict[str, int] = {}
    failures: list[LawFailure] = []
    seen: set[str] = set()
    for report in reports:
        for law, count in report.checked.items():
            checked[law] = checked.get(law, 0) + count
        for failure in report.failures:
            text = str(failure)
            if text not in seen:
                seen.add(text)
                failures.append(failure)
    return LawReport(checked=checked, failures=tuple(failures))


class LawViolation(AssertionError):
    """Raised by `assert_laws` when a law checker returns failures."""

    def __init__(self, failures: Sequence[LawFailure]) -> None:
        self.failures = list(failures)
        lines = [f"{len(self.failures)} law failure(s):"]
        lines += [f"  - {failure}" for failure in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        super().__init__("\n".join(lines))


def assert_laws(report: LawReport | Sequence[LawFailure]) -> None:
    """Raise `LawViolation` listing every failure, for use inside pytest tests."""
    failures = report.failures if isinstance(report, LawReport) else report
    if failures:
        raise LawViolation(failures)
