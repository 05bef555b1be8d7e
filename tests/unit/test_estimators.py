"""The estimator allowlist: still what the installed libraries say, and its checks name the parameter."""

from __future__ import annotations

import importlib
import typing
from typing import Any

import pytest

from mlops_operator.api import estimators
from mlops_operator.crdgen import estimators as estimators_gen

CANDIDATES: list[Any] = [
    -3,
    -1,
    0,
    1,
    2,
    3,
    7,
    100,
    2**33,
    0.0,
    0.25,
    0.5,
    1.0,
    1.5,
    -0.5,
    1e9,
    True,
    False,
    None,
    "foo",
    "auto",
    "sqrt",
    "balanced",
    "l2",
    "gini",
    [1, 2],
    [],
    {"a": 1},
]


def test_table_matches_installed_scikit_learn() -> None:
    fresh = estimators_gen.generate(include=("sklearn",))
    committed = {n: e for n, e in estimators.table()["estimators"].items() if e["library"] == "scikit-learn"}
    assert set(fresh["estimators"]) == set(committed)
    stale = [n for n, e in fresh["estimators"].items() if committed[n] != e]
    assert not stale, f"run `python -m mlops_operator.crdgen.estimators`: {stale} changed"


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_table_matches_installed_boosting_libraries(library: str) -> None:
    importlib.import_module(library)  # a dependency: missing means broken, not skipped
    fresh = estimators_gen.generate(include=(library,))
    committed = {n: e for n, e in estimators.table()["estimators"].items() if e["library"] == library}
    assert fresh["estimators"] == committed


def test_committed_file_is_what_the_generator_renders() -> None:
    """Byte for byte, so ``make verify`` (``crdgen.estimators --check``) and this agree."""
    committed = estimators_gen.TABLE_PATH.read_text(encoding="utf-8")
    assert estimators_gen.render(estimators.table()) == committed


def test_literal_names_equal_the_table() -> None:
    assert sorted(typing.get_args(estimators.EstimatorName)) == sorted(estimators.table()["estimators"])


def test_bad_values_are_refused_naming_the_parameter() -> None:
    assert estimators.validate_params("RandomForestClassifier", {"n_estimators": -3}) == [
        "n_estimators: must be an int >= 1, got -3"
    ]
    assert estimators.validate_params("RandomForestClassifier", {"foo": 1}) == [
        "unknown parameter 'foo' for RandomForestClassifier"
    ]
    assert estimators.validate_params("RandomForestClassifier", {"n_estimator": 10}) == [
        "unknown parameter 'n_estimator' for RandomForestClassifier; did you mean 'n_estimators'?"
    ]
    errors = estimators.validate_params("RandomForestClassifier", {"criterion": "mse", "max_depth": 0})
    assert errors == [
        'criterion: must be one of "entropy", "gini", "log_loss", got "mse"',
        "max_depth: must be an int >= 1 or null, got 0",
    ]
    assert estimators.validate_params("LogisticRegression", {"C": 0}) == ["C: must be a number > 0, got 0"]
    assert estimators.validate_params("XGBClassifier", {"subsample": 1.5}) == [
        "subsample: must be a number in (0, 1] or null, got 1.5"
    ]
    assert estimators.validate_params("NoSuchModel", {}) == [
        f"unknown estimator 'NoSuchModel'; allowed: {', '.join(estimators.names())}"
    ]


def test_good_values_pass() -> None:
    assert (
        estimators.validate_params(
            "RandomForestClassifier",
            {
                "n_estimators": 200,
                "max_depth": None,
                "max_features": "sqrt",
                "class_weight": "balanced",
                "random_state": 42,
                "min_samples_leaf": 0.1,
                "bootstrap": False,
            },
        )
        == []
    )
    assert estimators.validate_params("MLPClassifier", {"hidden_layer_sizes": [64, 32], "alpha": 1e-4}) == []
    assert estimators.validate_params("XGBRegressor", {"device": "cuda:1", "learning_rate": 0.1}) == []
    assert estimators.validate_params("LGBMClassifier", {"num_leaves": 31, "verbose": -1}) == []


def test_json_booleans_are_not_numbers() -> None:
    assert estimators.validate_params("RandomForestClassifier", {"n_estimators": True}) == [
        "n_estimators: must be an int >= 1, got true"
    ]


def _sklearn_accepts(cls: type[Any], name: str, value: Any) -> bool:
    from sklearn.utils import _param_validation as pv

    try:
        pv.validate_parameter_constraints(
            {name: cls._parameter_constraints[name]}, {name: value}, cls.__name__
        )
    except (pv.InvalidParameterError, ValueError, TypeError):
        return False
    return True


@pytest.mark.parametrize("name", [p.rpartition(".")[2] for p in estimators_gen.SKLEARN_ESTIMATORS])
def test_checks_agree_with_scikit_learn(name: str) -> None:
    """Ours never accepts what scikit-learn refuses, and refuses what it accepts only for JSON reasons."""
    entry = estimators.get(name)
    module, _, cls_name = entry.import_path.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    for pname, param in entry.params.items():
        options = [v for c in param["constraints"] if c["kind"] == "options" for v in c["values"]]
        for value in [*CANDIDATES, *options]:
            ours = estimators.validate_param(entry, pname, value) is None
            theirs = _sklearn_accepts(cls, pname, value)
            if ours:
                assert theirs, f"{name}.{pname}={value!r}: we accept what scikit-learn refuses"
            elif theirs:
                # Deliberately stricter: a JSON boolean is not a number, a JSON object is not a list.
                assert isinstance(value, bool | dict), f"{name}.{pname}={value!r}: refused but valid"


def test_describe_lists_every_estimator_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    assert estimators.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "n_estimators: an int >= 1 (default 100)" in out
    assert out.count("\n") > 300


def test_proba_and_gpu_metadata() -> None:
    assert not estimators.get("SVC").has_proba({})
    assert estimators.get("SVC").has_proba({"probability": True})
    assert estimators.get("RandomForestClassifier").has_proba({})
    assert estimators.get("XGBClassifier").gpu_params == {"device": "cuda", "tree_method": "hist"}
    assert not estimators.get("RandomForestClassifier").gpu_capable
