"""Time the vectorized associativity check against a pure-Python loop.

The category is the dihedral group of order 200, the symmetries of a regular
100-gon, as a one-object category: its 200 morphisms are the pairs (r, s)
standing for rotation by r steps followed by s reflections (r in 0..99, s in
{0, 1}), so every one of the 200**3 = 8,000,000 triples is composable. The
group is not commutative, so a corrupted entry cannot hide behind symmetry.

Ours is `categories.finite.associativity_failures`, which compares the two
bracketings of all composable triples with numpy fancy indexing. The
baseline, written here, loops over every composable triple in Python, on the
table as a list of lists (prepared outside the timing, which favours the
baseline). Both must report no failure on the group's table and the same
failing triples on a copy with one corrupted entry. Each is timed over
several repetitions in this process, and the last line printed is
``speedup: X``, the baseline's median time over ours.

Run it with ``python benchmarks/bench_laws.py``; it takes about 3 seconds on
2 CPU cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from categories.finite import FiniteCategory, associativity_failures

SIDES = 100  # the group has 2 * SIDES elements
CORRUPTED_PAIR = (3, 117)
OURS_REPETITIONS = 9
BASELINE_REPETITIONS = 5

Element = tuple[int, int]


def dihedral_group(sides: int) -> FiniteCategory:
    """Build the dihedral group of order 2 * sides as a one-object category.

    (r1, s1);(r2, s2) applies the first symmetry, then the second. A
    reflection reverses the direction of the rotations after it, so the
    composite is (r1 + (-1)**s1 * r2, s1 xor s2), rotations taken mod
    `sides`. The constructor checks every category law of the table.
    """
    elements = [(r, s) for s in (0, 1) for r in range(sides)]

    def then(first: Element, second: Element) -> Element:
        (r1, s1), (r2, s2) = first, second
        rotation = r1 - r2 if s1 else r1 + r2
        return (rotation % sides, s1 ^ s2)

    return FiniteCategory.from_compose(
        ["*"],
        {element: ("*", "*") for element in elements},
        {"*": (0, 0)},
        then,
        name=f"D_{sides}",
    )


def loop_associativity_failures(rows: list[list[int]]) -> list[tuple[int, int, int]]:
    """Return the triples where (f;g);h differs from f;(g;h), by a Python loop.

    ``rows[f][g]`` is the index of f;g, or -1 where f;g is undefined. Only
    triples where f;g and g;h are both defined are equations; a missing
    outer composite reads as -1, as in the vectorized check.
    """
    failures = []
    n = len(rows)
    for f in range(n):
        row_f = rows[f]
        for g in range(n):
            fg = row_f[g]
            if fg < 0:
                continue
            row_g, row_fg = rows[g], rows[fg]
            for h in range(n):
                gh = row_g[h]
                if gh >= 0 and row_fg[h] != row_f[gh]:
                    failures.append((f, g, h))
    return failures


def median_seconds(run: Callable[[], object], repetitions: int) -> float:
    """Return the median wall-clock time of `run` over `repetitions` calls."""
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def as_triples(found: npt.NDArray[np.intp]) -> list[tuple[int, int, int]]:
    return [(int(f), int(g), int(h)) for f, g, h in found]


def main() -> None:
    category = dihedral_group(SIDES)
    table = np.array(category.composition_table)
    rows = table.tolist()
    n = table.shape[0]

    ours = as_triples(associativity_failures(table))
    baseline = loop_associativity_failures(rows)
    assert ours == [], "the vectorized check must accept the group's table"
    assert baseline == [], "the loop must accept the group's table"

    corrupted = table.copy()
    f, g = CORRUPTED_PAIR
    corrupted[f, g] = (corrupted[f, g] + 1) % n
    ours_bad = as_triples(associativity_failures(corrupted))
    baseline_bad = loop_associativity_failures(corrupted.tolist())
    assert ours_bad, "the vectorized check must reject the corrupted table"
    assert ours_bad == baseline_bad, "both checks must find the same failing triples"

    ours_time = median_seconds(lambda: associativity_failures(table), OURS_REPETITIONS)
    baseline_time = median_seconds(
        lambda: loop_associativity_failures(rows), BASELINE_REPETITIONS
    )

    print(f"category: {category.name}, {n} morphisms, {n**3} composable triples")
    print(f"corrupted table[{f}, {g}]: {len(ours_bad)} failing triples, both agree")
    print(f"vectorized: median {ours_time:.4f} s over {OURS_REPETITIONS} runs")
    print(f"python loop: median {baseline_time:.4f} s over {BASELINE_REPETITIONS} runs")
    print(f"speedup: {baseline_time / ours_time:.1f}")


if __name__ == "__main__":
    main()
