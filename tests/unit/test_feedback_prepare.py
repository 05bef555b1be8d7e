"""The feedback source in the prepare workload, on a file:// capture root seeded with real capture
files (``capture.arrow_schema``, and the model server's own writer) and real label files
(``labels.write``): which rows and labels come back, in which order and with which columns, the
failures, and a Dataset merging iris with the feedback prepared end to end, whose digest is the
same for the same files and changes when a label is added."""

from __future__ import annotations

import datetime
import pathlib
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import prometheus_client
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_operator.api import dataset as api
from mlops_workloads import capture, labels, runtime, storage
from mlops_workloads.prepare import feedback, pipeline, sources
from mlops_workloads.serve import capture as serve_capture
from mlops_workloads.serve import telemetry

IRIS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
FEATURES = tuple((name, "float") for name in IRIS)
T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)


def at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def captured(
    request_id: str,
    row: int,
    *,
    minute: float,
    prediction: Any = 2,
    low: bool = True,
    values: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One captured row: iris-like inputs no bundled iris row has (7.77 ... ), the model's answer."""
    base = values if values is not None else (7.77 + row / 100, 3.33 + minute / 1000, 6.66, 2.22)
    return {
        "request_id": request_id,
        "row": row,
        "time": at(minute),
        "low_confidence": low,
        "reason": capture.REASON_LOW_CONFIDENCE if low else capture.REASON_SAMPLE,
        "prediction": prediction,
        "features": dict(zip(IRIS, base, strict=True)),
    }


def write_capture(
    root: storage.Store,
    rows: Sequence[dict[str, Any]],
    *,
    name: str = "iris-0-1",
    features: Sequence[tuple[str, str]] = FEATURES,
    classes: Sequence[Any] | None = (0, 1, 2),
    task: str = "classification",
    version: str = "3",
) -> str:
    """A capture file as the model server writes one (schema, metadata, path); its path."""
    schema = capture.arrow_schema(features, task=task, classes=classes)
    columns = {c.column: [r["features"].get(c.name) for r in rows] for c in capture.feature_columns(features)}
    data: dict[str, list[Any]] = {
        "request_id": [r["request_id"] for r in rows],
        "row": [r["row"] for r in rows],
        "time": [r["time"] for r in rows],
        "model_name": ["iris"] * len(rows),
        "model_version": [version] * len(rows),
        "model_digest": ["sha256:ab"] * len(rows),
        "pod": ["iris-predictor-0"] * len(rows),
        "reason": [r["reason"] for r in rows],
        "low_confidence": [r["low_confidence"] for r in rows],
        **columns,
        "prediction": [r["prediction"] for r in rows],
    }
    if "confidence" in schema.names:
        data["confidence"] = [0.5] * len(rows)
        data["probabilities"] = [[0.25, 0.25, 0.5]] * len(rows)
        data["classes"] = [["0", "1", "2"]] * len(rows)
    table = pa.table(data, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = capture.file_path(rows[0]["time"], f"{name}{capture.SUFFIX}")
    root.write_bytes(path, sink.getvalue().to_pybytes())
    return path


def label(
    request_id: str, row: int, action: str, value: str | None, *, minute: float, who: str = "ana"
) -> labels.Label:
    return labels.Label(request_id, row, action, who, at(minute), label=value, prediction="2")


def save(root: storage.Store, *batch: labels.Label) -> None:
    labels.write(root, list(batch), now=max(one.time for one in batch))


def config(
    tmp_path: pathlib.Path, *entries: dict[str, Any], storage_dir: str = "out", **spec: Any
) -> api.PrepareConfig:
    """A prepare config whose feedback sources read ``<tmp>/capture/ml/iris`` (as the operator
    resolves a ModelDeployment iris with logging.storageUri file://<tmp>/capture)."""
    chosen = list(entries) or [{"feedback": {"modelDeployment": "iris"}}]
    body = {"sources": chosen, "storage": f"file://{tmp_path}/{storage_dir}", **spec}
    stores = [
        api.FeedbackStore(source=i, model_deployment="iris", uri=f"file://{tmp_path}/capture/ml/iris")
        for i, entry in enumerate(chosen)
        if "feedback" in entry
    ]
    return api.PrepareConfig(
        dataset="iris-feedback", namespace="ml", spec=api.DatasetSpec.model_validate(body), feedback=stores
    )


def root_of(tmp_path: pathlib.Path) -> storage.Store:
    return storage.open_store(f"file://{tmp_path}/capture/ml/iris")


def read(cfg: api.PrepareConfig, index: int = 0) -> feedback.Feedback:
    source = cfg.spec.sources[index]
    assert source.feedback is not None
    return feedback.read(source.feedback, index=index, where=sources.label(index, source), config=cfg)


def failure(cfg: api.PrepareConfig, index: int = 0) -> runtime.WorkloadError:
    with pytest.raises(runtime.WorkloadError) as err:
        read(cfg, index)
    return err.value


@pytest.fixture
def seeded(tmp_path: pathlib.Path) -> storage.Store:
    """Two files (written out of time order), four rows, three decisions (one replaced)."""
    root = root_of(tmp_path)
    write_capture(root, [captured("r3", 0, minute=30), captured("r2", 0, minute=20, prediction=1)], name="b")
    write_capture(root, [captured("r1", 0, minute=10), captured("r1", 1, minute=10, low=False)], name="a")
    save(
        root,
        label("r1", 0, "confirmed", "2", minute=40),
        label("r2", 0, "corrected", "0", minute=40),
        label("r3", 0, "skipped", None, minute=40),
    )
    save(root, label("r2", 0, "corrected", "1", minute=50, who="bo"))  # bo's later decision wins
    return root


# ---------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------


def test_labelled_rows_come_with_their_latest_label_and_the_original_feature_names(
    tmp_path: pathlib.Path, seeded: storage.Store
) -> None:
    got = read(config(tmp_path))
    assert list(got.frame.columns) == [*IRIS, "target"]  # no request ids, times or probabilities
    assert got.frame["target"].tolist() == [2, 1]  # r1:0 confirmed, r2:0 corrected (the latest)
    assert str(got.frame["target"].dtype) == "Int64"
    assert got.frame[IRIS[1]].tolist() == pytest.approx([3.34, 3.35])  # r1 (minute 10) before r2 (20)
    assert (got.captured, got.labelled, got.task, got.features) == (4, 2, "classification", IRIS)


def test_unlabelled_reads_every_row_with_an_empty_target_where_nobody_labelled(
    tmp_path: pathlib.Path, seeded: storage.Store
) -> None:
    got = read(config(tmp_path, {"feedback": {"modelDeployment": "iris", "labelled": False}}))
    # r1:0, r1:1 (same time: by row), r2:0, r3:0 (skipped: no label)
    assert got.frame["target"].tolist() == [2, pd.NA, 1, pd.NA]
    assert got.frame[IRIS[0]].tolist() == pytest.approx([7.77, 7.78, 7.77, 7.77])


def test_include_low_confidence_and_since_filter_the_captured_rows(
    tmp_path: pathlib.Path, seeded: storage.Store
) -> None:
    low = read(
        config(
            tmp_path, {"feedback": {"modelDeployment": "iris", "labelled": False, "include": "lowConfidence"}}
        )
    )
    assert low.captured == 3 and low.frame[IRIS[0]].tolist() == pytest.approx([7.77] * 3)
    recent = read(
        config(tmp_path, {"feedback": {"modelDeployment": "iris", "since": "2026-03-01T09:15:00Z"}})
    )
    assert recent.captured == 2 and recent.frame["target"].tolist() == [1]  # r2 only (r3 was skipped)
    offset = read(
        config(tmp_path, {"feedback": {"modelDeployment": "iris", "since": "2026-03-01T10:10:00+01:00"}})
    )
    assert offset.captured == 4


def test_the_same_files_give_the_same_frame_whatever_their_names(tmp_path: pathlib.Path) -> None:
    rows = [captured(f"q{i}", i % 2, minute=i, prediction=i % 3) for i in range(8)]
    decided = [label(f"q{i}", i % 2, "corrected", str((i + 1) % 3), minute=60 + i) for i in range(8)]
    frames = []
    for case, (split, names) in enumerate([(4, ("x", "y")), (2, ("z", "a"))]):
        base = tmp_path / f"case{case}"
        root = root_of(base)
        write_capture(root, rows[split:], name=names[0])
        write_capture(root, rows[:split], name=names[1])
        save(root, *decided[:3])
        save(root, *decided[3:])
        frames.append(read(config(base)).frame)
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0]["target"].tolist() == [(i + 1) % 3 for i in range(8)]


def test_the_model_servers_own_files_are_read(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    model = serve_capture.ModelInfo(
        name="iris",
        version="1",
        digest="sha256:x",
        task="classification",
        features=FEATURES,
        classes=(0, 1, 2),
    )
    cap = serve_capture.Capture(
        model=model,
        open_sink=lambda: root,
        metrics=telemetry.CaptureMetrics(prometheus_client.CollectorRegistry()),
        sample_rate=1.0,
        rng=random.Random(0),
        poll_seconds=0.01,
    )
    cap.start()
    columns = {name: np.array([5.0 + i, 6.0 + i]) for i, name in enumerate(IRIS)}
    cap.offer(
        "req-a",
        columns=columns,
        result=np.array([0, 2]),
        proba=np.array([[0.9, 0.05, 0.05], [0.3, 0.3, 0.4]]),
        low=np.array([False, True]),
        low_count=1,
        rows=2,
    )
    cap.close()
    assert len(capture.files(root)) == 1
    save(root, label("req-a", 1, "corrected", "1", minute=0))
    got = read(config(tmp_path))
    assert got.frame.to_dict("list") == {**{n: [6.0 + i] for i, n in enumerate(IRIS)}, "target": [1]}
    everything = read(config(tmp_path, {"feedback": {"modelDeployment": "iris", "labelled": False}}))
    assert everything.frame["target"].tolist() == [pd.NA, 1]


def test_a_feature_renamed_in_the_file_gets_its_name_back(tmp_path: pathlib.Path) -> None:
    features = (("row", "int"), ("city", "category"), ("ok", "bool"))
    root = root_of(tmp_path)
    row = {
        "request_id": "r",
        "row": 0,
        "time": T0,
        "low_confidence": True,
        "reason": "low_confidence",
        "prediction": "yes",
        "features": {"row": 7, "city": "Oslo", "ok": None},
    }
    path = write_capture(root, [row], features=features, classes=("no", "yes"))
    assert "input.row" in pq.read_schema(root.local_path() / path).names
    save(root, label("r", 0, "corrected", "no", minute=1))
    got = read(config(tmp_path, schema={"target": "label"}))
    assert list(got.frame.columns) == ["row", "city", "ok", "label"]
    assert got.frame.iloc[0][["row", "city", "label"]].tolist() == [7, "Oslo", "no"]
    assert got.frame["ok"].isna().all()
    assert str(got.frame["row"].dtype) == "Int64" and str(got.frame["ok"].dtype) == "boolean"


def test_regression_and_bool_targets_are_cast_to_the_answers_type(tmp_path: pathlib.Path) -> None:
    reg = root_of(tmp_path / "reg")
    write_capture(reg, [captured("r", 0, minute=0, prediction=1.5)], task="regression", classes=None)
    save(reg, label("r", 0, "corrected", "2.25", minute=1))
    got = read(config(tmp_path / "reg"))
    assert got.frame["target"].tolist() == [2.25] and got.task == "regression"
    flag = root_of(tmp_path / "bool")
    write_capture(flag, [captured("r", 0, minute=0, prediction=True)], classes=(False, True))
    save(flag, label("r", 0, "corrected", "False", minute=1))
    assert read(config(tmp_path / "bool")).frame["target"].tolist() == [False]
    save(flag, label("r", 0, "corrected", "perhaps", minute=2))
    error = failure(config(tmp_path / "bool"))
    assert (
        error.reason == "SchemaMismatch" and "'perhaps' of request 'r' row 0 is not a bool" in error.message
    )


def test_a_label_that_is_not_a_class_of_the_model_names_the_row(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0), captured("r2", 3, minute=1)])
    save(root, label("r1", 0, "confirmed", "2", minute=2), label("r2", 3, "corrected", "virginica", minute=2))
    error = failure(config(tmp_path))
    assert error.reason == "SchemaMismatch"
    assert "the label 'virginica' of request 'r2' row 3 cannot be read as int64" in error.message


def test_nothing_captured_or_nothing_labelled_is_feedback_empty(tmp_path: pathlib.Path) -> None:
    error = failure(config(tmp_path))
    assert error.reason == "FeedbackEmpty"
    assert "ModelDeployment 'iris' has captured no rows" in error.message
    assert f"file://{tmp_path}/capture/ml/iris" in error.message
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0), captured("r2", 0, minute=1)])
    save(root, label("r1", 0, "skipped", None, minute=2))
    error = failure(config(tmp_path))
    assert error.reason == "FeedbackEmpty"
    assert (
        "none of the 2 rows ModelDeployment 'iris' captured has a confirmed or corrected label"
        in error.message
    )
    assert "mlops review iris" in error.message
    low = config(
        tmp_path,
        {
            "feedback": {
                "modelDeployment": "iris",
                "include": "lowConfidence",
                "since": "2027-01-01T00:00:00Z",
            }
        },
    )
    assert "has captured no low-confidence rows since 2027-01-01T00:00:00Z" in failure(low).message
    # Unlabelled, the captured rows are the source's rows.
    assert (
        len(read(config(tmp_path, {"feedback": {"modelDeployment": "iris", "labelled": False}})).frame) == 2
    )


def test_a_file_that_is_not_a_capture_file_is_refused(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1]}), sink)
    root.write_bytes("captured/2026/03/01/stray.parquet", sink.getvalue().to_pybytes())
    error = failure(config(tmp_path))
    assert error.reason == "SourceUnreadable" and "stray.parquet is not a capture file" in error.message
    root.write_bytes("captured/2026/03/01/stray.parquet", b"not parquet at all")
    error = failure(config(tmp_path))
    assert error.reason == "StorageUnreadable" and "cannot read the capture file" in error.message


def test_a_config_without_the_resolved_root_is_invalid(tmp_path: pathlib.Path) -> None:
    cfg = config(tmp_path).model_copy(update={"feedback": None})
    error = failure(cfg)
    assert error.reason == "InvalidConfig" and "names no capture root" in error.message


def test_a_feature_named_like_the_target_is_refused(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)])
    error = failure(config(tmp_path, schema={"target": IRIS[0]}))
    assert error.reason == "SchemaMismatch" and "is the Dataset's target" in error.message


# ---------------------------------------------------------------------------------------------
# Merged with other sources, prepared end to end
# ---------------------------------------------------------------------------------------------

MERGED: tuple[dict[str, Any], ...] = (
    {"sklearn": {"name": "iris"}},
    {"feedback": {"modelDeployment": "iris"}},
)


def prepare(
    tmp_path: pathlib.Path, storage_dir: str, *entries: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    cfg = config(tmp_path, *(entries or MERGED), storage_dir=storage_dir, **spec)
    return pipeline.prepare(cfg, scratch_dir=str(tmp_path))


def version_rows(result: dict[str, Any]) -> pd.DataFrame:
    folder = pathlib.Path(result["storageUri"].removeprefix("file://"))
    return pd.concat([pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "validation", "test")])


def test_a_dataset_merges_iris_with_the_reviewed_rows_and_a_new_label_is_a_new_digest(
    tmp_path: pathlib.Path,
) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured(f"r{i}", 0, minute=i, prediction=2) for i in range(6)])
    save(root, *(label(f"r{i}", 0, "corrected", "1", minute=10 + i) for i in range(4)))

    first = prepare(tmp_path, "one")
    assert first["rows"]["input"] == 150 + 4 and first["task"] == "classification"
    rows = version_rows(first)
    fed = rows[rows[IRIS[0]] == 7.77]
    assert len(fed) == 4 and set(fed["target"]) == {1}
    assert sorted(rows.columns) == sorted([*IRIS, "target"])
    folder = pathlib.Path(first["storageUri"].removeprefix("file://"))
    report = pd.read_json(folder / "report.json", typ="series")
    assert [s["rows"] for s in report["sources"]] == [150, 4]
    assert report["sources"][1]["source"] == "sources[1] (feedback ModelDeployment iris)"

    # The same captured and labelled files: the same version.
    again = prepare(tmp_path, "two")
    assert again["digest"] == first["digest"]

    # A reviewer labels one more row: the next read makes a new version with it.
    save(root, label("r4", 0, "confirmed", "2", minute=30))
    more = prepare(tmp_path, "three")
    assert more["rows"]["input"] == 155 and more["digest"] != first["digest"]
    rows = version_rows(more)
    assert sorted(rows[rows[IRIS[0]] == 7.77]["target"]) == [1, 1, 1, 1, 2]
    # ... and a changed label too.
    save(root, label("r0", 0, "corrected", "0", minute=31))
    changed = prepare(tmp_path, "four")
    assert changed["rows"]["input"] == 155 and changed["digest"] not in (first["digest"], more["digest"])


def test_unlabelled_feedback_counts_its_rows_and_cleaning_drops_those_without_a_target(
    tmp_path: pathlib.Path,
) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured(f"r{i}", 0, minute=i) for i in range(5)])
    save(root, label("r1", 0, "corrected", "0", minute=10), label("r3", 0, "confirmed", "2", minute=10))
    result = prepare(tmp_path, "out", MERGED[0], {"feedback": {"modelDeployment": "iris", "labelled": False}})
    assert result["rows"]["input"] == 155
    assert result["dropped"]["missingTarget"] == 3
    # iris (one exact duplicate removed) and the two labelled rows
    assert result["classBalance"] == {"0": 51, "1": 50, "2": 50}
    rows = version_rows(result)
    assert sorted(rows[rows[IRIS[0]] == 7.77]["target"]) == [0, 2]
    assert rows["target"].dtype.kind == "i"  # the classes stay integers


def test_a_column_the_model_never_saw_must_be_excluded(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.normal(size=60).round(3) for name in IRIS})
    table["id"] = [f"id-{i}" for i in range(60)]
    table["target"] = rng.integers(0, 3, size=60)
    table.to_csv(tmp_path / "rows.csv", index=False)
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0), captured("r2", 0, minute=1)])
    save(root, label("r1", 0, "corrected", "1", minute=2), label("r2", 0, "corrected", "0", minute=2))
    file_source = {"file": {"uri": f"file://{tmp_path}/rows.csv"}}
    cfg = config(tmp_path, file_source, MERGED[1])
    with pytest.raises(runtime.WorkloadError) as err:
        sources.load(cfg, scratch=tmp_path)
    assert err.value.reason == "SchemaMismatch"
    assert "sources[1] (feedback ModelDeployment iris) has no columns ['id']" in err.value.message
    assert "spec.schema.exclude" in err.value.message
    # Feedback first, the file second: the file's column order, the id empty and then excluded.
    cfg = config(tmp_path, MERGED[1], file_source, schema={"exclude": ["id"]})
    loaded = sources.load(cfg, scratch=tmp_path)
    assert list(loaded.frame.columns) == [*IRIS, "id", "target"]
    assert loaded.rows_per_source == (2, 60) and loaded.frame["id"].head(2).isna().all()
    result = prepare(tmp_path, "out", MERGED[1], file_source, schema={"exclude": ["id"]})
    assert result["rows"]["input"] == 62 and result["columns"] == 4


def test_features_the_other_sources_lack_are_a_mismatch(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)], features=(*FEATURES, ("extra", "float")))
    save(root, label("r1", 0, "corrected", "1", minute=2))
    with pytest.raises(runtime.WorkloadError) as err:
        sources.load(config(tmp_path, *MERGED), scratch=tmp_path)
    assert err.value.reason == "SchemaMismatch" and "has features ['extra']" in err.value.message


# ---------------------------------------------------------------------------------------------
# An empty feedback source beside other sources: no rows, a warning, the other sources' version
# ---------------------------------------------------------------------------------------------

EMPTY_STATES = ("no capture root", "an empty capture root", "only unlabelled rows")


def seed_empty(base: pathlib.Path, state: str) -> None:
    """A capture root with no labelled row: absent, an empty directory, or rows nobody confirmed."""
    if state == "an empty capture root":
        (base / "capture" / "ml" / "iris").mkdir(parents=True)
    elif state == "only unlabelled rows":
        root = root_of(base)
        write_capture(root, [captured("r1", 0, minute=0), captured("r2", 0, minute=1)])
        save(root, label("r1", 0, "skipped", None, minute=2))


@pytest.mark.parametrize("state", EMPTY_STATES)
def test_an_empty_feedback_source_beside_others_adds_no_rows_and_says_so(
    tmp_path: pathlib.Path, state: str
) -> None:
    seed_empty(tmp_path, state)
    alone = sources.load(config(tmp_path, MERGED[0]), scratch=tmp_path)
    for entries, rows in ((MERGED, (150, 0)), ((MERGED[1], MERGED[0]), (0, 150))):
        loaded = sources.load(config(tmp_path, *entries), scratch=tmp_path)
        # Left out, not concatenated: the same frame, dtypes included, as iris alone.
        pd.testing.assert_frame_equal(loaded.frame, alone.frame)
        assert loaded.rows_per_source == rows
        assert loaded.task_hint == "classification"
        index = rows.index(0)
        assert len(loaded.warnings) == 1
        note = loaded.warnings[0]
        assert note.startswith(f"sources[{index}] (feedback ModelDeployment iris) adds no rows: ")
        if state == "only unlabelled rows":
            assert "none of the 2 rows ModelDeployment 'iris' captured has a confirmed or corrected" in note
        else:
            assert "ModelDeployment 'iris' has captured no rows under file://" in note
    assert alone.warnings == ()


def test_an_empty_feedback_source_is_no_task_hint(tmp_path: pathlib.Path) -> None:
    # A regression capture beside a file source: with no rows, its task does not decide the
    # file's (the file alone gives the hint None, so the feedback's must not count either).
    pd.DataFrame({"x": [0.5, 1.5, 2.5], "target": [1, 2, 3]}).to_csv(tmp_path / "rows.csv", index=False)
    write_capture(
        root_of(tmp_path),
        [captured("r", 0, minute=0, prediction=1.5, values=(1.0, 2.0, 3.0, 4.0))],
        features=(("x", "float"),),
        task="regression",
        classes=None,
    )
    entries = ({"file": {"uri": f"file://{tmp_path}/rows.csv"}}, MERGED[1])
    loaded = sources.load(config(tmp_path, *entries), scratch=tmp_path)
    assert loaded.task_hint is None and loaded.rows_per_source == (3, 0)
    assert str(loaded.frame["target"].dtype) == "int64"
    save(root_of(tmp_path), label("r", 0, "corrected", "2.5", minute=1))
    labelled = sources.load(config(tmp_path, *entries), scratch=tmp_path)
    assert labelled.task_hint == "regression" and labelled.rows_per_source == (3, 1)
    assert labelled.warnings == ()


def test_an_empty_feedback_source_leaves_the_version_of_the_other_sources(tmp_path: pathlib.Path) -> None:
    results = {}
    for state in EMPTY_STATES:
        base = tmp_path / state.replace(" ", "-")
        base.mkdir()
        seed_empty(base, state)
        results[state] = prepare(base, "out")
    digests = {result["digest"] for result in results.values()}
    assert len(digests) == 1  # the same spec and no feedback row: the same version
    (tmp_path / "iris-alone").mkdir()
    iris_alone = prepare(tmp_path / "iris-alone", "out", MERGED[0])
    for state, result in results.items():
        assert result["rows"]["input"] == 150 and result["task"] == "classification"
        assert [w for w in result["warnings"] if "adds no rows" in w] == [result["warnings"][0]], state
        assert result["warnings"][0].startswith("sources[1] (feedback ModelDeployment iris) adds no rows")
        # The rows, split by split, are exactly those of iris alone (the digest differs only in
        # the spec, which names the feedback source).
        folder = pathlib.Path(result["storageUri"].removeprefix("file://"))
        alone = pathlib.Path(iris_alone["storageUri"].removeprefix("file://"))
        for split in ("train", "validation", "test"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(folder / f"{split}.parquet"), pd.read_parquet(alone / f"{split}.parquet")
            )
        report = pd.read_json(folder / "report.json", typ="series")
        assert [s["rows"] for s in report["sources"]] == [150, 0]
        assert report["warnings"][0] == result["warnings"][0]
    assert [w for w in iris_alone["warnings"] if "adds no rows" in w] == []

    # One labelled row: a row more, a new digest, no warning about the source.
    base = tmp_path / "only-unlabelled-rows"
    save(root_of(base), label("r2", 0, "confirmed", "2", minute=3))
    more = prepare(base, "more")
    assert more["rows"]["input"] == 151 and more["digest"] not in digests
    assert [w for w in more["warnings"] if "adds no rows" in w] == []


def test_feedback_sources_alone_still_fail_when_empty(tmp_path: pathlib.Path) -> None:
    with pytest.raises(runtime.WorkloadError) as err:
        pipeline.prepare(config(tmp_path), scratch_dir=str(tmp_path))
    assert err.value.reason == "FeedbackEmpty" and "has captured no rows" in err.value.message
    # Two feedback sources, one with rows: the empty one still fails the preparation (there is
    # no base data it could be left out of).
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)])
    save(root, label("r1", 0, "confirmed", "2", minute=1))
    both = config(
        tmp_path,
        {"feedback": {"modelDeployment": "iris"}},
        {"feedback": {"modelDeployment": "iris", "since": "2027-01-01T00:00:00Z"}},
    )
    with pytest.raises(runtime.WorkloadError) as err:
        sources.load(both, scratch=tmp_path)
    assert err.value.reason == "FeedbackEmpty"
    assert err.value.message.startswith("sources[1] (feedback ModelDeployment iris): ")


def test_an_empty_feedback_source_with_capture_files_is_still_checked_against_the_others(
    tmp_path: pathlib.Path,
) -> None:
    # Captured but unlabelled rows name the model's features: a mismatch shows now, not at the
    # first label.
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)], features=(*FEATURES, ("extra", "float")))
    with pytest.raises(runtime.WorkloadError) as err:
        sources.load(config(tmp_path, *MERGED), scratch=tmp_path)
    assert err.value.reason == "SchemaMismatch" and "has features ['extra']" in err.value.message
    # A column of the file the model never saw: excluded, the empty source passes.
    table = pd.DataFrame({name: [1.0, 2.0] for name in IRIS} | {"id": ["a", "b"], "target": [0, 1]})
    table.to_csv(tmp_path / "rows.csv", index=False)
    other = tmp_path / "other"
    write_capture(root_of(other), [captured("r1", 0, minute=0)])
    file_source = {"file": {"uri": f"file://{tmp_path}/rows.csv"}}
    with pytest.raises(runtime.WorkloadError) as err:
        sources.load(config(other, file_source, MERGED[1]), scratch=tmp_path)
    assert err.value.reason == "SchemaMismatch" and "has no columns ['id']" in err.value.message
    loaded = sources.load(config(other, file_source, MERGED[1], schema={"exclude": ["id"]}), scratch=tmp_path)
    assert loaded.rows_per_source == (2, 0) and list(loaded.frame.columns) == [*IRIS, "id", "target"]
    # Nothing captured: no features to check, nothing to refuse.
    nothing = sources.load(config(tmp_path / "nothing", file_source, MERGED[1]), scratch=tmp_path)
    assert nothing.rows_per_source == (2, 0)
    pd.testing.assert_frame_equal(nothing.frame, pd.read_csv(tmp_path / "rows.csv", engine="pyarrow"))


def test_read_root_may_answer_an_empty_frame(tmp_path: pathlib.Path) -> None:
    root = root_of(tmp_path)
    write_capture(root, [captured("r1", 0, minute=0)])
    source = api.DatasetSpec.model_validate(
        {"sources": [{"feedback": {"modelDeployment": "iris"}}], "storage": f"file://{tmp_path}/out"}
    ).sources[0]
    assert source.feedback is not None
    with pytest.raises(runtime.WorkloadError) as err:
        feedback.read_root(root, source.feedback, target="target", where="here")
    assert err.value.reason == "FeedbackEmpty"
    got = feedback.read_root(root, source.feedback, target="target", where="here", allow_empty=True)
    assert got.frame.empty and list(got.frame.columns) == [*IRIS, "target"]
    assert (got.captured, got.labelled, got.task) == (1, 0, "classification")
    assert got.empty is not None and got.empty.startswith("here adds no rows: none of the 1 rows")
    save(root, label("r1", 0, "confirmed", "2", minute=1))
    assert (
        feedback.read_root(root, source.feedback, target="target", where="here", allow_empty=True).empty
        is None
    )
