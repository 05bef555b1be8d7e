"""Test helper: a prepared Dataset directory per the shared contract, made without the prepare workload.

Writes ``train/validation/test.parquet`` (raw feature columns + target), a ``preprocessor.skops``
fitted on the train split only, ``schema.json``, ``baseline.json``, ``report.json`` and
``manifest.json``, so the training workload can be tested on its own.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn import compose, datasets, model_selection, preprocessing

LOADERS = {
    "iris": datasets.load_iris,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
    "wine": datasets.load_wine,
}
TASKS = {
    "iris": "classification",
    "breast_cancer": "classification",
    "wine": "classification",
    "diabetes": "regression",
}


def frame(name: str, *, string_labels: bool = False, categorical: bool = False) -> pd.DataFrame:
    bunch = LOADERS[name](as_frame=True)
    df = bunch.frame.copy()
    df.columns = [str(c).replace(" ", "_").replace("(", "").replace(")", "") for c in df.columns]
    if string_labels:
        names = list(bunch.target_names)
        df["target"] = [str(names[int(i)]) for i in df["target"]]
    if categorical:
        rng = np.random.default_rng(0)
        df["colour"] = rng.choice(["red", "green", "blue"], size=len(df))
    return df


def _baseline(train: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in features:
        values = train[col]
        if pd.api.types.is_numeric_dtype(values):
            edges = np.unique(np.quantile(values.to_numpy(dtype=float), np.linspace(0, 1, 11)))
            counts, _ = np.histogram(values, bins=edges)
            out[col] = {
                "type": "numeric",
                "edges": edges.tolist(),
                "proportions": (counts / counts.sum()).tolist(),
            }
        else:
            props = values.value_counts(normalize=True)
            out[col] = {"type": "categorical", "proportions": {str(k): float(v) for k, v in props.items()}}
    return out


def make_prepared(
    root: pathlib.Path,
    name: str,
    *,
    string_labels: bool = False,
    categorical: bool = False,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    preprocessor: Any = None,
) -> pathlib.Path:
    """Write a prepared Dataset version for bundled dataset ``name`` under ``root``; return its directory."""
    task = TASKS[name]
    df = frame(name, string_labels=string_labels, categorical=categorical)
    target = "target"
    features = [c for c in df.columns if c != target]
    stratify = df[target] if task == "classification" else None
    train, rest = model_selection.train_test_split(
        df, train_size=fractions[0], random_state=0, stratify=stratify
    )
    if fractions[1] > 0:
        val_share = fractions[1] / (fractions[1] + fractions[2])
        validation, test = model_selection.train_test_split(
            rest,
            train_size=val_share,
            random_state=0,
            stratify=rest[target] if task == "classification" else None,
        )
    else:
        validation, test = rest.iloc[0:0], rest
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
    categories = [c for c in features if c not in numeric]
    if preprocessor is None:
        parts: list[Any] = [("num", preprocessing.StandardScaler(), numeric)]
        if categories:
            parts.append(
                ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False), categories)
            )
        preprocessor = compose.ColumnTransformer(parts)
        preprocessor.set_output(transform="default")
    preprocessor.fit(train[features], train[target])
    blob = b"".join(
        pd.util.hash_pandas_object(s, index=False).to_numpy().tobytes() for s in (train, validation, test)
    )
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    out = root / name / digest.split(":")[1][:16]
    out.mkdir(parents=True)
    for split, data in (("train", train), ("validation", validation), ("test", test)):
        data.reset_index(drop=True).to_parquet(out / f"{split}.parquet", index=False)
    sio.dump(preprocessor, out / "preprocessor.skops")
    schema: dict[str, Any] = {
        "target": target,
        "task": task,
        "features": [
            {"name": c, "dtype": "float", "min": float(df[c].min()), "max": float(df[c].max())}
            if c in numeric
            else {"name": c, "dtype": "category", "allowed": sorted(df[c].unique().tolist())}
            for c in features
        ],
    }
    if task == "classification":
        schema["classes"] = sorted(df[target].unique().tolist())
    (out / "schema.json").write_text(json.dumps(schema))
    (out / "baseline.json").write_text(json.dumps(_baseline(train, features)))
    (out / "report.json").write_text(json.dumps({"rowsIn": len(df), "rowsDropped": 0}))
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "digest": digest,
                "rows": {"train": len(train), "validation": len(validation), "test": len(test)},
            }
        )
    )
    return out


def load_preprocessor(path: pathlib.Path) -> Any:
    file = path / "preprocessor.skops"
    return sio.load(file, trusted=sio.get_untrusted_types(file=str(file)))


def staged(config: Any, staging: pathlib.Path) -> Any:
    """``config`` (a TrainConfig) writing its model into ``staging`` rather than the pod's
    ``/tmp/mlops-staging/model``, so tests never share a staging directory."""
    return config.model_copy(update={"output_dir": str(staging)})


def model_dir(result: dict[str, Any]) -> pathlib.Path:
    """The published model version a file:// run's result names (``<output>/<version>``)."""
    uri = str(result["modelUri"])
    assert uri.startswith("file://"), uri
    path = pathlib.Path(uri.removeprefix("file://"))
    assert path.name == result["modelVersion"] and len(result["modelVersion"]) == 16, result
    assert (path / "model_card.json").is_file()
    return path
