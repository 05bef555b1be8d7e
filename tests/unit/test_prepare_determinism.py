"""Determinism and versioning: the same spec and data give byte-identical splits and the same
digest; a change of spec or data gives a new digest; the split itself is exact and stratified."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_operator.api import dataset as api
from mlops_workloads.prepare import digest, pipeline, split, validate

SPLITS = ("train.parquet", "validation.parquet", "test.parquet")


def run(tmp_path: pathlib.Path, spec: dict[str, Any], storage: str = "out") -> dict[str, Any]:
    full = {"storage": f"file://{tmp_path}/{storage}", **spec}
    cfg = api.PrepareConfig(dataset="d", spec=api.DatasetSpec.model_validate(full))
    return pipeline.prepare(cfg, scratch_dir=str(tmp_path))


def file_hashes(result: dict[str, Any]) -> dict[str, str]:
    root = pathlib.Path(result["storageUri"].removeprefix("file://"))
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in SPLITS}


def write_data(path: pathlib.Path, *, rows: int = 400, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "x": rng.normal(size=rows).round(6),
            "n": rng.integers(0, 100, size=rows),
            "c": rng.choice(["a", "b", "c"], size=rows),
            "y": rng.choice(["yes", "no"], size=rows, p=[0.3, 0.7]),
        }
    ).to_csv(path, index=False)


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> dict[str, Any]:
    write_data(tmp_path / "data.csv")
    return {"sources": [{"file": {"uri": f"file://{tmp_path}/data.csv"}}], "schema": {"target": "y"}}


def test_two_runs_give_identical_bytes_and_digest(tmp_path: pathlib.Path, spec: dict[str, Any]) -> None:
    first = run(tmp_path, spec, storage="one")
    second = run(tmp_path, spec, storage="two")
    assert first["digest"] == second["digest"]
    assert file_hashes(first) == file_hashes(second)
    assert second["reused"] is False


def test_same_storage_reuses_the_version(tmp_path: pathlib.Path, spec: dict[str, Any]) -> None:
    first = run(tmp_path, spec)
    second = run(tmp_path, spec)
    assert second["reused"] is True
    assert second["storageUri"] == first["storageUri"]
    assert len(list((tmp_path / "out").iterdir())) == 1  # no leftover staging directories


@pytest.mark.parametrize(
    "change",
    [
        {"split": {"seed": 7}},
        {"split": {"train": 0.8, "validation": 0.1, "test": 0.1}},
        {"features": {"scaling": "minmax"}},
        {"cleaning": {"dropDuplicates": False}},
    ],
)
def test_spec_change_gives_new_digest(
    tmp_path: pathlib.Path, spec: dict[str, Any], change: dict[str, Any]
) -> None:
    before = run(tmp_path, spec)
    after = run(tmp_path, {**spec, **change})
    assert after["digest"] != before["digest"]


def test_storage_and_resources_do_not_change_the_digest(tmp_path: pathlib.Path, spec: dict[str, Any]) -> None:
    before = run(tmp_path, spec, storage="a")
    after = run(tmp_path, {**spec, "resources": {"cpu": "2"}, "backoffLimit": 5}, storage="b")
    assert after["digest"] == before["digest"]


def test_data_change_gives_new_digest(tmp_path: pathlib.Path, spec: dict[str, Any]) -> None:
    before = run(tmp_path, spec)
    frame = pd.read_csv(tmp_path / "data.csv")
    frame.loc[17, "x"] += 0.5
    frame.to_csv(tmp_path / "data.csv", index=False)
    assert run(tmp_path, spec)["digest"] != before["digest"]


def test_digest_is_canonical_not_file_bytes() -> None:
    columns = [validate.Column("x", "float"), validate.Column("c", "category"), validate.Column("y", "int")]
    frame = pd.DataFrame({"x": [0.0, 1.5, np.nan], "c": ["a", None, "é"], "y": [1, 2, 3]})
    same = pd.DataFrame(
        {"x": [-0.0, 1.5, np.nan], "c": pd.Series(["a", np.nan, "é"], dtype=object), "y": [1, 2, 3]}
    )
    one = digest.compute({"train": frame}, columns=columns, preparation={"a": 1})
    assert one == digest.compute({"train": same}, columns=columns, preparation={"a": 1})
    assert one != digest.compute({"train": frame}, columns=columns, preparation={"a": 2})
    moved = frame.assign(c=["a", "", "é"])  # an empty string is not a missing value
    assert one != digest.compute({"train": moved}, columns=columns, preparation={"a": 1})


def test_split_sizes_are_exact_and_stratified() -> None:
    labels = pd.Series(np.repeat(["a", "b", "c"], [500, 300, 200]))
    assignment = split.assign(labels, size=1000, fractions=(0.7, 0.15, 0.15), seed=1)
    assert np.bincount(assignment).tolist() == [700, 150, 150]
    for name, size in (("a", 500), ("b", 300), ("c", 200)):
        counts = np.bincount(assignment[labels.to_numpy() == name], minlength=3)
        assert counts.tolist() == [round(size * 0.7), round(size * 0.15), round(size * 0.15)]
    again = split.assign(labels, size=1000, fractions=(0.7, 0.15, 0.15), seed=1)
    assert np.array_equal(assignment, again)
    other = split.assign(labels, size=1000, fractions=(0.7, 0.15, 0.15), seed=2)
    assert not np.array_equal(assignment, other)


def test_small_classes_get_a_row_in_every_split() -> None:
    labels = pd.Series(["rare"] * 3 + ["common"] * 97)
    assignment = split.assign(labels, size=100, fractions=(0.8, 0.1, 0.1), seed=0)
    rare = assignment[:3]
    assert sorted(rare.tolist()) == [0, 1, 2]


def test_unstratified_split_and_zero_fractions() -> None:
    assignment = split.assign(None, size=101, fractions=(0.9, 0.0, 0.1), seed=0)
    assert np.bincount(assignment, minlength=3).tolist() == [91, 0, 10]


def test_empty_validation_split_is_written(tmp_path: pathlib.Path, spec: dict[str, Any]) -> None:
    result = run(tmp_path, {**spec, "split": {"train": 0.8, "validation": 0.0, "test": 0.2}})
    assert result["rows"]["validation"] == 0
    root = pathlib.Path(result["storageUri"].removeprefix("file://"))
    empty = pd.read_parquet(root / "validation.parquet")
    assert list(empty.columns) == ["x", "n", "c", "y"] and len(empty) == 0
