"""Capture of predictions, in-process: the file schema, the writer's rolling, sampling, a full
queue and an unwritable store (every answer still 200), request ids."""

from __future__ import annotations

import json
import os
import pathlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import prometheus_client
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import capture, storage
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import capture as serve_capture
from mlops_workloads.serve import demo, telemetry

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
# Between versicolor and virginica: the demo model's top probability is about 0.52.
UNSURE = {"sepal_length": 6.0, "sepal_width": 2.7, "petal_length": 5.0, "petal_width": 1.6, "site": "east"}
FEATURES = (
    ("sepal_length", "float"),
    ("sepal_width", "float"),
    ("petal_length", "float"),
    ("petal_width", "float"),
    ("site", "category"),
)
MODEL = serve_capture.ModelInfo(
    name="iris",
    version="7",
    digest="sha256:abc",
    task="classification",
    features=FEATURES,
    classes=(0, 1, 2),
    pod="iris-predictor-x",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


def sample(registry: prometheus_client.CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def writer(
    root: pathlib.Path, *, open_sink: Callable[[], serve_capture.Sink] | None = None, **kwargs: Any
) -> tuple[serve_capture.Capture, prometheus_client.CollectorRegistry]:
    registry = prometheus_client.CollectorRegistry()
    options: dict[str, Any] = {"poll_seconds": 0.01, "roll_seconds": 3600.0, **kwargs}
    cap = serve_capture.Capture(
        model=MODEL,
        open_sink=open_sink or (lambda: storage.open_store(f"file://{root}")),
        metrics=telemetry.CaptureMetrics(registry),
        **options,
    )
    return cap, registry


def request(
    rows: int, *, seed: int, low: list[bool] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Feature columns, class indices, probabilities and low flags of one fake answer."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {n: rng.normal(size=rows) for n, _ in FEATURES[:4]}
    columns["site"] = np.array(rng.choice(demo.SITES, size=rows), dtype=object)
    proba = rng.dirichlet(np.ones(3), size=rows)
    result = proba.argmax(axis=1)
    flags = np.array(low if low is not None else [False] * rows)
    return columns, result, proba, flags


def offer(cap: serve_capture.Capture, request_id: str, rows: int, *, seed: int, low: Any = None) -> Any:
    columns, result, proba, flags = request(rows, seed=seed, low=low)
    cap.offer(
        request_id,
        columns=columns,
        result=result,
        proba=proba,
        low=flags,
        low_count=int(flags.sum()),
        rows=rows,
    )
    return columns, result, proba, flags


def read_root(root: pathlib.Path) -> pa.Table:
    return capture.read(storage.open_store(f"file://{root}"))


def wait_for(predicate: Callable[[], bool], *, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# -- the file schema --------------------------------------------------------------------------


def test_schema_names_types_and_metadata() -> None:
    schema = capture.arrow_schema(
        [("age", "int"), ("time", "float"), ("ok", "bool"), ("city", "category"), ("note", "string")],
        task="classification",
        classes=("yes", "no"),
    )
    assert schema.names == [
        "request_id",
        "row",
        "time",
        "model_name",
        "model_version",
        "model_digest",
        "pod",
        "reason",
        "low_confidence",
        "age",
        "input.time",  # a feature named like one of our columns keeps its data, renamed
        "ok",
        "city",
        "note",
        "prediction",
        "confidence",
        "probabilities",
        "classes",
    ]
    types = {f.name: f.type for f in schema}
    assert types["age"] == pa.int64() and types["input.time"] == pa.float64()
    assert types["ok"] == pa.bool_() and types["city"] == pa.string() and types["note"] == pa.string()
    assert types["time"] == pa.timestamp("us", tz="UTC") and types["row"] == pa.int32()
    assert types["prediction"] == pa.string()
    assert types["probabilities"] == pa.list_(pa.float64()) and types["classes"] == pa.list_(pa.string())
    meta = capture.describe(schema)
    assert meta["version"] == capture.FORMAT_VERSION and meta["classes"] == ["yes", "no"]
    assert [(f.name, f.column, f.dtype) for f in capture.features_of(schema)][1] == (
        "time",
        "input.time",
        "float",
    )


def test_prediction_type_follows_the_classes_and_regressors_have_no_probabilities() -> None:
    assert capture.prediction_type("classification", (0, 1, 2)) == pa.int64()
    assert capture.prediction_type("classification", (True, False)) == pa.bool_()
    assert capture.prediction_type("classification", (0.5, 1.5)) == pa.float64()
    assert capture.prediction_type("classification", ("a", 1)) == pa.string()
    schema = capture.arrow_schema([("x", "float")], task="regression", classes=None)
    assert schema.names[-2:] == ["x", "prediction"] and schema.field("prediction").type == pa.float64()


def test_file_layout_is_partitioned_by_the_first_row_s_utc_date() -> None:
    import datetime

    name = capture.file_name(pod="p-1", pid=12, unix_ms=1700000000000, seq=3)
    assert name == "p-1-12-1700000000000-000003.parquet"
    first = datetime.datetime(2026, 1, 2, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-2)))
    assert capture.file_path(first, name) == f"captured/2026/01/03/{name}"


# -- the writer -------------------------------------------------------------------------------


def test_files_roll_at_max_rows_and_hold_what_was_answered(tmp_path: pathlib.Path) -> None:
    cap, registry = writer(tmp_path, sample_rate=1.0, max_file_rows=100)
    cap.start()
    sent = {f"r{i}": offer(cap, f"r{i}", 10, seed=i) for i in range(25)}
    cap.close()
    paths = capture.files(storage.open_store(f"file://{tmp_path}"))
    assert [pq.read_metadata(p).num_rows for p in paths] == [100, 100, 50]
    assert all("/captured/" in p and p.endswith(".parquet") for p in paths)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    table = read_root(tmp_path)
    assert table.num_rows == 250
    assert sample(registry, "mlops_serve_capture_rows_total", reason="sample") == 250
    assert sample(registry, "mlops_serve_capture_files_total") == 3
    assert sample(registry, "mlops_serve_capture_pending_rows") == 0
    rows = table.to_pylist()
    first = rows[0]
    columns, result, proba, _ = sent[first["request_id"]]
    assert first["row"] == 0 and first["reason"] == "sample" and first["low_confidence"] is False
    assert (first["model_name"], first["model_version"], first["model_digest"], first["pod"]) == (
        "iris",
        "7",
        "sha256:abc",
        "iris-predictor-x",
    )
    for row in rows[:30]:
        columns, result, proba, _ = sent[row["request_id"]]
        i = row["row"]
        assert row["sepal_length"] == columns["sepal_length"][i] and row["site"] == columns["site"][i]
        assert row["prediction"] == result[i] and row["classes"] == ["0", "1", "2"]
        assert row["probabilities"] == pytest.approx(proba[i].tolist())
        assert row["confidence"] == pytest.approx(proba[i].max())
        assert row["time"].tzinfo is not None


def test_files_roll_at_max_bytes(tmp_path: pathlib.Path) -> None:
    cap, registry = writer(tmp_path, sample_rate=1.0, max_file_bytes=8000)
    cap.start()
    for i in range(40):
        offer(cap, f"r{i}", 10, seed=i)
        wait_for(lambda: cap._queued == 0)  # one request per writer pass: files of whole requests
    cap.close()
    paths = capture.files(storage.open_store(f"file://{tmp_path}"))
    assert len(paths) >= 3
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 400
    assert sample(registry, "mlops_serve_capture_files_total") == len(paths)


def test_files_roll_after_roll_seconds_without_waiting_for_more_rows(tmp_path: pathlib.Path) -> None:
    cap, registry = writer(tmp_path, sample_rate=1.0, roll_seconds=0.2)
    cap.start()
    offer(cap, "only", 3, seed=1)
    wait_for(lambda: sample(registry, "mlops_serve_capture_files_total") == 1)
    assert read_root(tmp_path).column("request_id").to_pylist() == ["only"] * 3
    cap.close()
    assert sample(registry, "mlops_serve_capture_files_total") == 1


def test_sampling_draws_requests_from_the_seeded_rng(tmp_path: pathlib.Path) -> None:
    cap, _ = writer(tmp_path, sample_rate=0.3, low_confidence=False, rng=random.Random(42))
    cap.start()
    for i in range(200):
        offer(cap, f"r{i}", 2, seed=i, low=[True, False])
    cap.close()
    twin = random.Random(42)
    expected = {f"r{i}" for i in range(200) if twin.random() < 0.3}
    table = read_root(tmp_path)
    assert set(table.column("request_id").to_pylist()) == expected
    assert 40 < len(expected) < 80
    assert set(table.column("reason").to_pylist()) == {"sample"}
    assert table.num_rows == 2 * len(expected)  # every row of a drawn request
    assert table.column("low_confidence").to_pylist() == [True, False] * len(expected)


def test_low_confidence_keeps_exactly_the_flagged_rows(tmp_path: pathlib.Path) -> None:
    cap, registry = writer(tmp_path, sample_rate=0.0, low_confidence=True)
    cap.start()
    offer(cap, "some", 4, seed=1, low=[False, True, False, True])
    offer(cap, "none", 3, seed=2, low=[False, False, False])
    offer(cap, "all", 2, seed=3, low=[True, True])
    cap.close()
    table = read_root(tmp_path).sort_by([("request_id", "ascending"), ("row", "ascending")])
    got = list(zip(table.column("request_id").to_pylist(), table.column("row").to_pylist(), strict=True))
    assert got == [("all", 0), ("all", 1), ("some", 1), ("some", 3)]
    assert set(table.column("reason").to_pylist()) == {"low_confidence"}
    assert all(table.column("low_confidence").to_pylist())
    assert sample(registry, "mlops_serve_capture_rows_total", reason="low_confidence") == 4
    assert sample(registry, "mlops_serve_capture_rows_total", reason="sample") == 0


def test_a_full_queue_drops_and_counts(tmp_path: pathlib.Path) -> None:
    release = threading.Event()

    class Blocked:
        def write_bytes(self, name: str, data: bytes) -> None:
            release.wait(30)
            storage.open_store(f"file://{tmp_path}").write_bytes(name, data)

    cap, registry = writer(tmp_path, open_sink=Blocked, sample_rate=1.0, queue_rows=50, max_file_rows=20)
    cap.start()
    offer(cap, "first", 20, seed=0)  # becomes the file the writer is stuck on
    wait_for(lambda: cap.pending_rows == 20 and cap._file is not None)
    started = time.perf_counter()
    for i in range(100):
        offer(cap, f"r{i}", 1, seed=i)
    assert time.perf_counter() - started < 1.0  # the request path never waits for the store
    # The buffer takes at most one file's worth (20) while the file waits; the queue holds 50.
    dropped = sample(registry, "mlops_serve_capture_dropped_total", reason="queue_full")
    assert 30 <= dropped <= 50
    release.set()
    cap.close()
    written = sample(registry, "mlops_serve_capture_rows_total", reason="sample")
    assert written + dropped == 120 and read_root(tmp_path).num_rows == written


def test_a_failing_store_is_retried_then_its_rows_dropped_and_counted(tmp_path: pathlib.Path) -> None:
    calls: list[str] = []
    recovered = threading.Event()

    class Flaky:
        def write_bytes(self, name: str, data: bytes) -> None:
            calls.append(name)
            if not recovered.is_set():
                raise OSError("No space left on device")
            storage.open_store(f"file://{tmp_path}").write_bytes(name, data)

    cap, registry = writer(
        tmp_path, open_sink=Flaky, sample_rate=1.0, max_file_rows=10, retry_seconds=0.01, attempts=3
    )
    cap.start()
    offer(cap, "lost", 10, seed=1)
    wait_for(lambda: sample(registry, "mlops_serve_capture_dropped_total", reason="write_error") == 10)
    assert sample(registry, "mlops_serve_capture_errors_total") == 3 and len(set(calls)) == 1
    recovered.set()
    offer(cap, "kept", 10, seed=2)
    cap.close()
    assert read_root(tmp_path).column("request_id").to_pylist() == ["kept"] * 10
    assert sample(registry, "mlops_serve_capture_rows_total", reason="sample") == 10


def test_at_shutdown_a_failing_store_gets_one_attempt_not_a_backoff(tmp_path: pathlib.Path) -> None:
    def broken() -> serve_capture.Sink:
        raise OSError("the store is unreachable")

    cap, registry = writer(tmp_path, open_sink=broken, sample_rate=1.0, retry_seconds=5.0)
    cap.start()
    offer(cap, "a", 5, seed=1)
    started = time.monotonic()
    cap.close(timeout=10.0)
    assert time.monotonic() - started < 2.0
    assert sample(registry, "mlops_serve_capture_errors_total") == 1
    assert sample(registry, "mlops_serve_capture_dropped_total", reason="write_error") == 5


def test_close_writes_until_its_deadline_and_counts_the_rest(tmp_path: pathlib.Path) -> None:
    class Slow:
        def write_bytes(self, name: str, data: bytes) -> None:
            time.sleep(0.3)
            storage.open_store(f"file://{tmp_path}").write_bytes(name, data)

    cap, registry = writer(tmp_path, open_sink=Slow, sample_rate=1.0, max_file_rows=10)
    cap.start()
    for i in range(10):
        offer(cap, f"r{i}", 10, seed=i)
    started = time.monotonic()
    cap.close(timeout=1.0)
    assert time.monotonic() - started < 3.0
    written = sample(registry, "mlops_serve_capture_rows_total", reason="sample")
    lost = sample(registry, "mlops_serve_capture_dropped_total", reason="shutdown")
    assert 0 < written < 100 and written + lost == 100
    assert read_root(tmp_path).num_rows == written


def test_a_bug_in_the_writer_is_counted_and_capture_goes_on(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap, registry = writer(tmp_path, sample_rate=1.0)
    real = cap._batch
    failures = iter([True])

    def once(records: Any) -> pa.RecordBatch:
        if next(failures, False):
            raise RuntimeError("boom")
        return real(records)

    monkeypatch.setattr(cap, "_batch", once)
    cap.start()
    offer(cap, "lost", 2, seed=1)
    wait_for(lambda: sample(registry, "mlops_serve_capture_errors_total") == 1)
    offer(cap, "kept", 2, seed=2)
    cap.close()
    assert read_root(tmp_path).column("request_id").to_pylist() == ["kept", "kept"]


# -- through the App: answers, request ids, stores that fail ------------------------------------


@pytest.fixture()
def make_app(model_dir: pathlib.Path) -> Iterator[Callable[..., app_mod.App]]:
    made: list[app_mod.App] = []

    def make(uri: str, **settings: Any) -> app_mod.App:
        app = app_mod.App(
            bundle_mod.load(model_dir),
            model_name="iris",
            capture=md_api.CaptureConfig(uri=uri, **settings),
            capture_rng=random.Random(0),
        )
        made.append(app)
        return app

    yield make
    for app in made:
        app.close(1.0)


def predict(app: app_mod.App, rows: list[dict[str, Any]], *, request_id: str | None = None) -> Any:
    body = json.dumps({"instances": rows}).encode()
    started = time.perf_counter()
    result = app.dispatch("POST", "/v1/models/iris:predict", body, request_id)
    assert isinstance(result, app_mod.Pending)
    response = app.score([result])[0]
    return response, time.perf_counter() - started


def headers(response: app_mod.Response) -> dict[str, str]:
    return dict(response.headers)


def test_app_captures_low_confidence_rows_under_the_request_id(
    make_app: Callable[..., app_mod.App], tmp_path: pathlib.Path
) -> None:
    app = make_app(f"file://{tmp_path}/cap")
    response, _ = predict(app, [ROW, UNSURE, ROW], request_id="client-1")
    assert response.status == 200 and headers(response)["X-Request-Id"] == "client-1"
    assert json.loads(response.body)["lowConfidence"] == [False, True, False]
    confident, _ = predict(app, [ROW])
    generated = headers(confident)["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    app.close()
    table = capture.read(storage.open_store(f"file://{tmp_path}/cap"))
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert (row["request_id"], row["row"], row["reason"]) == ("client-1", 1, "low_confidence")
    assert row["petal_length"] == UNSURE["petal_length"] and row["site"] == "east"
    assert row["prediction"] == json.loads(response.body)["predictions"][1]
    assert row["probabilities"] == pytest.approx(json.loads(response.body)["probabilities"][1])


def test_request_ids_from_header_v2_body_or_generated(
    make_app: Callable[..., app_mod.App], tmp_path: pathlib.Path
) -> None:
    app = make_app(f"file://{tmp_path}/cap", sample_rate=1.0)
    v2 = {
        "id": "body-7",
        "inputs": [
            {"name": k, "shape": [1], "datatype": "BYTES" if k == "site" else "FP64", "data": [v]}
            for k, v in ROW.items()
        ],
    }
    pending = app.dispatch("POST", "/v2/models/iris/infer", json.dumps(v2).encode())
    assert isinstance(pending, app_mod.Pending)
    answer = app.score([pending])[0]
    assert headers(answer)["X-Request-Id"] == "body-7" and json.loads(answer.body)["id"] == "body-7"
    bad, _ = predict(app, [ROW], request_id="has space")  # not echoable: replaced
    assert headers(bad)["X-Request-Id"] != "has space" and len(headers(bad)["X-Request-Id"]) == 32
    too_long, _ = predict(app, [ROW], request_id="x" * 201)
    assert len(headers(too_long)["X-Request-Id"]) == 32
    missing = app.dispatch("GET", "/nope", b"", "trace-9")
    assert isinstance(missing, app_mod.Response) and headers(missing)["X-Request-Id"] == "trace-9"
    app.close()
    ids = set(capture.read(storage.open_store(f"file://{tmp_path}/cap")).column("request_id").to_pylist())
    assert ids == {"body-7", headers(bad)["X-Request-Id"], headers(too_long)["X-Request-Id"]}


def test_a_full_queue_never_costs_an_answer(
    make_app: Callable[..., app_mod.App], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_open = storage.open_store

    class Slow:
        def __init__(self, uri: str, **_: Any) -> None:
            self.store = real_open(uri)

        def write_bytes(self, name: str, data: bytes) -> None:
            release.wait(30)
            self.store.write_bytes(name, data)

    monkeypatch.setattr(storage, "open_store", Slow)
    app = make_app(f"file://{tmp_path}/cap", sample_rate=1.0, queue_rows=100, max_file_rows=100)
    plain = app_mod.App(bundle_mod.load(app.bundle.path), model_name="iris")
    expected = json.loads(
        plain.handle(
            "POST", "/v1/models/iris:predict", json.dumps({"instances": [ROW, UNSURE]}).encode()
        ).body
    )
    slowest = 0.0
    for _ in range(300):
        response, seconds = predict(app, [ROW, UNSURE])
        assert response.status == 200
        body = json.loads(response.body)
        assert body["predictions"] == expected["predictions"]
        assert body["probabilities"] == expected["probabilities"]
        slowest = max(slowest, seconds)
    assert slowest < 1.0
    metrics = app.telemetry.registry
    dropped = sample(metrics, "mlops_serve_capture_dropped_total", reason="queue_full")
    assert dropped >= 600 - 300  # at most a file, a buffer and a queue (100 rows each) are held
    release.set()
    app.close()
    written = sample(metrics, "mlops_serve_capture_rows_total", reason="sample")
    assert written + dropped == 600 and written > 0


@pytest.mark.parametrize("kind", ["a-file", "read-only-dir"])
def test_an_unwritable_store_never_costs_an_answer(
    make_app: Callable[..., app_mod.App], tmp_path: pathlib.Path, kind: str
) -> None:
    if kind == "a-file":
        target = tmp_path / "not-a-dir"
        target.write_text("x")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    app = make_app(f"file://{target}", sample_rate=1.0, max_file_rows=100)
    for i in range(150):
        response, seconds = predict(app, [ROW, UNSURE], request_id=f"r{i}")
        assert response.status == 200 and seconds < 1.0
        assert headers(response)["X-Request-Id"] == f"r{i}"
    metrics = app.telemetry.registry
    wait_for(lambda: sample(metrics, "mlops_serve_capture_errors_total") >= 1)
    app.close(2.0)
    lost = sample(metrics, "mlops_serve_capture_dropped_total", reason="write_error") + sample(
        metrics, "mlops_serve_capture_dropped_total", reason="shutdown"
    )
    assert lost == 300 and sample(metrics, "mlops_serve_capture_rows_total", reason="sample") == 0
    assert "mlops_serve_capture_errors_total" in app.telemetry.exposition().decode()


def test_a_regressor_s_rows_have_a_numeric_prediction(tmp_path: pathlib.Path) -> None:
    path = demo.build(tmp_path / "model", estimator="tree")
    app = app_mod.App(
        bundle_mod.load(path),
        model_name="r",
        capture=md_api.CaptureConfig(uri=f"file://{tmp_path}/cap", sample_rate=1.0),
    )
    response = app.handle("POST", "/v1/models/r:predict", json.dumps({"instances": [ROW, UNSURE]}).encode())
    assert response.status == 200
    app.close()
    table = capture.read(storage.open_store(f"file://{tmp_path}/cap"))
    assert table.schema.field("prediction").type == pa.float64()
    assert "probabilities" not in table.schema.names
    assert table.column("prediction").to_pylist() == pytest.approx(json.loads(response.body)["predictions"])
    assert table.column("low_confidence").to_pylist() == [False, False]


def test_capture_off_answers_carry_a_request_id_and_register_no_capture_metrics(
    model_dir: pathlib.Path,
) -> None:
    app = app_mod.App(bundle_mod.load(model_dir), model_name="iris")
    response, _ = predict(app, [ROW], request_id="abc")
    assert headers(response)["X-Request-Id"] == "abc"
    assert app.capture is None and "mlops_serve_capture" not in app.telemetry.exposition().decode()
