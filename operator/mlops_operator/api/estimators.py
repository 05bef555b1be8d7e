"""The allowlist of estimators a TrainingJob may name, and validation of their parameters.

A TrainingJob's ``model.params`` is checked here, in the operator, before any pod starts, so
``n_estimators: -3`` or a misspelt key fails in seconds with a message that names the
parameter, instead of after an image pull and a data load. The operator must not import
scikit-learn, so the constraints come from a static table: ``estimators.json`` beside this
module, package data read once with ``importlib.resources`` (data, not 6,000 lines of Python
for mypy and ruff to parse), generated from the real libraries by
``mlops_operator.crdgen.estimators`` and checked against them by a unit test and
``make verify``.

Values arrive as JSON, so the checks are JSON-typed and deliberately a little stricter than
scikit-learn: a boolean is not accepted where a number is expected, and only a JSON list is
"array-like". A float that is a whole number (``1.0``) may come back from the apiserver as an
integer, which matters for the few parameters where an int and a float mean different things
(``max_features``, ``max_samples``, ``min_samples_split``, ``min_samples_leaf``): write such
fractions as e.g. ``0.999`` or an explicit count.

Run ``python -m mlops_operator.crdgen.estimators`` after upgrading scikit-learn, XGBoost or
LightGBM; ``python -m mlops_operator.api.estimators --list`` prints the allowlist.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib.resources
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

Task = Literal["classification", "regression"]

# The names users may write in spec.model.estimator; a unit test checks it equals the table.
EstimatorName = Literal[
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ElasticNet",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GaussianNB",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
    "Lasso",
    "LinearRegression",
    "LogisticRegression",
    "MLPClassifier",
    "MLPRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "Ridge",
    "SVC",
    "SVR",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "XGBClassifier",
    "XGBRegressor",
]

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
PROBA_METRICS: tuple[str, ...] = ("roc_auc", "log_loss")
MINIMIZED_METRICS: tuple[str, ...] = ("log_loss", "rmse", "mae")
RANDOM_STATE_MAX = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Estimator:
    """One allowlisted estimator, as the table describes it."""

    name: str
    import_path: str
    library: str
    task: Task
    predict_proba: bool
    proba_params: Mapping[str, Any]
    gpu_params: Mapping[str, Any]
    params: Mapping[str, Mapping[str, Any]]
    distributed: bool = False
    """Trains on several workers (torch.distributed) when ``spec.workers > 1``."""

    @property
    def gpu_capable(self) -> bool:
        return bool(self.gpu_params)

    def has_proba(self, params: Mapping[str, Any]) -> bool:
        """Whether predict_proba exists with these params (SVC needs ``probability: true``)."""
        if self.predict_proba:
            return True
        return bool(self.proba_params) and all(params.get(k) == v for k, v in self.proba_params.items())


@functools.cache
def table() -> dict[str, Any]:
    """The generated table (``{"versions": ..., "estimators": ...}``), read once per process."""
    text = (
        importlib.resources.files("mlops_operator.api")
        .joinpath("estimators.json")
        .read_text(encoding="utf-8")
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _build() -> dict[str, Estimator]:
    out: dict[str, Estimator] = {}
    for name, entry in table()["estimators"].items():
        out[name] = Estimator(
            name=name,
            import_path=entry["import"],
            library=entry["library"],
            task=entry["task"],
            predict_proba=entry["predict_proba"],
            proba_params=entry["proba_params"],
            gpu_params=entry["gpu_params"],
            params=entry["params"],
            distributed=bool(entry.get("distributed", False)),
        )
    return out


REGISTRY: dict[str, Estimator] = _build()
LIBRARY_VERSIONS: dict[str, str] = dict(table()["versions"])


def names(task: Task | None = None) -> list[str]:
    return sorted(n for n, e in REGISTRY.items() if task is None or e.task == task)


def distributed_names() -> list[str]:
    """The estimators that train on several workers."""
    return sorted(n for n, e in REGISTRY.items() if e.distributed)


def get(name: str) -> Estimator:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown estimator {name!r}; allowed: {', '.join(names())}") from None


def metrics_for(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def default_direction(metric: str) -> Literal["maximize", "minimize"]:
    return "minimize" if metric in MINIMIZED_METRICS else "maximize"


# ---------------------------------------------------------------------------------------------
# Constraint checks on JSON values
# ---------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and not (
        isinstance(value, float) and math.isnan(value)
    )


def _in_bounds(value: float, c: Mapping[str, Any]) -> bool:
    lo, hi, closed = c.get("min"), c.get("max"), c.get("closed", "both")
    if lo is not None and (value < lo or (value == lo and closed in {"right", "neither"})):
        return False
    return not (hi is not None and (value > hi or (value == hi and closed in {"left", "neither"})))


def satisfies(value: Any, c: Mapping[str, Any]) -> bool:
    """Whether one JSON value meets one constraint of the table."""
    kind = c["kind"]
    if kind == "interval":
        typed = {"int": _is_int(value), "real": _is_number(value), "real_not_int": isinstance(value, float)}
        return typed[c["type"]] and _is_number(value) and _in_bounds(value, c)
    if kind == "options":
        return any(
            value == v and isinstance(value, bool) == isinstance(v, bool)
            for v in c["values"] + c.get("deprecated", [])
        )
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "none":
        return value is None
    if kind == "random_state":
        return value is None or (_is_int(value) and 0 <= value <= RANDOM_STATE_MAX)
    if kind == "verbose":
        return isinstance(value, bool) or (_is_int(value) and value >= 0)
    if kind == "array":
        return isinstance(value, list)
    if kind == "pattern":
        return isinstance(value, str) and re.match(c["regex"], value) is not None
    if kind == "type":
        checks = {
            "int": _is_int(value),
            "real": _is_number(value),
            "str": isinstance(value, str),
            "dict": isinstance(value, dict),
            "list": isinstance(value, list),
            "bool": isinstance(value, bool),
        }
        return checks.get(c["type"], False)
    return False  # "python": a callable or object that a JSON spec cannot carry.


def _fmt(x: Any) -> str:
    return json.dumps(x)


def describe(c: Mapping[str, Any]) -> str | None:
    """A constraint in words; None for what a spec cannot express (hidden or Python-only)."""
    if c.get("hidden") or c["kind"] == "python":
        return None
    kind = c["kind"]
    if kind == "interval":
        noun = {"int": "an int", "real": "a number", "real_not_int": "a float"}[c["type"]]
        lo, hi, closed = c.get("min"), c.get("max"), c.get("closed", "both")
        if lo is None and hi is None:
            return noun
        if hi is None:
            return f"{noun} {'>=' if closed in {'left', 'both'} else '>'} {_fmt(lo)}"
        if lo is None:
            return f"{noun} {'<=' if closed in {'right', 'both'} else '<'} {_fmt(hi)}"
        left = "[" if closed in {"left", "both"} else "("
        right = "]" if closed in {"right", "both"} else ")"
        return f"{noun} in {left}{_fmt(lo)}, {_fmt(hi)}{right}"
    if kind == "options":
        return "one of " + ", ".join(json.dumps(v) for v in c["values"])
    simple = {
        "bool": "a boolean",
        "none": "null",
        "random_state": f"an int in [0, {RANDOM_STATE_MAX}] or null",
        "verbose": "a boolean or an int >= 0",
        "array": "a list",
    }
    if kind in simple:
        return simple[kind]
    if kind == "pattern":
        return f"a string matching {c['regex']}"
    words: dict[str, str] = {
        "int": "an int",
        "real": "a number",
        "str": "a string",
        "dict": "an object",
        "list": "a list",
        "bool": "a boolean",
    }
    return words.get(str(c.get("type", "")), str(kind))


def describe_param(param: Mapping[str, Any]) -> str:
    words = [d for d in (describe(c) for c in param["constraints"]) if d]
    unique = list(dict.fromkeys(words))
    if not unique:
        return "not settable from a spec (it needs a Python object)"
    return " or ".join(unique)


def validate_param(estimator: Estimator, name: str, value: Any) -> str | None:
    param = estimator.params.get(name)
    if param is None:
        close = difflib.get_close_matches(name, list(estimator.params), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown parameter {name!r} for {estimator.name}{hint}"
    if any(satisfies(value, c) for c in param["constraints"]):
        return None
    return f"{name}: must be {describe_param(param)}, got {json.dumps(value)[:200]}"


def validate_params(estimator: str, params: Mapping[str, Any] | None) -> list[str]:
    """Errors for ``params`` of ``estimator``, each naming the parameter; empty when all is well."""
    try:
        entry = get(estimator)
    except KeyError as exc:
        return [str(exc.args[0])]
    errors: list[str] = []
    for name, value in sorted((params or {}).items()):
        error = validate_param(entry, name, value)
        if error:
            errors.append(error)
    return errors


# ---------------------------------------------------------------------------------------------
# ``--list``
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Print the allowlist; regenerating it is ``python -m mlops_operator.crdgen.estimators``."""
    parser = argparse.ArgumentParser(prog="python -m mlops_operator.api.estimators", description=__doc__)
    parser.add_argument(
        "--list", action="store_true", required=True, help="print the estimators and their parameters"
    )
    parser.parse_args(argv)
    for name in names():
        entry = REGISTRY[name]
        print(f"{name} ({entry.task}, {entry.import_path})")
        for pname, param in sorted(entry.params.items()):
            print(f"  {pname}: {describe_param(param)} (default {json.dumps(param['default'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
