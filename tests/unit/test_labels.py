"""The labels contract: one file per saved batch, the newest decision per row wins, texts cast."""

from __future__ import annotations

import datetime
import pathlib

import pyarrow as pa
import pytest

from mlops_workloads import labels, storage

T0 = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)


def _store(tmp_path: pathlib.Path) -> storage.Store:
    return storage.open_store(f"file://{tmp_path}/root")


def test_batches_are_files_and_the_newest_decision_wins(tmp_path: pathlib.Path) -> None:
    root = _store(tmp_path)
    first = [
        labels.Label("r1", 0, "confirmed", "ana", T0, label="2", prediction="2"),
        labels.Label("r1", 1, "corrected", "ana", T0, label="0", prediction="1"),
        labels.Label("r2", 0, "skipped", "ana", T0),
    ]
    path = labels.write(root, first, now=T0)
    assert path is not None and path.startswith("labels/2026/12/02/ana-")
    later = T0 + datetime.timedelta(minutes=5)
    labels.write(root, [labels.Label("r1", 1, "corrected", "bo b/../x", later, label="2")], now=later)
    assert labels.write(root, [], now=later) is None
    written = labels.files(root)
    assert len(written) == 2 and any("/bo-b-..-x-" in p for p in written), written
    every = labels.read(root)
    assert every.num_rows == 4 and every.schema == labels.SCHEMA
    now = labels.latest(every)
    got = {(r["request_id"], r["row"]): (r["label"], r["reviewer"]) for r in now.to_pylist()}
    assert got == {("r1", 0): ("2", "ana"), ("r1", 1): ("2", "bo b/../x"), ("r2", 0): (None, "ana")}
    assert labels.keys(now) == {("r1", 0), ("r1", 1), ("r2", 0)}


def test_an_empty_store_reads_as_no_labels(tmp_path: pathlib.Path) -> None:
    assert labels.read(_store(tmp_path)).num_rows == 0
    assert labels.latest(labels.SCHEMA.empty_table()).num_rows == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "guessed", "label": "1"}, "action must be one of"),
        ({"action": "corrected", "label": None}, "needs the label"),
        ({"action": "confirmed", "label": "1", "reviewer": " "}, "needs its reviewer"),
    ],
)
def test_bad_labels_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"request_id": "r", "row": 0, "reviewer": "ana", "time": T0, **kwargs}
    with pytest.raises(ValueError, match=message):
        labels.Label(**args)  # type: ignore[arg-type]


def test_label_texts_cast_to_the_target_type() -> None:
    assert labels.cast_labels(["2", "0", None], pa.int64()).to_pylist() == [2, 0, None]
    assert labels.cast_labels(["True", "false", "1"], pa.bool_()).to_pylist() == [True, False, True]
    assert labels.cast_labels(["1.5"], pa.float64()).to_pylist() == [1.5]
    assert labels.cast_labels(["setosa"], pa.string()).to_pylist() == ["setosa"]
