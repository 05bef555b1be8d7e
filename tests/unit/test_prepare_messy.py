"""The prepare workload on a messy CSV: exact report numbers, the files of the version, the
saved preprocessor transforming new rows, and the data-quality warnings."""

from __future__ import annotations

import json
import pathlib
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn import impute

from mlops_operator.api import dataset as api
from mlops_workloads.prepare import features, pipeline

ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
CITIES = ("Paris", "Berlin", "Rome")


def messy_csv(path: pathlib.Path) -> None:
    """30 clean rows, then the mess: duplicates, wrong types, out-of-range, gaps, no target."""
    lines = ["age,income,city,member,label"]
    for i in range(30):
        member = "yes" if i % 2 else "no"
        lines.append(f"{20 + i},{30000 + 1000 * i},{CITIES[i % 3]},{member},{'good' if i % 3 else 'bad'}")
    lines += [
        "20,30000,Paris,no,bad",  # duplicate of the first row
        "20,30000,Paris,no,bad",  # and again
        "abc,61000,Rome,yes,good",  # age: not a number (type violation)
        "-3,40000,Paris,no,bad",  # age: below min 0
        "52,75000,Berlin,maybe,good",  # member: not a bool (type violation)
        "61,,Rome,yes,good",  # income missing: imputed (median), row kept
        "62,81000,,no,bad",  # city missing: its imputation is drop
        "63,82000,Berlin,yes,",  # no target
    ]
    path.write_text("\n".join(lines) + "\n")


SPEC: dict[str, Any] = {
    "schema": {
        "target": "label",
        "onViolation": "drop",
        "columns": [
            {"name": "age", "type": "int", "min": 0, "max": 120, "required": True},
            {"name": "member", "type": "bool"},
            {"name": "city", "type": "category"},
        ],
    },
    "cleaning": {"imputation": {"strategy": "median", "columns": [{"name": "city", "strategy": "drop"}]}},
}


def run(tmp_path: pathlib.Path, spec: dict[str, Any]) -> dict[str, Any]:
    full = {"storage": f"file://{tmp_path}/out", **spec}
    cfg = api.PrepareConfig(dataset="messy", spec=api.DatasetSpec.model_validate(full))
    return pipeline.prepare(cfg, scratch_dir=str(tmp_path))


@pytest.fixture
def messy(tmp_path: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path]:
    messy_csv(tmp_path / "messy.csv")
    result = run(tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/messy.csv"}}], **SPEC})
    return result, pathlib.Path(result["storageUri"].removeprefix("file://"))


def test_report_numbers(messy: tuple[dict[str, Any], pathlib.Path]) -> None:
    result, _ = messy
    assert result["rows"] == {
        "input": 38,
        "output": 31,
        "dropped": 7,
        "train": 22,
        "validation": 5,
        "test": 4,
    }
    assert result["dropped"] == {"violations": 3, "missingTarget": 1, "duplicates": 2, "missingValues": 1}
    assert result["duplicatesRemoved"] == 2
    assert result["missing"] == {"income": 1, "city": 1, "label": 1}
    # 30 clean rows: i % 3 == 0 → bad (10), else good (20); kept extra rows: "61,,Rome,yes,good".
    assert result["classBalance"] == {"good": 21, "bad": 10}
    assert result["classes"] == 2
    assert result["columns"] == 4
    assert result["features"] == 6  # age, income, member + 3 one-hot cities
    assert result["task"] == "classification" and result["target"] == "label"


def test_report_file(messy: tuple[dict[str, Any], pathlib.Path]) -> None:
    _, out = messy
    report = json.loads((out / "report.json").read_text())
    assert report["violations"] == {"age": {"type": 1, "min": 1}, "member": {"type": 1}}
    assert [(c["name"], c["dtype"], c["declared"]) for c in report["columns"]] == [
        ("age", "int", True),
        ("income", "float", False),
        ("city", "category", True),
        ("member", "bool", True),
        ("label", "category", False),
    ]
    assert report["classBalance"][0] == {"class": "good", "count": 21, "fraction": 21 / 31}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 22, "validation": 5, "test": 4}
    assert manifest["digest"] == out.name
    assert manifest["featureNamesOut"][:2] == [
        "cat-most_frequent__city_Berlin",
        "cat-most_frequent__city_Paris",
    ]


def test_splits_hold_cleaned_original_columns(messy: tuple[dict[str, Any], pathlib.Path]) -> None:
    _, out = messy
    parts = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("train", "validation", "test")}
    whole = pd.concat(parts.values(), ignore_index=True)
    assert list(whole.columns) == ["age", "income", "city", "member", "label"]
    assert str(parts["train"]["age"].dtype) == "int64"
    assert str(parts["train"]["member"].dtype) == "bool"
    assert len(whole) == 31 and not whole.duplicated().any()
    assert whole["age"].between(0, 120).all()
    assert whole["income"].isna().sum() == 1  # the gap is left for the preprocessor's imputer
    assert whole["city"].notna().all() and whole["label"].notna().all()
    for part in parts.values():  # stratified: both classes in every split
        assert set(part["label"]) == {"good", "bad"}


def test_schema_and_baseline(messy: tuple[dict[str, Any], pathlib.Path]) -> None:
    _, out = messy
    schema = json.loads((out / "schema.json").read_text())
    assert schema["target"] == "label" and schema["task"] == "classification"
    assert schema["classes"] == ["bad", "good"]
    age = next(f for f in schema["features"] if f["name"] == "age")
    assert age == {"name": "age", "dtype": "int", "required": True, "min": 0.0, "max": 120.0}
    city = next(f for f in schema["features"] if f["name"] == "city")
    assert city["categories"] == ["Berlin", "Paris", "Rome"]
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["rows"] == 22
    income = baseline["features"]["income"]
    assert income["type"] == "numeric"
    assert len(income["edges"]) == 11 and len(income["proportions"]) == 10
    assert income["edges"] == sorted(income["edges"])
    assert abs(sum(income["proportions"]) - 1) < 1e-9
    assert baseline["features"]["city"]["type"] == "categorical"
    assert set(baseline["features"]["city"]["proportions"]) == set(CITIES)
    assert set(baseline["features"]["member"]["proportions"]) == {"True", "False"}
    assert baseline["target"]["type"] == "categorical"


def load_preprocessor(path: pathlib.Path) -> Any:
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(ALLOWED_PREFIXES)]
    assert refused == []
    return sio.load(path, trusted=untrusted)


def test_preprocessor_transforms_new_rows(messy: tuple[dict[str, Any], pathlib.Path]) -> None:
    _, out = messy
    preprocessor = load_preprocessor(out / "preprocessor.skops")
    train = pd.read_parquet(out / "train.parquet")
    fresh = pd.DataFrame(
        {
            "age": [30, 45],
            "income": [np.nan, 50000.0],  # a gap: imputed with the train median
            "city": ["Rome", "Tokyo"],  # Tokyo was never seen: all-zero one-hot
            "member": [True, False],
        }
    )
    x = preprocessor.transform(fresh)
    assert x.shape == (2, 6)
    assert np.isfinite(x).all()
    names = list(preprocessor.get_feature_names_out())
    city = [names.index(f"cat-most_frequent__city_{c}") for c in ("Berlin", "Paris", "Rome")]
    assert x[0, city].tolist() == [0.0, 0.0, 1.0]
    assert x[1, city].tolist() == [0.0, 0.0, 0.0]
    income = names.index("num-median__income")
    median = train["income"].median()
    imputed = train["income"].fillna(median)  # the scaler sees imputed values
    scaled_median = (median - imputed.mean()) / imputed.std(ddof=0)
    assert x[0, income] == pytest.approx(scaled_median)
    # The same transform as the one fitted on the train split: standardised train columns.
    x_train = preprocessor.transform(train.drop(columns=["label"]))
    assert np.allclose(x_train[:, names.index("num-median__age")].mean(), 0.0)


def test_ordinal_minmax_and_selection(tmp_path: pathlib.Path) -> None:
    messy_csv(tmp_path / "messy.csv")
    spec = json.loads(json.dumps(SPEC))
    spec["features"] = {"scaling": "minmax", "encoding": "ordinal", "selection": {"kBest": 2}}
    result = run(tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/messy.csv"}}], **spec})
    assert result["features"] == 2
    out = pathlib.Path(result["storageUri"].removeprefix("file://"))
    preprocessor = load_preprocessor(out / "preprocessor.skops")
    x = preprocessor.transform(pd.read_parquet(out / "train.parquet").drop(columns=["label"]))
    assert x.shape[1] == 2


def test_warnings_leakage_constant_imbalance(tmp_path: pathlib.Path) -> None:
    n = 200
    rng = np.random.default_rng(0)
    label = np.where(np.arange(n) < 190, "common", "rare")  # 5%: severe imbalance
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "leak": np.where(label == "common", "c", "r"),  # a 1:1 recoding of the target
            "constant": 1.0,
            "ident": [f"id-{i:04d}" for i in range(n)],  # looks like an identifier
            "label": label,
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = run(
        tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/d.csv"}}], "schema": {"target": "label"}}
    )
    text = "\n".join(result["warnings"])
    assert "severe class imbalance: class 'rare' has 10 rows" in text
    assert "target leakage: column 'leak'" in text
    assert "column 'constant' is constant" in text
    assert "column 'ident' looks like an identifier" in text
    assert "signal" not in text
    schema = json.loads(
        (pathlib.Path(result["storageUri"].removeprefix("file://")) / "schema.json").read_text()
    )
    assert schema["ignored"] == ["ident"]  # kept in the splits, not a model input
    assert [f["name"] for f in schema["features"]] == ["signal", "leak", "constant"]
    out = pathlib.Path(result["storageUri"].removeprefix("file://"))
    preprocessor = load_preprocessor(out / "preprocessor.skops")
    request = pd.DataFrame({"signal": [0.5], "leak": ["c"], "constant": [1.0]})  # no "ident": not needed
    assert preprocessor.transform(request).shape == (1, len(preprocessor.get_feature_names_out()))


def test_regression_leakage_by_linear_copy(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    pd.DataFrame({"x": rng.normal(size=300), "copy": 3 * y + 1, "y": y}).to_csv(
        tmp_path / "r.csv", index=False
    )
    result = run(
        tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/r.csv"}}], "schema": {"target": "y"}}
    )
    assert result["task"] == "regression"
    assert any("target leakage: column 'copy'" in w for w in result["warnings"])
    assert not any("'x'" in w for w in result["warnings"])


@pytest.mark.parametrize("keep_empty", [True, False])
def test_fast_median_fits_exactly_what_scikit_learn_fits(keep_empty: bool) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(501, 6)) * np.array([1, 1e6, 1e-6, 3, 1, 1])
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 4] = np.nan  # an all-missing column
    x[:250, 5] = np.nan  # an even number of values left
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Skipping features without any observed values"
        reference = impute.SimpleImputer(
            strategy="median", keep_empty_features=keep_empty, add_indicator=True
        )
        reference.fit(frame)
        fast = impute.SimpleImputer(strategy="median", keep_empty_features=keep_empty, add_indicator=True)
        with features.fast_median():
            fast.fit(frame)
        np.testing.assert_array_equal(fast.statistics_, reference.statistics_)
        np.testing.assert_array_equal(fast.transform(frame), reference.transform(frame))
    ints = pd.DataFrame({"i": [1, 2, 3, 4]})  # not float: scikit-learn's own path
    with features.fast_median():
        assert impute.SimpleImputer(strategy="median").fit(ints).statistics_.tolist() == [2.5]
    assert impute.SimpleImputer._dense_fit.__qualname__ == "SimpleImputer._dense_fit"  # restored


def test_result_fits_the_termination_message(tmp_path: pathlib.Path) -> None:
    """Many columns with gaps, long names and warnings: the summary still fits in 4 KiB, whole."""
    from mlops_operator.api import workload
    from mlops_workloads import runtime

    rng = np.random.default_rng(2)
    n = 60
    data: dict[str, Any] = {}
    for i in range(40):
        values = rng.normal(size=n)
        values[: 31 + i % 5] = np.nan  # more than half missing: a warning per column
        data[f"a_rather_long_sensor_column_name_number_{i:02d}_with_units_in_mm"] = values
    data["label"] = np.tile(["x", "y", "z"], n // 3)
    pd.DataFrame(data).to_csv(tmp_path / "wide.csv", index=False)
    result = run(
        tmp_path,
        {"sources": [{"file": {"uri": f"file://{tmp_path}/wide.csv"}}], "schema": {"target": "label"}},
    )
    text = runtime.compact({"ok": True, **result})
    assert len(text.encode()) <= workload.RESULT_LIMIT
    parsed = json.loads(text)
    assert "truncated" not in parsed
    assert parsed["storageUri"] == result["storageUri"] and parsed["rows"]["input"] == 60
    assert 1 <= len(parsed["warnings"]) < 40 and len(parsed["missing"]) == 20
    report = json.loads(
        (pathlib.Path(result["storageUri"].removeprefix("file://")) / "report.json").read_text()
    )
    assert len(report["warnings"]) == 40 and len(report["missing"]) == 40  # the full story is in the version
