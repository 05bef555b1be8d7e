"""The streaming prepare (spec.scale): the same version as the in-memory path when the sample
holds every row, the same counts, split and schema when it does not, determinism whatever the
batch size, directories of files, and the building blocks (row hashes, the digest)."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from mlops_operator.api import dataset as api
from mlops_workloads import runtime
from mlops_workloads.prepare import digest, pipeline, split, stream, stream_ops, validate

SPLITS = ("train", "validation", "test")
ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def frame(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Messy rows: gaps, duplicates, out-of-range values, rows without a target, an id column."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "x": rng.normal(size=rows).round(3),
            "n": rng.integers(0, 30, size=rows),
            "age": rng.integers(0, 99, size=rows),
            "city": rng.choice(np.array(["Paris", "Rome", "Oslo", "Lima"]), size=rows),
            "member": rng.choice(np.array([True, False]), size=rows),
            "y": rng.choice(np.array(["a", "b", "c"]), size=rows, p=[0.6, 0.3, 0.1]),
        }
    )
    data.loc[rng.random(rows) < 0.02, "x"] = np.nan
    data["city"] = data["city"].astype(object)
    data.loc[rng.random(rows) < 0.01, "city"] = None
    data.loc[rng.random(rows) < 0.01, "y"] = None
    data["age"] = data["age"].astype(float)
    data.loc[rng.random(rows) < 0.005, "age"] = -5.0  # below min: a violation
    score = rng.normal(size=rows).round(2).astype(str).astype(object)
    score[rng.random(rows) < 0.03] = "n/k"  # inferred as float; these are not numbers
    data["score"] = score
    data["id"] = [f"row-{i:06d}" for i in range(rows)]  # after the target; an identifier
    copies = rng.choice(rows, size=rows // 20)
    return pd.concat([data, data.iloc[copies]], ignore_index=True).sample(frac=1.0, random_state=seed)


SPEC: dict[str, Any] = {
    "schema": {
        "target": "y",
        "onViolation": "drop",
        "columns": [
            {"name": "age", "type": "int", "min": 0, "max": 120},
            {"name": "city", "type": "category"},
        ],
    },
    "cleaning": {"imputation": {"strategy": "median", "columns": [{"name": "city", "strategy": "drop"}]}},
}


def run(tmp_path: pathlib.Path, uri: str, storage: str, **extra: Any) -> dict[str, Any]:
    spec = {"sources": [{"file": {"uri": uri}}], "storage": f"file://{tmp_path}/{storage}", **SPEC, **extra}
    config = api.PrepareConfig(dataset="d", spec=api.DatasetSpec.model_validate(spec))
    return pipeline.prepare(config, scratch_dir=str(tmp_path))


def folder(result: dict[str, Any]) -> pathlib.Path:
    return pathlib.Path(result["storageUri"].removeprefix("file://"))


def doc(result: dict[str, Any], name: str) -> Any:
    return json.loads((folder(result) / name).read_text())


def splits(result: dict[str, Any]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder(result) / f"{name}.parquet") for name in SPLITS}


def load_preprocessor(path: pathlib.Path) -> Any:
    untrusted = sio.get_untrusted_types(file=path)
    assert [t for t in untrusted if not t.startswith(ALLOWED_PREFIXES)] == []
    return sio.load(path, trusted=untrusted)


STREAM = {"inMemoryRows": 1}


@pytest.fixture(params=["parquet", "csv"])
def source(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    data = frame(3000)
    path = tmp_path / f"data.{request.param}"
    if request.param == "parquet":
        data.to_parquet(path, index=False)
    else:
        data.to_csv(path, index=False)
    return f"file://{path}"


def test_sample_of_every_row_gives_the_in_memory_version(tmp_path: pathlib.Path, source: str) -> None:
    memory = run(tmp_path, source, "memory")
    streamed = run(tmp_path, source, "stream", scale={**STREAM, "batchRows": 1024})
    assert set(streamed) == set(memory)  # the summary a Dataset's status is built from
    for key in memory:
        if key not in ("storageUri", "seconds"):
            assert streamed[key] == memory[key], key
    assert memory["dropped"]["violations"] > 0 and memory["dropped"]["duplicates"] > 0
    for name in SPLITS:  # the same rows in the same splits, written to the same bytes
        one, two = folder(memory) / f"{name}.parquet", folder(streamed) / f"{name}.parquet"
        assert one.read_bytes() == two.read_bytes(), name
    for name in ("schema.json", "baseline.json", "report.json"):
        assert doc(streamed, name) == doc(memory, name), name
    x = splits(memory)["test"].drop(columns=["y"])
    mine = load_preprocessor(folder(streamed) / "preprocessor.skops").transform(x)
    np.testing.assert_array_equal(mine, load_preprocessor(folder(memory) / "preprocessor.skops").transform(x))


def test_sampled_run_keeps_exact_counts_split_and_schema(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.parquet"
    frame(12_000, seed=1).to_parquet(path, index=False)
    memory = run(tmp_path, f"file://{path}", "memory")
    streamed = run(
        tmp_path, f"file://{path}", "stream", scale={**STREAM, "sampleRows": 1000, "batchRows": 2048}
    )
    for key in (
        "rows",
        "dropped",
        "duplicatesRemoved",
        "classBalance",
        "missing",
        "classes",
        "columns",
        "features",
    ):
        assert streamed[key] == memory[key], key
    for name, part in splits(memory).items():
        pd.testing.assert_frame_equal(splits(streamed)[name], part)
    assert doc(streamed, "schema.json") == doc(memory, "schema.json")
    report, reference = doc(streamed, "report.json"), doc(memory, "report.json")
    for key in ("rows", "dropped", "violations", "missing", "classBalance", "columns", "sources"):
        assert report[key] == reference[key], key
    exact = [w for w in reference["warnings"] if "not numbers" in w]
    assert exact and exact == [w for w in report["warnings"] if "not numbers" in w]  # counted in every row
    # The preprocessor was fitted on 1,000 train rows: a different version, and the digest says why.
    assert streamed["digest"] != memory["digest"]
    manifest = doc(streamed, "manifest.json")
    assert manifest["digest"] == folder(streamed).name == streamed["digest"]
    assert manifest["spec"]["scale"] == {"sampleRows": 1000}
    assert manifest["rows"] == {name: streamed["rows"][name] for name in SPLITS}
    assert sorted(p.name for p in folder(streamed).iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert manifest["featureNamesOut"] == doc(memory, "manifest.json")["featureNamesOut"]
    preprocessor = load_preprocessor(folder(streamed) / "preprocessor.skops")
    x = splits(streamed)["train"].drop(columns=["y"])
    assert preprocessor.transform(x).shape == (len(x), streamed["features"])
    baseline = doc(streamed, "baseline.json")
    assert baseline["rows"] == streamed["rows"]["train"]
    numeric = baseline["features"]["x"]
    assert len(numeric["edges"]) == 11 and len(numeric["proportions"]) == 10
    train = splits(streamed)["train"]
    assert numeric["mean"] == pytest.approx(train["x"].mean(), rel=1e-12)  # exact, not sampled
    assert numeric["missing"] == pytest.approx(train["x"].isna().mean())
    assert numeric["min"] == train["x"].min() and numeric["max"] == train["x"].max()
    shares = train["y"].value_counts(normalize=True)
    assert baseline["target"]["proportions"] == pytest.approx(dict(shares))


def test_same_digest_and_bytes_whatever_the_batch_size(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.parquet"
    frame(6000, seed=2).to_parquet(path, index=False, row_group_size=1000)
    scale = {**STREAM, "sampleRows": 1000}
    one = run(tmp_path, f"file://{path}", "one", scale={**scale, "batchRows": 1024})
    two = run(tmp_path, f"file://{path}", "two", scale={**scale, "batchRows": 65536})
    assert one["digest"] == two["digest"]
    for name in SPLITS:
        assert (folder(one) / f"{name}.parquet").read_bytes() == (
            folder(two) / f"{name}.parquet"
        ).read_bytes()
    again = run(tmp_path, f"file://{path}", "one", scale={**scale, "batchRows": 4096})
    assert again["digest"] == one["digest"] and again["reused"] is True
    assert [p.name for p in (tmp_path / "one").iterdir()] == [one["digest"]]  # no staging left behind


def test_a_directory_of_files_streams_in_path_order(tmp_path: pathlib.Path) -> None:
    data = frame(5000, seed=3)
    (tmp_path / "parts" / "b").mkdir(parents=True)
    data.iloc[:2000].to_parquet(tmp_path / "parts" / "a.parquet", index=False)
    data.iloc[2000:3500].to_parquet(tmp_path / "parts" / "b" / "c.parquet", index=False)
    data.iloc[3500:].to_parquet(tmp_path / "parts" / "d.parquet", index=False)
    (tmp_path / "parts" / "_SUCCESS").write_text("")  # what Spark leaves: skipped
    data.to_parquet(tmp_path / "whole.parquet", index=False)
    parts = run(tmp_path, f"file://{tmp_path}/parts", "parts")  # a directory streams at any size
    whole = run(tmp_path, f"file://{tmp_path}/whole.parquet", "whole", scale=STREAM)
    assert parts["rows"] == whole["rows"] and parts["rows"]["input"] == len(data)
    assert parts["dropped"] == whole["dropped"]
    for name, part in splits(whole).items():
        pd.testing.assert_frame_equal(splits(parts)[name], part)
    (tmp_path / "parts" / "e.csv").write_text("x\n1\n")
    with pytest.raises(runtime.WorkloadError, match="holds both Parquet and CSV files"):
        run(tmp_path, f"file://{tmp_path}/parts", "mixed")


def test_which_path(tmp_path: pathlib.Path) -> None:
    frame(2000).to_parquet(tmp_path / "d.parquet", index=False)
    frame(2000).to_csv(tmp_path / "d.csv", index=False)

    def streams(uri: str, rows: int, **spec: Any) -> bool:
        full = {
            "sources": [{"file": {"uri": uri}}],
            "storage": "file:///out",
            "scale": {"inMemoryRows": rows},
        }
        return stream.should_stream(api.PrepareConfig(dataset="d", spec=api.DatasetSpec.model_validate(full)))

    total = 2000 + 100  # the duplicates frame() adds
    assert streams(f"file://{tmp_path}/d.parquet", total - 1)  # the footer's row count
    assert not streams(f"file://{tmp_path}/d.parquet", total)
    assert streams(f"file://{tmp_path}/d.csv", total - 1)  # small file: counted lines
    assert not streams(f"file://{tmp_path}/d.csv", total)
    assert not streams(f"file://{tmp_path}/missing.parquet", 1)  # the in-memory path reports it
    sklearn = {
        "sources": [{"sklearn": {"name": "iris"}}],
        "storage": "file:///out",
        "scale": {"inMemoryRows": 1},
    }
    assert not stream.should_stream(
        api.PrepareConfig(dataset="d", spec=api.DatasetSpec.model_validate(sklearn))
    )


def test_violations_are_counted_in_every_row_not_the_sample(tmp_path: pathlib.Path) -> None:
    data = frame(5000, seed=4)
    data.to_parquet(tmp_path / "d.parquet", index=False)
    bad = int(((data["age"] < 0) | (data["score"] == "n/k")).sum())
    spec = json.loads(json.dumps(SPEC))
    spec["schema"]["onViolation"] = "fail"
    messages = []
    for scale in ({}, {**STREAM, "sampleRows": 1000, "batchRows": 1024}):
        full = {"sources": [{"file": {"uri": f"file://{tmp_path}/d.parquet"}}], "scale": scale, **spec}
        config = api.PrepareConfig(
            dataset="d", spec=api.DatasetSpec.model_validate({"storage": f"file://{tmp_path}/out", **full})
        )
        with pytest.raises(runtime.WorkloadError, match=f"{bad} of {len(data)} rows violate") as failure:
            pipeline.prepare(config, scratch_dir=str(tmp_path))
        assert failure.value.reason == "SchemaViolation"
        messages.append(str(failure.value))
    assert messages[0] == messages[1]  # the same counts and the same first examples


def test_regression_streams_with_exact_moments(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(5)
    rows = 8000
    data = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    data["t"] = 2 * data["a"] + rng.normal(scale=0.1, size=rows)
    data.to_parquet(tmp_path / "r.parquet", index=False)
    config = api.PrepareConfig(
        dataset="r",
        spec=api.DatasetSpec.model_validate(
            {
                "sources": [{"file": {"uri": f"file://{tmp_path}/r.parquet"}}],
                "storage": f"file://{tmp_path}/out",
                "schema": {"target": "t"},
                "scale": {**STREAM, "sampleRows": 1000},
            }
        ),
    )
    result = pipeline.prepare(config, scratch_dir=str(tmp_path))
    assert result["task"] == "regression" and result["rows"]["output"] == rows
    train = splits(result)["train"]
    target = doc(result, "baseline.json")["target"]
    assert target["type"] == "numeric"
    assert target["mean"] == pytest.approx(train["t"].mean()) and target["std"] == pytest.approx(
        train["t"].std(ddof=0)
    )


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def test_seen_rows_is_drop_duplicates_across_batches() -> None:
    rng = np.random.default_rng(6)
    rows = 20_000
    data = pd.DataFrame(
        {
            "f": rng.choice(np.array([0.0, -0.0, 1.5, np.nan]), size=rows),
            "i": pd.array(rng.choice(np.array([0, 1, 2]), size=rows), dtype="Int64"),
            "b": pd.array(rng.choice(np.array([True, False]), size=rows), dtype="boolean"),
            "s": pd.Series(rng.choice(np.array(["nan", "x", "y"]), size=rows), dtype="str"),
        }
    )
    data.loc[rng.random(rows) < 0.2, "i"] = pd.NA  # a gap is not 0
    data.loc[rng.random(rows) < 0.2, "b"] = pd.NA  # nor False
    data.loc[rng.random(rows) < 0.2, "s"] = None  # nor the text "nan"
    seen = stream_ops.SeenRows(run_max=3000)
    fresh = np.concatenate(
        [seen.admit(*stream_ops.row_hashes(data.iloc[start : start + 777])) for start in range(0, rows, 777)]
    )
    expected = ~data.duplicated(keep="first").to_numpy()
    np.testing.assert_array_equal(fresh, expected)
    assert len(seen) == int(expected.sum())


def test_digest_of_written_files_is_digest_compute(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(7)
    parts: dict[str, pd.DataFrame] = {}
    for name, size in (("train", 5003), ("validation", 11), ("test", 0)):
        part = pd.DataFrame(
            {
                "f": rng.normal(size=size),
                "i": pd.array(rng.integers(-5, 5, size=size), dtype="Int64"),
                "b": rng.random(size=size) < 0.5,
                "s": pd.Series(rng.choice(np.array(["", "é", "long text"]), size=size), dtype="str"),
            }
        )
        part.loc[rng.random(size) < 0.1, ["f", "i", "s"]] = None
        parts[name] = part
    columns = [
        validate.Column(name="f", dtype="float"),
        validate.Column(name="i", dtype="int"),
        validate.Column(name="b", dtype="bool"),
        validate.Column(name="s", dtype="category"),
    ]
    files = {}
    for name, part in parts.items():
        files[name] = tmp_path / f"{name}.parquet"
        part.to_parquet(files[name], index=False, row_group_size=1000)  # several chunks per column
    rows = {name: len(part) for name, part in parts.items()}
    expected = digest.compute(parts, columns=columns, preparation={"p": 1})
    assert stream_ops.digest_files(files, columns=columns, preparation={"p": 1}, rows=rows) == expected


def test_sample_keys_do_not_depend_on_batching() -> None:
    key = stream_ops.seed_word(42, 1)
    whole = stream_ops.index_keys(0, 10_000, key=key)
    pieces = np.concatenate([stream_ops.index_keys(s, 1000, key=key) for s in range(0, 10_000, 1000)])
    np.testing.assert_array_equal(whole, pieces)
    assert len(np.unique(whole)) == 10_000
    assert not np.array_equal(whole, stream_ops.index_keys(0, 10_000, key=stream_ops.seed_word(43, 1)))
    chosen = stream_ops.smallest(whole, 100)
    assert chosen.sum() == 100 and whole[chosen].max() < whole[~chosen].min()
    assert hashlib.sha256(whole.tobytes()).hexdigest()  # plain uint64 words


@pytest.mark.parametrize("stratified", [True, False])
def test_lean_assign_is_split_assign(stratified: bool) -> None:
    rng = np.random.default_rng(8)
    codes = np.sort(
        rng.choice(np.array([0, 1, 2, 3], dtype=np.int32), size=50_000, p=[0.7, 0.2, 0.0999, 0.0001])
    )
    codes = rng.permutation(codes).astype(np.int32)
    fractions = (0.7, 0.15, 0.15)
    labels = pd.Series(codes) if stratified else None
    expected = split.assign(labels, size=len(codes), fractions=fractions, seed=11)
    mine = stream_ops.assign(codes if stratified else None, size=len(codes), fractions=fractions, seed=11)
    np.testing.assert_array_equal(mine, expected)
    with pytest.raises(runtime.WorkloadError, match="would be empty"):
        stream_ops.assign(None, size=1, fractions=fractions, seed=1)
