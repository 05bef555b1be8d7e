"""Generate ``mlops_operator/api/estimators.json`` from the installed libraries.

The operator validates ``model.params`` before any pod starts, but it must not import
scikit-learn (heavy, and the api layer stays pure). So the allowlist is a static JSON data
file, generated here from the real libraries: scikit-learn's own ``_parameter_constraints``
and ``inspect.signature`` for its estimators, and hand-written constraints (checked against
the installed signatures) for XGBoost and LightGBM, which publish no machine-readable
constraints. It sits beside the CRD generator because it is the same kind of thing: a
build-time tool that turns a source of truth into a committed file, never imported by the
operator or the workloads.

``python -m mlops_operator.crdgen.estimators`` rewrites the file after an upgrade of
scikit-learn, XGBoost or LightGBM; ``--check`` (``make verify``) fails when the committed
file is not byte for byte what this would write. ``tests/unit/test_estimators.py``
regenerates in memory and compares too, so an upgrade that changes a parameter fails the
tests until the file is regenerated.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import numbers
import pathlib
import sys
from typing import Any

from mlops_operator import api

TABLE_PATH = pathlib.Path(api.__file__).with_name("estimators.json")

SKLEARN_ESTIMATORS: tuple[str, ...] = (
    "sklearn.linear_model.LogisticRegression",
    "sklearn.linear_model.LinearRegression",
    "sklearn.linear_model.Ridge",
    "sklearn.linear_model.Lasso",
    "sklearn.linear_model.ElasticNet",
    "sklearn.tree.DecisionTreeClassifier",
    "sklearn.tree.DecisionTreeRegressor",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.ensemble.RandomForestRegressor",
    "sklearn.ensemble.ExtraTreesClassifier",
    "sklearn.ensemble.ExtraTreesRegressor",
    "sklearn.ensemble.GradientBoostingClassifier",
    "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.ensemble.HistGradientBoostingClassifier",
    "sklearn.ensemble.HistGradientBoostingRegressor",
    "sklearn.svm.SVC",
    "sklearn.svm.SVR",
    "sklearn.neighbors.KNeighborsClassifier",
    "sklearn.neighbors.KNeighborsRegressor",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.neural_network.MLPClassifier",
    "sklearn.neural_network.MLPRegressor",
)

# Estimators whose predict_proba exists only with a parameter set (sklearn's available_if).
PROBA_PARAMS: dict[str, dict[str, Any]] = {"SVC": {"probability": True}}

# ---------------------------------------------------------------------------------------------
# Hand-written constraints for the libraries without machine-readable ones. Sources: the
# XGBoost parameter reference (doc/parameter.rst) and LightGBM's Parameters page.
# ---------------------------------------------------------------------------------------------


def _int(lo: float | None = None, hi: float | None = None, closed: str = "both") -> dict[str, Any]:
    return {"kind": "interval", "type": "int", "min": lo, "max": hi, "closed": closed}


def _real(lo: float | None = None, hi: float | None = None, closed: str = "both") -> dict[str, Any]:
    return {"kind": "interval", "type": "real", "min": lo, "max": hi, "closed": closed}


def _opts(*values: Any) -> dict[str, Any]:
    return {"kind": "options", "values": list(values)}


_NONE = {"kind": "none"}
_BOOL = {"kind": "bool"}
_STR = {"kind": "type", "type": "str"}
_ARRAY = {"kind": "array"}
_DICT = {"kind": "type", "type": "dict"}
_SEED = {"kind": "random_state"}

_XGB_COMMON: dict[str, list[dict[str, Any]]] = {
    "n_estimators": [_int(1, None), _NONE],
    "max_depth": [_int(0, None), _NONE],
    "max_leaves": [_int(0, None), _NONE],
    "max_bin": [_int(2, None), _NONE],
    "grow_policy": [_opts("depthwise", "lossguide"), _NONE],
    "learning_rate": [_real(0, None), _NONE],
    "verbosity": [_int(0, 3), _NONE],
    "booster": [_opts("gbtree", "gblinear", "dart"), _NONE],
    "tree_method": [_opts("auto", "exact", "approx", "hist"), _NONE],
    "n_jobs": [{"kind": "type", "type": "int"}, _NONE],
    "gamma": [_real(0, None), _NONE],
    "min_child_weight": [_real(0, None), _NONE],
    "max_delta_step": [_real(0, None), _NONE],
    "subsample": [_real(0, 1, "right"), _NONE],
    "sampling_method": [_opts("uniform", "gradient_based"), _NONE],
    "colsample_bytree": [_real(0, 1, "right"), _NONE],
    "colsample_bylevel": [_real(0, 1, "right"), _NONE],
    "colsample_bynode": [_real(0, 1, "right"), _NONE],
    "reg_alpha": [_real(0, None), _NONE],
    "reg_lambda": [_real(0, None), _NONE],
    "scale_pos_weight": [_real(0, None, "neither"), _NONE],
    "base_score": [{"kind": "type", "type": "real"}, _NONE],
    "random_state": [_SEED],
    "num_parallel_tree": [_int(1, None), _NONE],
    "importance_type": [_opts("gain", "weight", "cover", "total_gain", "total_cover"), _NONE],
    "device": [{"kind": "pattern", "regex": "^(cpu|cuda|gpu)(:[0-9]+)?$"}, _NONE],
    "validate_parameters": [_BOOL, _NONE],
    "max_cat_to_onehot": [_int(1, None), _NONE],
    "max_cat_threshold": [_int(1, None), _NONE],
    "multi_strategy": [_opts("one_output_per_tree", "multi_output_tree"), _NONE],
    "eval_metric": [_STR, _ARRAY, _NONE],
    "interaction_constraints": [_STR, _ARRAY, _NONE],
    "monotone_constraints": [_STR, _ARRAY, _DICT, _NONE],
}
_LGBM_COMMON: dict[str, list[dict[str, Any]]] = {
    "boosting_type": [_opts("gbdt", "dart", "rf")],
    "num_leaves": [_int(2, 131072)],
    "max_depth": [_int(None, None)],
    "learning_rate": [_real(0, None, "neither")],
    "n_estimators": [_int(1, None)],
    "subsample_for_bin": [_int(1, None)],
    "class_weight": [_DICT, _opts("balanced"), _NONE],
    "min_split_gain": [_real(0, None)],
    "min_child_weight": [_real(0, None)],
    "min_child_samples": [_int(0, None)],
    "subsample": [_real(0, 1, "right")],
    "subsample_freq": [_int(0, None)],
    "colsample_bytree": [_real(0, 1, "right")],
    "reg_alpha": [_real(0, None)],
    "reg_lambda": [_real(0, None)],
    "random_state": [_SEED],
    "n_jobs": [{"kind": "type", "type": "int"}, _NONE],
    "importance_type": [_opts("split", "gain")],
    # Passed through **kwargs to the LightGBM core; -1 silences it.
    "verbose": [_int(None, None)],
}
HAND_WRITTEN: dict[str, dict[str, Any]] = {
    "xgboost.XGBClassifier": {
        "task": "classification",
        "params": {
            **_XGB_COMMON,
            "objective": [
                _opts(
                    "binary:logistic", "binary:logitraw", "binary:hinge", "multi:softprob", "multi:softmax"
                ),
                _NONE,
            ],
        },
        "gpu_params": {"device": "cuda", "tree_method": "hist"},
    },
    "xgboost.XGBRegressor": {
        "task": "regression",
        "params": {
            **_XGB_COMMON,
            "objective": [
                _opts(
                    "reg:squarederror",
                    "reg:squaredlogerror",
                    "reg:pseudohubererror",
                    "reg:absoluteerror",
                    "reg:quantileerror",
                    "count:poisson",
                    "reg:gamma",
                    "reg:tweedie",
                ),
                _NONE,
            ],
        },
        "gpu_params": {"device": "cuda", "tree_method": "hist"},
    },
    "lightgbm.LGBMClassifier": {
        "task": "classification",
        "params": {**_LGBM_COMMON, "objective": [_opts("binary", "multiclass", "multiclassova"), _NONE]},
    },
    "lightgbm.LGBMRegressor": {
        "task": "regression",
        "params": {
            **{k: v for k, v in _LGBM_COMMON.items() if k != "class_weight"},
            "objective": [
                _opts(
                    "regression",
                    "regression_l1",
                    "huber",
                    "fair",
                    "poisson",
                    "quantile",
                    "mape",
                    "gamma",
                    "tweedie",
                ),
                _NONE,
            ],
        },
    },
}

# The built-in PyTorch networks: written out whole (the operator never imports the workloads,
# where the network lives), so every field is given here, defaults included.
_TORCH_COMMON: dict[str, dict[str, Any]] = {
    "hidden_layers": {"default": 2, "constraints": [_int(1, 8)]},
    "hidden_units": {"default": 64, "constraints": [_int(1, 4096)]},
    "dropout": {"default": 0.1, "constraints": [_real(0, 1, "left")]},
    "learning_rate": {"default": 0.001, "constraints": [_real(0, 1, "right")]},
    "weight_decay": {"default": 0.0, "constraints": [_real(0, None)]},
    "batch_size": {"default": 64, "constraints": [_int(1, 65536)]},
    "epochs": {"default": 100, "constraints": [_int(1, 10000)]},
    "patience": {"default": 10, "constraints": [_int(0, 10000)]},
    "random_state": {"default": None, "constraints": [_SEED]},
}
STATIC: dict[str, dict[str, Any]] = {
    "TorchMLPClassifier": {
        "import": "mlops_workloads.nn.TorchMLPClassifier",
        "library": "pytorch",
        "task": "classification",
        "predict_proba": True,
        "proba_params": {},
        "gpu_params": {"device": "cuda"},
        "distributed": True,
        "params": _TORCH_COMMON,
    },
    "TorchMLPRegressor": {
        "import": "mlops_workloads.nn.TorchMLPRegressor",
        "library": "pytorch",
        "task": "regression",
        "predict_proba": False,
        "proba_params": {},
        "gpu_params": {"device": "cuda"},
        "distributed": True,
        "params": _TORCH_COMMON,
    },
}

# ---------------------------------------------------------------------------------------------
# scikit-learn constraints → JSON
# ---------------------------------------------------------------------------------------------


def _bound(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _json_value(value: Any) -> Any:
    """Option values as JSON: numpy scalars to Python, non-JSON values (nan, objects) to None."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if math.isnan(float(value)) else float(value)
    return repr(value)


def convert_constraint(constraint: Any) -> dict[str, Any]:
    """One scikit-learn constraint as a JSON object the pure validator understands."""
    from sklearn.utils import _param_validation as pv

    hidden = False
    if isinstance(constraint, pv.Hidden):
        hidden = True
        constraint = constraint.constraint
    c = pv.make_constraint(constraint)
    out: dict[str, Any]
    if isinstance(c, pv.Interval):
        kind = "int" if c.type is numbers.Integral else "real_not_int" if c.type is pv.RealNotInt else "real"
        out = {
            "kind": "interval",
            "type": kind,
            "min": _bound(c.left),
            "max": _bound(c.right),
            "closed": c.closed,
        }
    elif isinstance(c, pv.StrOptions | pv.Options):
        values = sorted((_json_value(v) for v in c.options if v not in c.deprecated), key=repr)
        out = {"kind": "options", "values": values}
        if c.deprecated:
            out["deprecated"] = sorted(_json_value(v) for v in c.deprecated)
    elif isinstance(c, pv._Booleans):
        out = {"kind": "bool"}
    elif isinstance(c, pv._NoneConstraint):
        out = {"kind": "none"}
    elif isinstance(c, pv._RandomStates):
        out = {"kind": "random_state"}
    elif isinstance(c, pv._VerboseHelper):
        out = {"kind": "verbose"}
    elif isinstance(c, (pv._ArrayLikes, pv._IterablesNotString)):
        out = {"kind": "array"}
    elif isinstance(c, pv._InstancesOf):
        types = {
            numbers.Integral: "int",
            numbers.Real: "real",
            str: "str",
            dict: "dict",
            list: "list",
            tuple: "list",
            bool: "bool",
        }
        name = types.get(c.type)
        out = {"kind": "type", "type": name} if name else {"kind": "python", "what": c.type.__name__}
    elif isinstance(c, pv._Callables):
        out = {"kind": "python", "what": "callable"}
    else:
        out = {"kind": "python", "what": type(c).__name__.lstrip("_")}
    if hidden:
        out["hidden"] = True
    return out


def _default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _load(import_path: str) -> type[Any]:
    module, _, name = import_path.rpartition(".")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def sklearn_entry(import_path: str) -> dict[str, Any]:
    from sklearn import base

    cls = _load(import_path)
    name = cls.__name__
    signature = inspect.signature(cls.__init__)
    defaults = cls().get_params(deep=False)
    params: dict[str, Any] = {}
    for pname in signature.parameters:
        if pname in {"self", "args", "kwargs"}:
            continue
        constraints = cls._parameter_constraints.get(pname)
        if constraints is None or constraints == "no_validation":
            continue
        params[pname] = {
            "default": _default(defaults.get(pname)),
            "constraints": [convert_constraint(c) for c in constraints],
        }
    estimator = cls()
    return {
        "import": import_path,
        "library": "scikit-learn",
        "task": "classification" if base.is_classifier(estimator) else "regression",
        "predict_proba": hasattr(estimator, "predict_proba"),
        "proba_params": PROBA_PARAMS.get(name, {}),
        "gpu_params": {},
        "params": params,
    }


def hand_written_entry(import_path: str) -> dict[str, Any]:
    """An XGBoost/LightGBM entry; every hand-written name must be a real parameter."""
    spec = HAND_WRITTEN[import_path]
    cls = _load(import_path)
    defaults = cls().get_params(deep=False)
    real_names = set(defaults) | set(inspect.signature(cls.__init__).parameters)
    passthrough = {"verbose"}  # LightGBM forwards these through **kwargs.
    unknown = set(spec["params"]) - real_names - passthrough
    if unknown:
        raise RuntimeError(f"{import_path} has no parameters {sorted(unknown)}: fix HAND_WRITTEN")
    estimator = cls()
    return {
        "import": import_path,
        "library": import_path.split(".", maxsplit=1)[0],
        "task": spec["task"],
        "predict_proba": hasattr(estimator, "predict_proba"),
        "proba_params": {},
        "gpu_params": spec.get("gpu_params", {}),
        "params": {
            pname: {"default": _default(defaults.get(pname)), "constraints": constraints}
            for pname, constraints in sorted(spec["params"].items())
        },
    }


def _library_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return str(module.__version__)


def generate(*, include: tuple[str, ...] = ("sklearn", "xgboost", "lightgbm", "pytorch")) -> dict[str, Any]:
    """The whole table. Libraries that are not installed are left out (callers keep the old entries)."""
    estimators: dict[str, Any] = {}
    versions: dict[str, str] = {}
    if "sklearn" in include:
        versions["scikit-learn"] = str(_library_version("sklearn"))
        for path in SKLEARN_ESTIMATORS:
            estimators[path.rpartition(".")[2]] = sklearn_entry(path)
    for lib in ("xgboost", "lightgbm"):
        if lib not in include:
            continue
        version = _library_version(lib)
        if version is None:
            continue
        versions[lib] = version
        for path in HAND_WRITTEN:
            if path.startswith(lib + "."):
                estimators[path.rpartition(".")[2]] = hand_written_entry(path)
    if "pytorch" in include:
        estimators.update(STATIC)
    return {"versions": versions, "estimators": dict(sorted(estimators.items()))}


def render(table: dict[str, Any]) -> str:
    """The file's exact text: sorted keys, one-space indent, a final newline."""
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def merged(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fresh table, keeping from ``previous`` the entries of libraries not installed here."""
    table = generate()
    if previous:
        for name, entry in previous.get("estimators", {}).items():
            if name not in table["estimators"] and entry["library"] not in table["versions"]:
                table["estimators"][name] = entry
        for lib, version in previous.get("versions", {}).items():
            table["versions"].setdefault(lib, version)
        table["estimators"] = dict(sorted(table["estimators"].items()))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_operator.crdgen.estimators",
        description="Regenerate the estimator allowlist (mlops_operator/api/estimators.json).",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is out of date")
    parser.add_argument("--out", type=pathlib.Path, default=TABLE_PATH, help="the file to write or check")
    args = parser.parse_args(argv)
    old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    previous = json.loads(old) if old else None
    table = merged(previous)
    text = render(table)
    if args.check:
        # The estimators' entries, not the library versions recorded beside them: a patch release
        # that changes no parameter must not fail `make verify` on a fresh install.
        before = (previous or {}).get("estimators", {})
        stale = [n for n, e in table["estimators"].items() if before.get(n) != e]
        stale += [n for n in before if n not in table["estimators"]]
        if not stale:
            return 0
        what = ", ".join(stale)
        print(
            f"{args.out} is out of date ({what}); run `python -m mlops_operator.crdgen.estimators`",
            file=sys.stderr,
        )
        return 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(table['estimators'])} estimators, {table['versions']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
