"""A small, real model directory (iris) in the shared contract's layout.

Used by the server's tests, the serving benchmark and the quickstart, so none of them
depends on a TrainingJob having run: a ColumnTransformer (StandardScaler on the numeric
columns, OneHotEncoder on an optional categorical column) + LogisticRegression Pipeline
saved with skops, and schema.json, baseline.json and model_card.json written as the
Dataset and TrainingJob workloads write them.

``python -m mlops_workloads.serve.demo DIR [--no-categorical]``
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SITES = ("north", "south", "east")


def frame(*, categorical: bool = True, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn import datasets

    iris = datasets.load_iris()
    x = pd.DataFrame(iris.data, columns=list(NUMERIC))
    if categorical:
        rng = np.random.default_rng(seed)
        x["site"] = rng.choice(SITES, size=len(x), p=(0.5, 0.3, 0.2))
    return x, np.asarray(iris.target, dtype=np.int64)


def baseline(x: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in x.columns:
        values = x[column]
        if column in NUMERIC:
            edges = np.quantile(values.to_numpy(dtype=float), np.linspace(0, 1, 11))
            inner = edges[1:-1]
            idx = np.searchsorted(inner, values.to_numpy(dtype=float), side="right")
            proportions = np.bincount(idx, minlength=10) / len(values)
            out[column] = {"type": "numeric", "edges": edges.tolist(), "proportions": proportions.tolist()}
        else:
            shares = values.value_counts(normalize=True)
            out[column] = {
                "type": "categorical",
                "proportions": {str(k): float(v) for k, v in shares.items()},
            }
    return out


def build(path: str | pathlib.Path, *, categorical: bool = True, estimator: str = "logistic") -> pathlib.Path:
    """Train and write the model directory; return its path."""
    import skops.io as sio
    from sklearn import compose, linear_model, pipeline, preprocessing, tree

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    x, y = frame(categorical=categorical)
    transformers: list[tuple[str, Any, list[str]]] = [("num", preprocessing.StandardScaler(), list(NUMERIC))]
    if categorical:
        transformers.append(("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["site"]))
    model: Any = (
        linear_model.LogisticRegression(max_iter=500)
        if estimator == "logistic"
        else tree.DecisionTreeRegressor(max_depth=4, random_state=0)
    )
    target = y if estimator == "logistic" else x["petal_width"].to_numpy() * 2 + y
    pipe = pipeline.Pipeline([("preprocess", compose.ColumnTransformer(transformers)), ("model", model)])
    pipe.fit(x, target)
    sio.dump(pipe, out / "model.skops")
    features: list[dict[str, Any]] = [
        {"name": c, "dtype": "float", "min": float(x[c].min()), "max": float(x[c].max())} for c in NUMERIC
    ]
    if categorical:
        features.append({"name": "site", "dtype": "category", "allowed": list(SITES)})
    classification = estimator == "logistic"
    schema: dict[str, Any] = {
        "target": "species" if classification else "score",
        "task": "classification" if classification else "regression",
        "features": features,
    }
    if classification:
        schema["classes"] = [0, 1, 2]
    (out / "schema.json").write_text(json.dumps(schema, indent=2), encoding="utf-8")
    from mlops_workloads.serve import bundle as bundle_mod
    from mlops_workloads.serve import explain

    # The background sample explanations are computed against, as training stores it.
    background = explain.background_sample(x, schema=bundle_mod.Schema.from_json(schema))
    stored = {**baseline(x), explain.BASELINE_KEY: {"background": background}}
    (out / "baseline.json").write_text(json.dumps(stored, indent=2), encoding="utf-8")
    import sklearn

    card = {
        "estimator": type(model).__name__,
        "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool))},
        "task": schema["task"],
        "classes": schema.get("classes"),
        "dataset": {"name": "iris", "digest": "demo", "uri": None},
        "metrics": {"train_accuracy": float(pipe.score(x, target))} if classification else {},
        "libraries": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__},
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--no-categorical", action="store_true")
    args = parser.parse_args()
    print(build(args.path, categorical=not args.no_categorical))


if __name__ == "__main__":
    main()
