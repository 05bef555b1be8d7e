"""Search-space arithmetic: grids enumerate exactly, random draws respect bounds, types, log and step."""

from __future__ import annotations

import itertools
import math
import random
import re
from typing import Any

import pydantic
import pytest

from mlops_operator import search
from mlops_operator.api import sweep
from mlops_operator.search import space


def param(**kw: Any) -> sweep.SearchParameter:
    return sweep.SearchParameter.model_validate(kw)


def make_spec(
    parameters: list[dict[str, Any]], algorithm: dict[str, Any], **extra: Any
) -> sweep.HyperparameterSweepSpec:
    return sweep.HyperparameterSweepSpec.model_validate(
        {
            "trialTemplate": {"datasetRef": {"name": "d"}, "model": {"estimator": "RandomForestClassifier"}},
            "searchSpace": parameters,
            "objective": {"metric": "accuracy"},
            "algorithm": algorithm,
            **extra,
        }
    )


# --------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------


def test_grid_enumerates_every_combination_exactly_once_in_product_order() -> None:
    spec = make_spec(
        [
            {"name": "max_depth", "type": "int", "low": 2, "high": 8, "step": 3},
            {"name": "criterion", "type": "categorical", "values": ["gini", "entropy", None]},
            {"name": "max_features", "type": "float", "low": 0.25, "high": 1.0, "step": 0.25},
        ],
        {"name": "grid"},
    )
    algorithm = search.make(spec, seed=0)
    assert algorithm.capacity == 3 * 3 * 4
    suggestions = algorithm.suggest([], 100)
    got = [dict(s.params) for s in suggestions]
    expected = [
        {"max_depth": d, "criterion": c, "max_features": f}
        for d, c, f in itertools.product([2, 5, 8], ["gini", "entropy", None], [0.25, 0.5, 0.75, 1.0])
    ]
    assert got == expected
    assert [s.config for s in suggestions] == list(range(36))
    assert all(type(p["max_depth"]) is int and type(p["max_features"]) is float for p in got)


def test_grid_float_without_step_uses_grid_points_linear_and_log() -> None:
    linear = param(name="x", type="float", low=0.0, high=1.0)
    assert space.grid_values(linear, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    logp = param(name="C", type="float", low=0.001, high=10.0, log=True)
    values = space.grid_values(logp, 5)
    assert values[0] == pytest.approx(0.001) and values[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert ratios == pytest.approx([10.0] * 4)
    with pytest.raises(ValueError, match="gridPoints"):
        space.grid_values(linear, None)


def test_grid_int_without_step_lists_every_integer_and_grid_points_dedupe() -> None:
    p = param(name="k", type="int", low=1, high=6)
    assert space.grid_values(p, None) == [1, 2, 3, 4, 5, 6]
    assert space.grid_values(p, 20) == [1, 2, 3, 4, 5, 6]  # rounded points never repeat


def test_grid_point_indexes_lazily_and_refuses_past_the_end() -> None:
    params = [
        param(name="a", type="int", low=0, high=2),
        param(name="b", type="categorical", values=["x", "y"]),
    ]
    assert [space.grid_point(params, None, k) for k in range(6)] == space.grid(params, None)
    with pytest.raises(IndexError):
        space.grid_point(params, None, 6)


def test_grid_sweep_stops_at_its_size() -> None:
    spec = make_spec([{"name": "k", "type": "int", "low": 1, "high": 3}], {"name": "grid"})
    algorithm = search.make(spec, seed=0)
    first = algorithm.suggest([], 2)
    history = [
        search.trials.Trial(index=s.config, params=s.params, state="Succeeded", value=0.5) for s in first
    ]
    assert [s.params["k"] for s in algorithm.suggest(history, 5)] == [3]
    history.append(search.trials.Trial(index=2, params={"k": 3}, state="Succeeded", value=0.5))
    assert algorithm.suggest(history, 5) == []


# --------------------------------------------------------------------------------------------
# Random
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "check"),
    [
        ({"type": "float", "low": -2.5, "high": 7.0}, lambda v: type(v) is float and -2.5 <= v <= 7.0),
        ({"type": "int", "low": 3, "high": 9}, lambda v: type(v) is int and 3 <= v <= 9),
        ({"type": "int", "low": 1, "high": 1000, "log": True}, lambda v: type(v) is int and 1 <= v <= 1000),
        ({"type": "float", "low": 1e-4, "high": 1.0, "log": True}, lambda v: 1e-4 <= v <= 1.0),
        (
            {"type": "float", "low": 0.1, "high": 0.9, "step": 0.2},
            lambda v: v in (0.1, 0.3, 0.5, 0.7, 0.9),
        ),
        ({"type": "int", "low": 10, "high": 50, "step": 20}, lambda v: v in (10, 30, 50)),
        ({"type": "categorical", "values": ["a", 3, None, True]}, lambda v: v in ("a", 3, None, True)),
    ],
)
def test_random_respects_bounds_types_and_steps(kw: dict[str, Any], check: Any) -> None:
    p = param(name="p", **kw)
    rng = random.Random(7)
    values = [space.sample(p, rng) for _ in range(2000)]
    assert all(check(v) for v in values), [v for v in values if not check(v)][:5]
    assert all(space.contains(p, v) for v in values)
    if p.type == "categorical":
        assert {repr(v) for v in values} == {repr(v) for v in p.values or []}  # every choice shows up


def test_random_log_scale_is_uniform_in_log_space() -> None:
    p = param(name="lr", type="float", low=1e-5, high=1e-1, log=True)
    rng = random.Random(3)
    logs = [math.log10(space.sample(p, rng)) for _ in range(4000)]
    below = sum(1 for x in logs if x < -3) / len(logs)  # half of [-5, -1] in log space
    assert 0.45 < below < 0.55


def test_random_sweep_is_a_function_of_seed_and_configuration() -> None:
    spec = make_spec(
        [
            {"name": "x", "type": "float", "low": 0, "high": 1},
            {"name": "k", "type": "int", "low": 1, "high": 99},
        ],
        {"name": "random"},
    )
    a = search.make(spec, seed=11).suggest([], 5)
    b = search.make(spec, seed=11).suggest([], 5)
    c = search.make(spec, seed=12).suggest([], 5)
    assert a == b
    assert [s.params for s in a] != [s.params for s in c]
    # Configuration 3 is the same whether asked alone or among others.
    history = [search.trials.Trial(index=i, params=s.params) for i, s in enumerate(a[:3])]
    assert search.make(spec, seed=11).suggest(history, 1)[0].params == a[3].params


# --------------------------------------------------------------------------------------------
# Unit cube, rungs, seeds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"type": "float", "low": -3.0, "high": 5.0},
        {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        {"type": "int", "low": 2, "high": 40},
        {"type": "int", "low": 1, "high": 512, "log": True},
        {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
    ],
)
def test_unit_cube_round_trip(kw: dict[str, Any]) -> None:
    p = param(name="p", **kw)
    rng = random.Random(1)
    for _ in range(200):
        v = space.sample(p, rng)
        assert space.from_unit(p, space.to_unit(p, v)) == pytest.approx(v)
    assert space.contains(p, space.from_unit(p, 0.0)) and space.contains(p, space.from_unit(p, 1.0))


def test_rung_budgets() -> None:
    assert space.rung_budgets(param(name="n", type="int", low=10, high=270), 3) == [10, 30, 90, 270]
    assert space.rung_budgets(param(name="n", type="int", low=10, high=200), 3) == [10, 30, 90, 200]
    # 270 would sit within sqrt(3) of 300: merged into the top rung.
    assert space.rung_budgets(param(name="n", type="int", low=10, high=300), 3) == [10, 30, 90, 300]
    assert space.rung_budgets(param(name="f", type="float", low=0.1, high=1.0), 2) == pytest.approx(
        [0.1, 0.2, 0.4, 1.0]
    )


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert space.derive_seed(42, "tpe", 3) == space.derive_seed(42, "tpe", 3)
    seeds = {space.derive_seed(42, "tpe", k) for k in range(1000)}
    assert len(seeds) == 1000
    assert all(0 < s < 2**31 for s in seeds)
    assert space.seed_from_uid("0b6c8b1e-uid") == space.seed_from_uid("0b6c8b1e-uid")


# --------------------------------------------------------------------------------------------
# Validation: the model refuses what the CRD's CEL refuses, and problems() what CEL cannot see
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"type": "int", "low": 5, "high": 2}, "low (5) must be less than high (2)"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "categorical", "values": []}, "at least 1 item"),
        ({"type": "categorical"}, "needs at least one value"),
        ({"type": "categorical", "values": ["a", "a"]}, "distinct"),
        ({"type": "float", "low": 0, "high": 1, "step": 0}, "greater than 0"),
        ({"type": "float", "low": 0, "high": 1, "step": 2}, "must not exceed high - low"),
        ({"type": "int", "low": 0.5, "high": 3}, "whole numbers"),
        ({"type": "float", "low": 1, "high": 3, "values": [1]}, "only for categorical"),
        ({"type": "float", "low": 1}, "low and high are required"),
        ({"type": "float", "low": 1e-3, "high": 1, "log": True, "step": 0.1}, "cannot be combined"),
    ],
)
def test_invalid_parameters_are_refused_with_the_field_named(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        param(name="p", **kw)


def test_problems_budget_checks() -> None:
    base = [{"name": "max_depth", "type": "int", "low": 2, "high": 8}]
    missing = make_spec(base, {"name": "successiveHalving", "budget": {"parameter": "n_estimators"}})
    assert any("n_estimators is not in searchSpace" in p for p in space.problems(missing))
    narrow = make_spec(
        [*base, {"name": "n_estimators", "type": "int", "low": 10, "high": 15}],
        {"name": "hyperband", "budget": {"parameter": "n_estimators", "reductionFactor": 3}},
    )
    assert any("single rung" in p for p in space.problems(narrow))
    only_budget = make_spec(
        [{"name": "n_estimators", "type": "int", "low": 10, "high": 90}],
        {"name": "successiveHalving", "budget": {"parameter": "n_estimators"}},
    )
    assert any("nothing to search" in p for p in space.problems(only_budget))
    ok = make_spec(
        [*base, {"name": "n_estimators", "type": "int", "low": 10, "high": 90}],
        {"name": "successiveHalving", "budget": {"parameter": "n_estimators"}},
    )
    assert space.problems(ok) == []
    with pytest.raises(ValueError, match="not in searchSpace"):
        search.make(missing, seed=0)
