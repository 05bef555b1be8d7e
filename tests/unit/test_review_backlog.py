"""The review server's logic (``review.backlog``) on file:// stores seeded by the capture writer:
what is waiting, the checks on a batch of labels, and refreshes as files appear."""

from __future__ import annotations

import datetime
import pathlib
import random
from typing import Any

import numpy as np
import prometheus_client
import pytest

from mlops_workloads import capture, labels, runtime, storage
from mlops_workloads.review import backlog, demo
from mlops_workloads.serve import capture as serve_capture
from mlops_workloads.serve import telemetry

T0 = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def seeded(tmp_path: pathlib.Path, **kwargs: Any) -> tuple[str, list[str]]:
    uri = f"file://{tmp_path}/root"
    return uri, demo.seed(uri, **kwargs)


def open_backlog(uri: str, clock: Clock | None = None, now: datetime.datetime = T0) -> backlog.Backlog:
    return backlog.Backlog(
        storage.open_store(uri), refresh_seconds=5.0, clock=clock or Clock(), now=lambda: now
    )


def test_pending_lists_low_confidence_rows_newest_first_by_their_feature_names(
    tmp_path: pathlib.Path,
) -> None:
    uri, ids = seeded(tmp_path, requests=8, rows_per_request=2)
    table = capture.read(storage.open_store(uri))
    low = [r for r in table.to_pylist() if r["low_confidence"]]
    assert 0 < len(low) < table.num_rows  # the seed has both kinds
    queue = open_backlog(uri)
    page = queue.pending(limit=100)
    assert page.total == len(low) == len(page.rows)
    assert all(r["lowConfidence"] for r in page.rows)
    times = [r["time"] for r in page.rows]
    assert times == sorted(times, reverse=True)
    # Answered last, listed first.
    order = {rid: i for i, rid in enumerate(ids)}
    assert [order[r["requestId"]] for r in page.rows] == sorted(
        (order[r["requestId"]] for r in page.rows), reverse=True
    )
    first = page.rows[0]
    source = next(r for r in low if (r["request_id"], r["row"]) == (first["requestId"], first["row"]))
    assert first["inputs"] == {name: source[name] for name, _ in demo.FEATURES}
    assert first["prediction"] == first["predictionLabel"] == source["prediction"]
    assert first["classes"] == list(demo.CLASSES)
    assert first["probabilities"] == source["probabilities"]
    assert first["confidence"] == max(source["probabilities"]) < demo.THRESHOLD
    assert first["modelVersion"] == "3" and first["modelName"] == "iris" and first["reason"] == "sample"
    assert first["time"].endswith("Z") and "decision" not in first
    # Every captured row with everything; paging by offset and limit.
    every = queue.pending(limit=100, everything=True)
    assert every.total == table.num_rows
    window = queue.pending(limit=3, offset=2, everything=True)
    assert [(r["requestId"], r["row"]) for r in window.rows] == [
        (r["requestId"], r["row"]) for r in every.rows[2:5]
    ]
    assert window.total == table.num_rows


def test_confirm_correct_and_skip_land_as_labels_and_stop_waiting(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, requests=8)
    queue = open_backlog(uri)
    rows = queue.pending(limit=3).rows
    before = queue.stats()
    wrong = next(c for c in rows[1]["classes"] if c != rows[1]["predictionLabel"])
    saved = queue.save(
        [
            {"requestId": rows[0]["requestId"], "row": rows[0]["row"], "action": "confirmed"},
            {"requestId": rows[1]["requestId"], "row": rows[1]["row"], "action": "corrected", "label": wrong},
            {"requestId": rows[2]["requestId"], "row": rows[2]["row"], "action": "skipped"},
        ],
        reviewer="  Ana  ",
    )
    assert [(s.action, s.label) for s in saved] == [
        ("confirmed", rows[0]["predictionLabel"]),
        ("corrected", wrong),
        ("skipped", None),
    ]
    root = storage.open_store(uri)
    assert len(labels.files(root)) == 1  # one batch, one file
    stored = {(r["request_id"], r["row"]): r for r in labels.latest(labels.read(root)).to_pylist()}
    first = stored[(rows[0]["requestId"], rows[0]["row"])]
    assert first["reviewer"] == "Ana" and first["time"] == T0
    assert first["prediction"] == rows[0]["predictionLabel"] and first["model_version"] == "3"
    assert stored[(rows[1]["requestId"], rows[1]["row"])]["label"] == wrong
    assert stored[(rows[2]["requestId"], rows[2]["row"])]["action"] == "skipped"
    after = queue.stats()
    assert after["waiting"] == before["waiting"] - 3
    assert after["labelled"] == 3
    assert after["byAction"] == {"confirmed": 1, "corrected": 1, "skipped": 1}
    assert after["byReviewer"] == {"Ana": 3}
    waiting = {(r["requestId"], r["row"]) for r in queue.pending(limit=500, everything=True).rows}
    assert not waiting & set(stored)


def test_a_correction_to_the_model_s_own_answer_is_a_confirmation(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path)
    queue = open_backlog(uri)
    row = queue.pending(limit=1).rows[0]
    item = {"requestId": row["requestId"], "row": row["row"], "action": "corrected"}
    (saved,) = queue.save([{**item, "label": row["predictionLabel"]}], reviewer="bo")
    assert (saved.action, saved.label) == ("confirmed", row["predictionLabel"])


def _item(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"requestId": row["requestId"], "row": row["row"], **extra}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: [_item(r, action="corrected", label="daisy")], "not one of the classes setosa"),
        (lambda r: [_item(r, action="corrected")], "a corrected row needs its label"),
        (lambda r: [_item(r, action="guessed", label="setosa")], "action must be one of"),
        (lambda r: [_item(r, action="skipped", label="setosa")], "a skipped row carries no label"),
        (lambda r: [{**_item(r, action="skipped"), "row": 999}], "no captured row 999"),
        (lambda r: [_item(r, action="skipped"), _item(r, action="skipped")], "is twice here"),
        (lambda r: [_item(r, action="skipped", note="x")], "unknown field(s) note"),
        (lambda r: [{**_item(r, action="skipped"), "row": "0"}], "row must be an integer"),
        (lambda r: [{**_item(r, action="skipped"), "requestId": ""}], "requestId must be a non-empty"),
        (lambda r: ["skip"], "must be an object"),
        (lambda r: [], "non-empty list"),
        (lambda r: {"requestId": "x"}, "non-empty list"),
    ],
)
def test_a_wrong_item_refuses_the_whole_batch(tmp_path: pathlib.Path, make: Any, message: str) -> None:
    uri, _ = seeded(tmp_path)
    queue = open_backlog(uri)
    rows = queue.pending(limit=2).rows
    good = _item(rows[1], action="skipped")
    items = make(rows[0])
    batch = [good, *items] if isinstance(items, list) and items else items
    with pytest.raises(backlog.Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        queue.save(batch, reviewer="ana")
    assert labels.files(storage.open_store(uri)) == []  # nothing written, not even the good item


def test_confirmed_must_be_the_model_s_answer(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path)
    queue = open_backlog(uri)
    row = queue.pending(limit=1).rows[0]
    other = next(c for c in row["classes"] if c != row["predictionLabel"])
    with pytest.raises(backlog.Invalid, match="send action corrected"):
        queue.save([_item(row, action="confirmed", label=other)], reviewer="ana")


@pytest.mark.parametrize("reviewer", ["", "   ", "x" * 101, "ana\nbob", None])
def test_a_reviewer_is_needed(tmp_path: pathlib.Path, reviewer: Any) -> None:
    uri, _ = seeded(tmp_path)
    queue = open_backlog(uri)
    row = queue.pending(limit=1).rows[0]
    with pytest.raises(backlog.Invalid, match="reviewer"):
        queue.save([_item(row, action="skipped")], reviewer=reviewer)


def test_a_regressor_takes_finite_numbers(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, task="regression", requests=4)
    queue = open_backlog(uri)
    assert queue.pending().total == 0  # a regressor's rows are never low-confidence
    assert queue.stats()["waitingAll"] == 8
    rows = queue.pending(limit=3, everything=True).rows
    assert "classes" not in rows[0] and isinstance(rows[0]["prediction"], float)
    saved = queue.save(
        [
            _item(rows[0], action="confirmed"),
            _item(rows[1], action="corrected", label="3"),
            _item(rows[2], action="corrected", label=rows[2]["prediction"]),
        ],
        reviewer="ana",
    )
    assert [(s.action, s.label) for s in saved] == [
        ("confirmed", repr(rows[0]["prediction"])),
        ("corrected", "3.0"),
        ("confirmed", repr(rows[2]["prediction"])),
    ]
    for bad in ("three", "nan", "inf", True):
        with pytest.raises(backlog.Invalid, match="finite number"):
            queue.save(
                [_item(queue.pending(everything=True).rows[0], action="corrected", label=bad)], reviewer="a"
            )


def test_new_capture_and_label_files_are_seen_after_the_refresh_interval(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, requests=4)
    clock = Clock()
    queue = open_backlog(uri, clock)
    first = queue.pending(everything=True).total
    demo.seed(uri, requests=3, seed_value=7)  # another server process wrote a file meanwhile
    root = storage.open_store(uri)
    row = queue.pending(everything=True).rows[-1]
    labels.write(  # and another reviewer saved a label
        root, [labels.Label(row["requestId"], row["row"], "skipped", "other", T0)], now=T0
    )
    assert queue.pending(everything=True).total == first  # within refresh_seconds: the cached index
    clock.t = 5.0
    page = queue.pending(everything=True, limit=500)
    assert page.total == first + 6 - 1
    assert page.rows[0]["requestId"].startswith("demo-7-")  # the newest first
    assert queue.stats()["byReviewer"] == {"other": 1}


def test_a_label_for_a_row_in_a_file_not_yet_listed_refreshes_at_once(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, requests=2)
    queue = open_backlog(uri)
    queue.pending()
    new = demo.seed(uri, requests=1, seed_value=9)
    (saved,) = queue.save([{"requestId": new[0], "row": 0, "action": "skipped"}], reviewer="ana")
    assert saved.request_id == new[0]


def test_the_newest_decision_wins_and_decided_rows_are_shown_with_it(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, requests=4)
    root = storage.open_store(uri)
    queue = open_backlog(uri, now=T0)
    row = queue.pending().rows[0]
    queue.save([_item(row, action="skipped")], reviewer="ana")
    later = open_backlog(uri, now=T0 + datetime.timedelta(minutes=1))
    other = next(c for c in row["classes"] if c != row["predictionLabel"])
    later.save([_item(row, action="corrected", label=other)], reviewer="bo")
    fresh = open_backlog(uri)
    assert fresh.stats()["byReviewer"] == {"bo": 1}
    assert fresh.stats()["byAction"]["corrected"] == 1
    (latest,) = labels.latest(labels.read(root)).to_pylist()
    assert (latest["reviewer"], latest["label"]) == ("bo", other)


def test_files_of_different_model_versions_keep_their_own_features(tmp_path: pathlib.Path) -> None:
    """A feature whose name collides with a capture column is stored as input.<name>; the page
    shows it by its own name, and a file of a later version with other features keeps them."""
    uri = f"file://{tmp_path}/root"
    old = serve_capture.ModelInfo(
        name="m", version="1", digest="d1", task="classification",
        features=(("time", "float"), ("x", "int")), classes=(0, 1), pod="p",
    )  # fmt: skip
    new = serve_capture.ModelInfo(
        name="m", version="2", digest="d2", task="classification",
        features=(("x", "int"), ("city", "category")), classes=(0, 1), pod="p",
    )  # fmt: skip
    _capture(uri, old, {"time": np.array([1.5]), "x": np.array([7])}, "r-old")
    _capture(uri, new, {"x": np.array([8]), "city": np.array(["Oslo"], dtype=object)}, "r-new")
    rows = open_backlog(uri).pending(everything=True).rows
    assert [(r["requestId"], r["inputs"], r["modelVersion"]) for r in rows] == [
        ("r-new", {"x": 8, "city": "Oslo"}, "2"),
        ("r-old", {"time": 1.5, "x": 7}, "1"),
    ]
    assert rows[0]["classes"] == ["0", "1"] and rows[0]["prediction"] == 1


def _capture(
    uri: str, info: serve_capture.ModelInfo, columns: dict[str, np.ndarray], request_id: str
) -> None:
    cap = serve_capture.Capture(
        model=info,
        open_sink=lambda: storage.open_store(uri),
        metrics=telemetry.CaptureMetrics(prometheus_client.CollectorRegistry()),
        sample_rate=1.0,
        rng=random.Random(0),
    )
    proba = np.array([[0.4, 0.6]])
    cap.offer(
        request_id,
        columns=columns,
        result=np.array([1]),
        proba=proba,
        low=np.array([True]),
        low_count=1,
        rows=1,
    )
    cap.close()


def test_a_damaged_capture_file_is_skipped_and_counted(tmp_path: pathlib.Path) -> None:
    uri, _ = seeded(tmp_path, requests=3)
    root = storage.open_store(uri)
    root.write_bytes("captured/2026/12/02/zz-broken.parquet", b"not parquet")
    queue = open_backlog(uri)
    assert queue.pending(everything=True).total == 6
    assert queue.stats()["unreadableFiles"] == 1


def test_an_empty_root_has_nothing_waiting(tmp_path: pathlib.Path) -> None:
    queue = open_backlog(f"file://{tmp_path}/nothing-yet")
    assert queue.pending().total == 0 and queue.pending().rows == []
    stats = queue.stats()
    assert (stats["captured"], stats["waiting"], stats["labelled"]) == (0, 0, 0)


def test_a_store_that_fails_keeps_what_was_read_and_files_it_could_not_read_come_later(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, _ = seeded(tmp_path, requests=3)
    clock = Clock()

    def down(_root: storage.Store) -> list[str]:
        raise runtime.WorkloadError("StorageUnreadable", "cannot list the store: timed out")

    with monkeypatch.context() as patch:  # never listed: the caller hears why
        patch.setattr(capture, "files", down)
        with pytest.raises(runtime.WorkloadError, match="timed out"):
            open_backlog(uri, clock).pending()
    queue = open_backlog(uri, clock)
    assert queue.pending(everything=True).total == 6
    demo.seed(uri, requests=2, seed_value=3)
    clock.t = 10.0
    with monkeypatch.context() as patch:  # listed before: the rows read stay, no error
        patch.setattr(capture, "files", down)
        assert queue.pending(everything=True).total == 6
    read_schema = backlog.pq.read_schema
    failures: list[str] = []

    def flaky(path: str, **kwargs: Any) -> Any:
        if not failures:  # the new file: a network error, once
            failures.append(path)
            raise OSError("connection reset")
        return read_schema(path, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(backlog.pq, "read_schema", flaky)
        clock.t = 20.0
        assert queue.pending(everything=True).total == 6  # not read now ...
        clock.t = 30.0
        assert queue.pending(everything=True).total == 10  # ... but at the next refresh
    assert len(failures) == 1 and queue.stats()["unreadableFiles"] == 0
