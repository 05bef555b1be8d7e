"""Successive halving, Hyperband and the median stopping rule promote and stop the right trials."""

from __future__ import annotations

import collections
from typing import Any

from mlops_operator import search
from mlops_operator.api import sweep
from mlops_operator.search import fidelity, trials


def make_spec(algorithm: dict[str, Any], **extra: Any) -> sweep.HyperparameterSweepSpec:
    return sweep.HyperparameterSweepSpec.model_validate(
        {
            "trialTemplate": {"datasetRef": {"name": "d"}, "model": {"estimator": "RandomForestClassifier"}},
            "searchSpace": [
                {"name": "max_depth", "type": "int", "low": 2, "high": 20},
                {"name": "n_estimators", "type": "int", "low": 10, "high": 270},
            ],
            "objective": {"metric": "accuracy"},  # maximised
            "algorithm": algorithm,
            **extra,
        }
    )


def done(
    index: int, config: int, rung: int, value: float | None, *, state: str = "Succeeded"
) -> trials.Trial:
    return trials.Trial(
        index=index,
        params={"max_depth": config + 2},
        state=state,  # type: ignore[arg-type]
        value=value,
        config=config,
        rung=rung,
        finished=f"2025-01-01T00:00:{index:02d}Z",
    )


HALVING = make_spec(
    {"name": "successiveHalving", "budget": {"parameter": "n_estimators", "reductionFactor": 3}}
)


def test_halving_rungs_and_first_suggestions() -> None:
    algorithm = search.make(HALVING, seed=0)
    assert algorithm.scheduler.budgets == (10, 30, 90, 270)
    first = algorithm.suggest([], 4)
    assert [(s.config, s.rung, s.budget) for s in first] == [(0, 0, 10), (1, 0, 10), (2, 0, 10), (3, 0, 10)]
    assert all("n_estimators" not in s.params for s in first)  # the budget is set, not sampled
    assert algorithm.trial_params(first[0])["n_estimators"] == 10


def test_halving_promotes_the_top_third_of_each_rung_best_first() -> None:
    algorithm = search.make(HALVING, seed=0)
    values = [0.61, 0.93, 0.70, 0.88, 0.55, 0.97, 0.66, 0.72, 0.80]
    history = [done(i, i, 0, v) for i, v in enumerate(values)]
    out = algorithm.suggest(history, 3)
    # The three best of nine (configs 5, 1, 3) move to rung 1 with budget 30, best first.
    assert [(s.config, s.rung, s.budget) for s in out] == [(5, 1, 30), (1, 1, 30), (3, 1, 30)]
    assert out[0].params == history[5].params
    # With one slot only the best moves; the next call promotes the next one.
    assert [s.config for s in algorithm.suggest(history, 1)] == [5]
    assert algorithm.pruned(history) == {0, 2, 4, 6, 7, 8}


def test_halving_is_asynchronous_and_never_promotes_twice() -> None:
    algorithm = search.make(HALVING, seed=0)
    # Only 4 finished at rung 0: floor(4/3) = 1 promotion, the best; then new configurations.
    history = [done(0, 0, 0, 0.5), done(1, 1, 0, 0.9), done(2, 2, 0, 0.7), done(3, 3, 0, 0.6)]
    out = algorithm.suggest(history, 3)
    assert [(s.config, s.rung) for s in out] == [(1, 1), (4, 0), (5, 0)]
    # Once config 1 runs at rung 1 it is not promoted again from rung 0.
    history.append(trials.Trial(index=4, params=history[1].params, config=1, rung=1, state="Running"))
    assert [(s.config, s.rung) for s in algorithm.suggest(history, 2)] == [(4, 0), (5, 0)]


def test_halving_prefers_deeper_rungs_and_skips_failed_configurations() -> None:
    algorithm = search.make(HALVING, seed=0)
    history = [done(i, i, 0, 0.5 + i / 100) for i in range(9)]  # configs 8, 7, 6 are the top third
    history += [
        done(9, 8, 1, 0.95),
        done(10, 7, 1, 0.90),
        done(11, 6, 1, None, state="Failed"),
    ]
    out = algorithm.suggest(history, 2)
    # Rung 1 has two values (floor(2/3) = 0 promotions); rung 0's top third is already promoted.
    assert [(s.config, s.rung) for s in out] == [(9, 0), (10, 0)]
    history += [done(12, 5, 1, 0.99)]  # a late rung-0 promotion finished at rung 1 too
    out = algorithm.suggest(history, 2)
    assert [(s.config, s.rung, s.budget) for s in out[:1]] == [(5, 2, 90)]  # deepest first
    assert 6 not in {s.config for s in out}  # failed at rung 1: never promoted


def test_halving_minimize_direction() -> None:
    spec = make_spec(
        {"name": "successiveHalving", "budget": {"parameter": "n_estimators"}},
        objective={"metric": "log_loss"},
    )
    algorithm = search.make(spec, seed=0)
    history = [done(i, i, 0, v) for i, v in enumerate([0.5, 0.2, 0.9])]
    assert [s.config for s in algorithm.suggest(history, 1)] == [1]  # the lowest loss


def test_top_rung_is_final() -> None:
    algorithm = search.make(HALVING, seed=0)
    history = [done(0, 0, 3, 0.99), done(1, 1, 3, 0.98), done(2, 2, 3, 0.97)]
    assert all(s.rung == 0 for s in algorithm.suggest(history, 3))
    assert algorithm.pruned(history) == set()


def test_hyperband_deals_configurations_to_brackets_in_hyperband_proportions() -> None:
    cycle = fidelity.hyperband_cycle(3, 3)
    counts = collections.Counter(cycle)
    assert counts == {0: 27, 1: 12, 2: 6, 3: 4}  # ceil(4/(4-b) * 3^(3-b))
    prefix = collections.Counter(cycle[:49])
    assert prefix == counts
    spec = make_spec({"name": "hyperband", "budget": {"parameter": "n_estimators", "reductionFactor": 3}})
    algorithm = search.make(spec, seed=0)
    out = algorithm.suggest([], 49)
    assert collections.Counter(s.rung for s in out) == counts
    assert all(s.budget == algorithm.scheduler.budgets[s.rung] for s in out)


def test_hyperband_halves_within_a_bracket_only() -> None:
    spec = make_spec({"name": "hyperband", "budget": {"parameter": "n_estimators", "reductionFactor": 3}})
    algorithm = search.make(spec, seed=0)
    scheduler = algorithm.scheduler
    bracket0 = [c for c in range(60) if scheduler.first_rung(c) == 0][:3]
    bracket1 = [c for c in range(60) if scheduler.first_rung(c) == 1][:2]
    history = [done(i, c, 0, 0.5 + i / 10) for i, c in enumerate(bracket0)]
    history += [done(3 + i, c, 1, 0.99) for i, c in enumerate(bracket1)]
    promoted = [s for s in algorithm.suggest(history, 1)]
    # Bracket 0 has three values at rung 0: its best moves on; bracket 1's two do not count there.
    assert [(s.config, s.rung) for s in promoted] == [(bracket0[2], 1)]


MEDIAN = make_spec(
    {"name": "random", "budget": {"parameter": "n_estimators", "reductionFactor": 3}},
    earlyStopping={"minTrials": 3, "startStep": 0},
)


def test_median_rule_stops_configurations_worse_than_the_median_of_earlier_ones() -> None:
    algorithm = search.make(MEDIAN, seed=0)
    # Rung 0 in completion order: 0.70, 0.80, 0.60 (no rule yet: fewer than 3 earlier), then
    # 0.65 (median of earlier 0.70 -> stopped), 0.90 (continues), 0.72 (median 0.70 -> continues).
    values = [0.70, 0.80, 0.60, 0.65, 0.90, 0.72]
    history = [done(i, i, 0, v) for i, v in enumerate(values)]
    assert algorithm.pruned(history) == {3}
    out = algorithm.suggest(history, 10)
    promoted = [(s.config, s.rung, s.budget) for s in out if s.rung > 0]
    assert promoted == [(0, 1, 30), (1, 1, 30), (2, 1, 30), (4, 1, 30), (5, 1, 30)]
    assert [s.config for s in out if s.rung == 0] == [6, 7, 8, 9, 10]


def test_median_rule_decisions_are_final_and_respect_start_step() -> None:
    algorithm = search.make(MEDIAN, seed=0)
    history = [done(i, i, 0, v) for i, v in enumerate([0.9, 0.9, 0.9, 0.5])]
    assert algorithm.pruned(history) == {3}
    # Many worse trials finishing later do not revive config 3.
    history += [done(4 + i, 4 + i, 0, 0.1) for i in range(10)]
    assert 3 in algorithm.pruned(history)
    late = make_spec(
        {"name": "random", "budget": {"parameter": "n_estimators", "reductionFactor": 3}},
        earlyStopping={"minTrials": 3, "startStep": 1},
    )
    assert search.make(late, seed=0).pruned(history[:4]) == set()  # rung 0 is below startStep


def test_median_rule_configuration_climbs_to_the_top_rung() -> None:
    algorithm = search.make(MEDIAN, seed=0)
    history = [done(0, 0, 0, 0.8)]
    (s,) = algorithm.suggest(history, 1)
    assert (s.config, s.rung, s.budget) == (0, 1, 30)
    history += [done(1, 0, 1, 0.85), done(2, 0, 2, 0.86), done(3, 0, 3, 0.87)]
    (s,) = algorithm.suggest(history, 1)
    assert (s.config, s.rung) == (1, 0)  # config 0 finished at the top rung
