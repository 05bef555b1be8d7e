"""Model-based samplers on synthetic objectives, and reproducibility of every algorithm from history.

The sweep rebuilds its history from TrainingJobs on every pass, so the properties that matter
are: TPE (and CMA-ES) actually learn from that history, the same history always gives the same
suggestions, and asking for a batch gives what asking one at a time across operator restarts
gives.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from mlops_operator import search
from mlops_operator.api import sweep
from mlops_operator.search import trials

Objective = Callable[[dict[str, Any], Any], float]


def make_spec(algorithm: dict[str, Any], parameters: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    return sweep.HyperparameterSweepSpec.model_validate(
        {
            "trialTemplate": {"datasetRef": {"name": "d"}, "model": {"estimator": "RandomForestRegressor"}},
            "searchSpace": parameters
            or [
                {"name": "x", "type": "float", "low": -5, "high": 10},
                {"name": "y", "type": "float", "low": 0, "high": 15},
            ],
            "objective": {"metric": "rmse"},  # minimised
            "algorithm": algorithm,
            **extra,
        }
    )


def branin(params: dict[str, Any], budget: Any = None) -> float:
    x, y = params["x"], params["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10  # minimum 0.398


def sequential(algorithm: search.Search, objective: Objective, n: int) -> list[trials.Trial]:
    history: list[trials.Trial] = []
    for i in range(n):
        (s,) = algorithm.suggest(history, 1)
        history.append(
            trials.Trial(
                index=i,
                params=s.params,
                state="Succeeded",
                value=objective(dict(s.params), s.budget),
                config=s.config,
                rung=s.rung,
                generation=s.generation,
                finished=f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            )
        )
    return history


def median_best(name: str, n: int) -> float:
    spec = make_spec({"name": name})
    bests = [min(t.value or 0.0 for t in sequential(search.make(spec, seed=s), branin, n)) for s in range(10)]
    return statistics.median(bests)


def test_tpe_beats_random_on_branin_over_ten_seeds() -> None:
    tpe, rnd = median_best("tpe", 30), median_best("random", 30)
    assert tpe < rnd, (tpe, rnd)
    assert tpe < 1.0  # near the optimum 0.398 after 30 trials


def test_cmaes_beats_random_on_branin_over_ten_seeds() -> None:
    cma, rnd = median_best("cmaes", 40), median_best("random", 40)
    assert cma < rnd, (cma, rnd)


def test_tpe_handles_int_log_step_and_categorical_parameters() -> None:
    parameters = [
        {"name": "n", "type": "int", "low": 1, "high": 1000, "log": True},
        {"name": "f", "type": "float", "low": 0.0, "high": 1.0, "step": 0.125},
        {"name": "c", "type": "categorical", "values": ["a", "b", None]},
        {"name": "k", "type": "int", "low": 2, "high": 20, "step": 3},
    ]
    spec = make_spec({"name": "tpe", "startupTrials": 3}, parameters)

    def objective(p: dict[str, Any], _: Any) -> float:
        return abs(math.log(p["n"]) - 3) + abs(p["f"] - 0.5) + (0 if p["c"] is None else 1) + abs(p["k"] - 11)

    history = sequential(search.make(spec, seed=5), objective, 25)
    for t in history:
        p = t.params
        assert type(p["n"]) is int and 1 <= p["n"] <= 1000
        assert p["f"] in [k / 8 for k in range(9)]
        assert p["c"] in ("a", "b", None)
        assert p["k"] in (2, 5, 8, 11, 14, 17, 20)
    assert min(t.value or 0.0 for t in history) < 1.5


@pytest.mark.parametrize(
    "algorithm",
    [
        {"name": "random"},
        {"name": "grid", "gridPoints": 6},
        {"name": "tpe", "startupTrials": 4},
        {"name": "cmaes", "populationSize": 4},
        {"name": "successiveHalving", "budget": {"parameter": "n", "reductionFactor": 3}},
        {"name": "hyperband", "budget": {"parameter": "n", "reductionFactor": 3}, "sampler": "tpe"},
        {"name": "tpe", "budget": {"parameter": "n"}},
    ],
    ids=["random", "grid", "tpe", "cmaes", "halving", "hyperband-tpe", "tpe-median"],
)
def test_same_history_gives_same_suggestions_and_batches_equal_restarts(algorithm: dict[str, Any]) -> None:
    parameters = [
        {"name": "x", "type": "float", "low": -5, "high": 10},
        {"name": "y", "type": "float", "low": 0, "high": 15},
        {"name": "n", "type": "int", "low": 1, "high": 27},
    ]
    extra = (
        {"earlyStopping": {"minTrials": 3}} if algorithm.get("budget") and algorithm["name"] == "tpe" else {}
    )
    spec = make_spec(algorithm, parameters, **extra)

    def objective(p: dict[str, Any], budget: Any) -> float:
        return branin(p) + 30.0 / float(budget or p.get("n") or 27)

    a = simulate(spec, objective, batch=True)
    b = simulate(spec, objective, batch=False)
    assert a == b
    assert len(a) == 40
    assert len({(s[1], s[2]) for s in a}) == len(a)  # no configuration runs twice at one rung


def simulate(
    spec: sweep.HyperparameterSweepSpec, objective: Objective, *, batch: bool
) -> list[tuple[Any, ...]]:
    """A sweep with parallelism 4 where the oldest running trial finishes first.

    ``batch``: fill all free slots with one ``suggest`` call and keep the algorithm object;
    otherwise fill them one call at a time with a fresh algorithm each time (an operator that
    restarts between every trial it creates). The created sequences must be identical.
    """
    parallelism, total = 4, 40
    history: list[trials.Trial] = []
    created: list[tuple[Any, ...]] = []
    kept = search.make(spec, seed=99)
    clock = 0
    while len(history) < total or any(not t.done for t in history):
        running = [t for t in history if not t.done]
        free = min(parallelism - len(running), total - len(history))
        if free > 0:
            if batch:
                new = kept.suggest(history, free)
            else:
                new = []
                for _ in range(free):
                    pending = [*history, *[_pending(len(history) + i, s) for i, s in enumerate(new)]]
                    new.extend(search.make(spec, seed=99).suggest(pending, 1))
            for s in new:
                history.append(_pending(len(history), s))
                created.append(
                    (len(history) - 1, s.config, s.rung, tuple(sorted(s.params.items())), s.budget)
                )
            if not new and not running:
                break
        # The oldest unfinished trial finishes.
        oldest = next(t for t in history if not t.done)
        clock += 1
        value = objective(dict(oldest.params), kept.trial_params(_suggestion(oldest, kept)).get("n"))
        history[oldest.index] = trials.Trial(
            index=oldest.index,
            params=oldest.params,
            state="Succeeded",
            value=value,
            config=oldest.config,
            rung=oldest.rung,
            generation=oldest.generation,
            finished=f"2025-01-01T01:{clock // 60:02d}:{clock % 60:02d}Z",
        )
    return created


def _pending(index: int, s: trials.Suggestion) -> trials.Trial:
    return trials.Trial(index=index, params=s.params, config=s.config, rung=s.rung, generation=s.generation)


def _suggestion(t: trials.Trial, algorithm: search.Search) -> trials.Suggestion:
    return trials.Suggestion(
        config=t.config_id, params=t.params, rung=t.rung, budget=algorithm.scheduler.budget(t.rung)
    )


def test_tpe_learns_from_pruned_and_running_configurations() -> None:
    """Rebuilt study: COMPLETE, PRUNED (with rung values), RUNNING and FAIL configurations all load."""
    spec = make_spec({"name": "tpe", "startupTrials": 2})
    history = [
        trials.Trial(index=0, params={"x": 1.0, "y": 2.0}, state="Succeeded", value=3.0),
        trials.Trial(index=1, params={"x": 2.0, "y": 3.0}, state="Failed"),
        trials.Trial(index=2, params={"x": 3.0, "y": 4.0}, state="Running"),
        trials.Trial(index=3, params={"x": 99.0, "y": 4.0}, state="Succeeded", value=1.0),  # outside: skipped
        trials.Trial(index=4, params={"x": 4.0, "y": 5.0}, state="Succeeded", value=2.0),
    ]
    first = search.make(spec, seed=1).suggest(history, 2)
    again = search.make(spec, seed=1).suggest(list(reversed(history)), 2)
    assert first == again  # order of observation does not matter
    assert [s.config for s in first] == [5, 6]
    assert first[0].params != first[1].params


def test_cmaes_replays_generations_from_history() -> None:
    spec = make_spec({"name": "cmaes", "populationSize": 4})
    algorithm = search.make(spec, seed=4)
    first = algorithm.suggest([], 4)
    assert [s.generation for s in first] == [0, 0, 0, 0]
    done = [
        trials.Trial(
            index=i,
            params=s.params,
            state="Succeeded",
            value=branin(dict(s.params)),
            generation=s.generation,
            finished=f"t{i}",
        )
        for i, s in enumerate(first)
    ]
    nxt = algorithm.suggest(done, 2)
    assert [s.generation for s in nxt] == [1, 1]
    # Until four of generation 0 have a value, the optimizer stays in generation 0.
    partial = [*done[:3], trials.Trial(index=3, params=first[3].params, state="Running", generation=0)]
    assert [s.generation for s in algorithm.suggest(partial, 1)] == [0]
