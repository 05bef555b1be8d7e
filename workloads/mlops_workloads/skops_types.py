"""Generate ``skops_types.json``: the exact types our own models are made of.

``skops_io`` refuses a model file holding any object or type object not named in that file
(see its docstring for why prefixes are not enough). The list is not written by hand: this
module builds every model the project can produce on tiny data and records what skops
writes for it:
- every estimator of the registry (``mlops_operator.api.estimators``) but the PyTorch
  networks (saved as ONNX beside the Dataset's preprocessor, see ``nn``), fitted with its
  defaults and once with each value of each of its option and boolean parameters (so
  ``loss="huber"`` or ``algorithm="ball_tree"`` brings its own classes), on binary and on
  multiclass targets for classifiers, each inside the training workload's final
  ``Pipeline``;
- the feature pipeline (``prepare.features``) for every ``Dataset.spec.features``
  combination (scaling x encoding x maxCategories x selection) and every imputation
  strategy, on a frame with every column type, for both tasks;
- the serving demo's models.
A function met on the way must already be in ``skops_io.REVIEWED_FUNCTIONS`` and a node
kind that is always refused must not appear at all: either stops the generator, because
that is a decision for a person to review, not for a script to write down.

Run ``python -m mlops_workloads.skops_types`` after upgrading scikit-learn, XGBoost,
LightGBM, numpy or skops, or after adding an estimator or a features option; a unit test
fails while the file is out of date.
"""

from __future__ import annotations

import argparse
import importlib
import io
import itertools
import json
import pathlib
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import estimators
from mlops_workloads import skops_io

OUT = pathlib.Path(__file__).with_name(skops_io.ALLOWLIST_FILE)
SMALL = {"n_estimators": 2, "max_iter": 5}  # keep every fit tiny; a varied parameter overrides these
ONNX_LIBRARIES = frozenset({"pytorch"})
"""Registry libraries whose models are saved as ONNX (``model.onnx``), never with skops: their
model directory holds the Dataset's preprocessor, whose types are covered below."""


class ReviewNeeded(RuntimeError):
    """A model of ours holds something that only a person may allow."""


def schema_names(obj: Any) -> set[tuple[str, str]]:
    """The (kind, name) entries of ``obj`` as skops would save it."""
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(sio.dumps(obj))) as archive:
        schema = json.loads(archive.read("schema.json"))
    return {entry for node in skops_io._nodes(schema) for entry in skops_io.node_names(node)}


def _variants(entry: estimators.Estimator) -> Iterator[dict[str, Any]]:
    """The defaults, then each option / boolean value of each parameter on its own."""
    base = {k: v for k, v in SMALL.items() if k in entry.params}
    if entry.library == "lightgbm":
        base["verbose"] = -1
    yield base
    for name, param in sorted(entry.params.items()):
        for constraint in param["constraints"]:
            values: list[Any] = []
            if constraint["kind"] == "options":
                values = list(constraint["values"])
            elif constraint["kind"] == "bool":
                values = [True, False]
            for value in values:
                yield {**base, name: value}


def _data(task: str, classes: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4))
    if task == "regression":
        return x, np.abs(x[:, 0] * 2 + rng.normal(size=48) * 0.1) + 0.5  # > 0: poisson, gamma losses fit
    return x, np.arange(48) % classes


def estimator_names(entry: estimators.Estimator) -> set[tuple[str, str]]:
    """Everything the fitted variants of one registry estimator hold, each in the final Pipeline."""
    from sklearn import pipeline, preprocessing

    module, _, cls_name = entry.import_path.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    targets = [2, 3] if entry.task == "classification" else [0]
    found: set[tuple[str, str]] = set()
    for params, classes in itertools.product(list(_variants(entry)), targets):
        x, y = _data(entry.task, classes)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = cls(**params).fit(x, y)
        except Exception:  # an invalid combination: the training workload reports it, saves nothing
            continue
        found |= schema_names(
            pipeline.Pipeline([("preprocess", preprocessing.StandardScaler()), ("model", model)])
        )
    return found


def _columns_frame() -> tuple[Any, list[Any]]:
    import numpy as np
    import pandas as pd

    from mlops_workloads.prepare import validate

    rng = np.random.default_rng(1)
    n = 60
    frame = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            "i": rng.integers(0, 9, size=n),
            "b": rng.integers(0, 2, size=n).astype(bool),
            "c": pd.Categorical(rng.choice(["a", "b", "c", "d"], size=n)),
            "s": [f"id{k}" for k in range(n)],
            "target": np.arange(n) % 3,
        }
    )
    frame.loc[::7, "f"] = np.nan
    frame["c"] = frame["c"].astype(object)
    frame.loc[::5, "c"] = None
    dtypes = {"f": "float", "i": "int", "b": "bool", "c": "category", "s": "string"}
    return frame, [validate.Column(name=k, dtype=v) for k, v in dtypes.items()]  # type: ignore[arg-type]


def _feature_specs() -> Iterator[dict[str, Any]]:
    selections: list[dict[str, Any] | None] = [
        None,
        {"varianceThreshold": 0.0},
        {"kBest": 3},
        {"kBest": 3, "varianceThreshold": 0.0},
    ]
    for scaling, encoding, max_cat, selection in itertools.product(
        ("standard", "minmax", "none"), ("onehot", "ordinal"), (None, 2), selections
    ):
        features: dict[str, Any] = {"scaling": scaling, "encoding": encoding}
        if max_cat is not None:
            features["maxCategories"] = max_cat
        if selection is not None:
            features["selection"] = selection
        yield {"features": features}
    for strategy in ("drop", "mean", "median", "most_frequent"):
        yield {"cleaning": {"imputation": {"strategy": strategy}}}
    yield {"cleaning": {"imputation": {"strategy": "constant", "fillValue": "0"}}}
    yield {
        "cleaning": {
            "imputation": {
                "strategy": "median",
                "columns": [{"name": "c", "strategy": "constant", "fillValue": "missing"}],
            }
        }
    }


def feature_names() -> set[tuple[str, str]]:
    """Everything every feature pipeline holds, for both tasks."""
    from mlops_workloads.prepare import features

    frame, columns = _columns_frame()
    found: set[tuple[str, str]] = set()
    for changes, task in itertools.product(list(_feature_specs()), ("classification", "regression")):
        spec = dataset_api.DatasetSpec.model_validate(
            {"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/x", **changes}
        )
        fitted = features.fit(frame, columns=columns, target="target", task=task, spec=spec)
        found |= schema_names(fitted.preprocessor)
    return found


def demo_names() -> set[tuple[str, str]]:
    """The serving demo's models (what the quickstart and the serve tests load)."""
    from mlops_workloads.serve import demo

    found: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        variants = itertools.product((True, False), ("logistic", "tree"))
        for index, (categorical, estimator) in enumerate(variants):
            path = demo.build(pathlib.Path(tmp) / str(index), categorical=categorical, estimator=estimator)
            found |= skops_io.file_names(path / "model.skops")
    return found


def versions() -> dict[str, str]:
    modules = {"numpy": "numpy", "scipy": "scipy", "scikit-learn": "sklearn", "xgboost": "xgboost"}
    modules |= {"lightgbm": "lightgbm", "skops": "skops"}
    return {name: str(importlib.import_module(module).__version__) for name, module in modules.items()}


def skops_estimators() -> list[str]:
    """The registry estimators saved with skops: all but the PyTorch networks (saved as ONNX)."""
    return [n for n in estimators.names() if estimators.get(n).library not in ONNX_LIBRARIES]


def generate() -> dict[str, Any]:
    """The allowlist document; raises ``ReviewNeeded`` for what only a person may allow."""
    found: set[tuple[str, str]] = set()
    for name in skops_estimators():
        found |= estimator_names(estimators.get(name))
    found |= feature_names()
    found |= demo_names()
    by_kind: dict[str, list[str]] = {}
    for kind, name in found:
        by_kind.setdefault(kind, []).append(name)
    unreviewed = sorted(set(by_kind.get("function", [])) - skops_io.REVIEWED_FUNCTIONS.keys())
    if unreviewed or by_kind.get("refused"):
        raise ReviewNeeded(
            f"our own models hold functions not in skops_io.REVIEWED_FUNCTIONS: {unreviewed}, "
            f"and always-refused nodes: {sorted(by_kind.get('refused', []))}; review them first"
        )
    return {
        "generatedBy": "python -m mlops_workloads.skops_types",
        "versions": versions(),
        "objects": sorted(set(by_kind.get("object", []))),
        "types": sorted(set(by_kind.get("type", []))),
        "functions": sorted(set(by_kind.get("function", []))),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_workloads.skops_types", description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    args.out.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
