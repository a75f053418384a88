"""L's laws checked by the core's property-based checker on recorded runs.

`RecordedParam` is Param restricted to what training recorded: its objects
are the checkpoints of the given trajectories and its morphisms are their
sub-trajectories. A Hypothesis provider draws from it, so `check_laws`
draws composable pairs of real sub-trajectories (consecutive segments of one
run, or identities) and checks every functor law of L on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from categories import Functor, LawReport, check_laws
from categories.strategies import StrategyProvider, register_strategies
from learning.functor import LearningFunctor
from learning.param import ParamCategory, ParamPoint, Trajectory
from learning.rep import RepCategory, RepPath, Representation


class RecordedParam(ParamCategory):
    """Param, with strategies that draw checkpoints and sub-trajectories of runs."""

    def __init__(self, base: ParamCategory, trajectories: Sequence[Trajectory]) -> None:
        super().__init__(base.layout)
        if not trajectories:
            raise ValueError("RecordedParam needs at least one recorded trajectory")
        self.trajectories = list(trajectories)
        self._where: dict[ParamPoint, list[tuple[int, int]]] = {}
        for t, trajectory in enumerate(self.trajectories):
            for i in range(len(trajectory.steps)):
                point = ParamPoint(trajectory.points[i])
                self._where.setdefault(point, []).append((t, i))

    def checkpoints(self) -> list[ParamPoint]:
        """Return every recorded checkpoint, once each."""
        return list(self._where)

    def sub_trajectories_from(self, x: ParamPoint) -> st.SearchStrategy[Trajectory]:
        """Draw recorded sub-trajectories that start at `x`; identities are included."""
        places = self._where.get(x)
        if not places:
            return st.just(self.identity(x))

        def from_place(place: tuple[int, int]) -> st.SearchStrategy[Trajectory]:
            t, first = place
            trajectory = self.trajectories[t]
            last = st.integers(first, len(trajectory.steps) - 1)
            return last.map(lambda j: trajectory.segment(first, j))

        return st.sampled_from(places).flatmap(from_place)


register_strategies(
    RecordedParam,
    StrategyProvider(
        objects=lambda category: st.sampled_from(category.checkpoints()),
        morphisms_from=lambda category, x: category.sub_trajectories_from(x),
    ),
)


class RecordedLearningFunctor(Functor[ParamPoint, Trajectory, Representation, RepPath]):
    """L with its source restricted to recorded runs, for drawn law checks."""

    name = "L"

    def __init__(self, functor: LearningFunctor, trajectories: Sequence[Trajectory]):
        self.functor = functor
        self._source = RecordedParam(functor.source, trajectories)

    @property
    def source(self) -> RecordedParam:
        """Param restricted to the recorded runs."""
        return self._source

    @property
    def target(self) -> RepCategory:
        """L's target, Rep."""
        return self.functor.target

    def map_object(self, x: ParamPoint) -> Representation:
        """Return L(x)."""
        return self.functor.map_object(x)

    def map_morphism(self, f: Trajectory) -> RepPath:
        """Return L(f)."""
        return self.functor.map_morphism(f)


def check_learning_functor(
    functor: LearningFunctor,
    trajectories: Sequence[Trajectory],
    max_examples: int = 100,
) -> LawReport:
    """Check L's functor laws on sub-trajectories drawn from recorded runs.

    Each example is a composable pair (f, g) of sub-trajectories of one run
    (either may be an identity), on which L's domain, codomain, identity and
    composition laws are checked; the draw is derandomized, so a call is
    repeatable.
    """
    return check_laws(RecordedLearningFunctor(functor, trajectories), max_examples)
