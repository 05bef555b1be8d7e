"""The records the search algorithms reason about.

A sweep keeps no state of its own: on every pass the reconciler rebuilds ``Trial`` records
from the sweep's child TrainingJobs (labels, annotations and status) and hands them to the
algorithm. So every algorithm is a deterministic function of (spec, seed, history), and an
operator restart can neither lose a trial nor suggest a different one.

A *configuration* is one sampled set of parameters; a *trial* is one TrainingJob that trains
a configuration at one *rung* (budget level). Without a budget every configuration has exactly
one trial at rung 0 and the configuration id equals the trial index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

TrialState = Literal["Pending", "Running", "Succeeded", "Failed"]
ConfigState = Literal["Running", "Complete", "Pruned", "Failed"]
Direction = Literal["maximize", "minimize"]
UNFINISHED: tuple[TrialState, ...] = ("Pending", "Running")


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial as observed: what it was asked to do and how it ended."""

    index: int
    params: Mapping[str, Any]
    state: TrialState = "Pending"
    value: float | None = None
    config: int | None = None
    rung: int = 0
    generation: int | None = None
    finished: str = ""

    @property
    def config_id(self) -> int:
        return self.index if self.config is None else self.config

    @property
    def done(self) -> bool:
        return self.state not in UNFINISHED

    @property
    def scored(self) -> bool:
        return self.state == "Succeeded" and self.value is not None

    def finish_key(self) -> tuple[str, int]:
        """Order of completion: completion time, then index (times have second precision)."""
        return (self.finished, self.index)


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """What to run next: a configuration at a rung (its budget set when there is one)."""

    config: int
    params: Mapping[str, Any]
    rung: int = 0
    budget: float | int | None = None
    generation: int | None = None


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A sampler's answer for one new configuration."""

    params: dict[str, Any]
    generation: int | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    """A configuration with its value per rung: what samplers learn from."""

    id: int
    params: Mapping[str, Any]
    state: ConfigState
    values: Mapping[int, float]
    generation: int | None = None
    finished: str = ""

    @property
    def value(self) -> float | None:
        """The value at the highest rung it finished."""
        if not self.values:
            return None
        return self.values[max(self.values)]


def score(value: float, direction: Direction) -> float:
    """Higher is better, whatever the direction."""
    return value if direction == "maximize" else -value


def is_better(a: float, b: float, direction: Direction) -> bool:
    return score(a, direction) > score(b, direction)


def configs(history: Iterable[Trial], *, top_rung: int = 0) -> list[Config]:
    """Group trials by configuration, in configuration order.

    The state is the state of the configuration's latest (highest-rung) trial: unfinished is
    Running, failed is Failed, succeeded at the top rung is Complete, succeeded below it is
    Pruned (stopped there, for now: successive halving may still promote it).
    """
    grouped: dict[int, list[Trial]] = {}
    for trial in history:
        grouped.setdefault(trial.config_id, []).append(trial)
    out: list[Config] = []
    for cid in sorted(grouped):
        trials = sorted(grouped[cid], key=lambda t: (t.rung, t.index))
        latest = trials[-1]
        values = {t.rung: float(t.value) for t in trials if t.scored and t.value is not None}
        state: ConfigState
        if not latest.done:
            state = "Running"
        elif latest.state == "Failed" or not latest.scored:
            state = "Failed"
        elif latest.rung >= top_rung:
            state = "Complete"
        else:
            state = "Pruned"
        first = trials[0]
        out.append(
            Config(
                id=cid,
                params=first.params,
                state=state,
                values=values,
                generation=first.generation,
                finished=latest.finished,
            )
        )
    return out


def next_config_id(history: Sequence[Trial]) -> int:
    return max((t.config_id for t in history), default=-1) + 1
