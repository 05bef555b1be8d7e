"""Pure sweep algorithms behind one interface: ``suggest(history, n) -> list[Suggestion]``.

``make(spec, seed=...)`` builds the algorithm a HyperparameterSweep asks for: a *sampler*
(where new configurations come from: grid, random, Optuna's TPE, CMA-ES) composed with a
*scheduler* (what runs next: one trial per configuration, successive halving, Hyperband or
the median stopping rule over the rungs of a budget parameter). History is the list of
``trials.Trial`` rebuilt from the sweep's TrainingJobs on every pass; nothing is remembered
between calls, so the same (spec, seed, history) always gives the same suggestions.

Importing this package imports neither Optuna nor numpy; the samplers that need them import
them when first used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mlops_operator.api import sweep
from mlops_operator.search import fidelity, samplers, space, trials


@dataclasses.dataclass(frozen=True)
class Search:
    """A sampler and a scheduler, ready to answer ``suggest``."""

    sampler: samplers.Sampler
    scheduler: fidelity.Scheduler
    parameter_order: tuple[str, ...]
    budget_parameter: str | None = None

    def suggest(self, history: Sequence[trials.Trial], n: int) -> list[trials.Suggestion]:
        """Up to ``n`` trials to start next (fewer when the space is exhausted)."""
        out = self.scheduler.suggest(history, n, self.sampler)
        return [
            dataclasses.replace(s, params={k: s.params[k] for k in self.parameter_order if k in s.params})
            for s in out
        ]

    def pruned(self, history: Sequence[trials.Trial]) -> set[int]:
        """Configurations stopped below the top rung."""
        return self.scheduler.pruned(history)

    @property
    def capacity(self) -> int | None:
        """The number of distinct configurations (a grid's size), None when unbounded."""
        return self.sampler.capacity

    def trial_params(self, suggestion: trials.Suggestion) -> dict[str, object]:
        """The parameters a trial is trained with: the suggestion's plus its budget."""
        params = dict(suggestion.params)
        if self.budget_parameter is not None and suggestion.budget is not None:
            params[self.budget_parameter] = suggestion.budget
        return params


def make(spec: sweep.HyperparameterSweepSpec, *, seed: int) -> Search:
    """The algorithm ``spec`` asks for. ``space.problems(spec)`` must be empty."""
    problems = space.problems(spec)
    if problems:
        raise ValueError("; ".join(problems))
    algorithm = spec.algorithm
    direction = spec.objective.effective_direction()
    parameters = space.sampled_parameters(spec)
    sampler: samplers.Sampler
    name = algorithm.name
    if name in sweep.MULTI_FIDELITY:
        name = algorithm.sampler or "random"
    if name == "grid":
        sampler = samplers.GridSampler(parameters, points=algorithm.grid_points)
    elif name == "random":
        sampler = samplers.RandomSampler(parameters, seed=seed)
    elif name == "tpe":
        from mlops_operator.search import tpe

        sampler = tpe.TPESampler(
            parameters, direction=direction, seed=seed, startup_trials=algorithm.startup_trials
        )
    elif name == "cmaes":
        from mlops_operator.search import cma

        sampler = cma.CmaSampler(
            parameters,
            direction=direction,
            seed=seed,
            population_size=algorithm.population_size,
            startup_trials=algorithm.startup_trials,
        )
    else:  # pragma: no cover - the Literal type and CEL allow nothing else
        raise ValueError(f"unknown algorithm {name!r}")

    budget = space.budget_parameter(spec)
    scheduler = fidelity.Scheduler(direction=direction)
    if budget is not None and algorithm.budget is not None:
        budgets = tuple(space.rung_budgets(budget, algorithm.budget.reduction_factor))
        mode: fidelity.Mode = "median"
        if algorithm.name == "successiveHalving":
            mode = "halving"
        elif algorithm.name == "hyperband":
            mode = "hyperband"
        stopping = spec.early_stopping
        scheduler = fidelity.Scheduler(
            direction=direction,
            budgets=budgets,
            mode=mode,
            eta=algorithm.budget.reduction_factor,
            min_trials=stopping.min_trials if stopping else 5,
            start_step=stopping.start_step if stopping else 0,
        )
    return Search(
        sampler=sampler,
        scheduler=scheduler,
        parameter_order=tuple(p.name for p in parameters),
        budget_parameter=budget.name if budget is not None else None,
    )
