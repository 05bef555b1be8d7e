"""PSI drift window: low on data like the training split, high on shifted data, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_workloads.serve import demo
from mlops_workloads.serve import drift as drift_mod


@pytest.fixture(scope="module")
def baseline() -> dict[str, object]:
    x, _ = demo.frame()
    return demo.baseline(x)


def _columns(x: object) -> dict[str, np.ndarray]:
    return {c: x[c].to_numpy() for c in x.columns}  # type: ignore[attr-defined]


def test_unshifted_data_scores_low(baseline: dict[str, object]) -> None:
    x, _ = demo.frame(seed=1)
    monitor = drift_mod.DriftMonitor(baseline, features=tuple(x.columns), window=150)
    monitor.add(_columns(x.sample(frac=1.0, random_state=3)))
    scores = monitor.scores()
    assert set(scores) == set(x.columns)
    assert max(scores.values()) < 0.1, scores
    assert monitor.rows == 150


def test_shifted_numeric_feature_scores_high(baseline: dict[str, object]) -> None:
    x, _ = demo.frame()
    monitor = drift_mod.DriftMonitor(baseline, features=tuple(x.columns), window=150)
    shifted = x.copy()
    shifted["petal_length"] = shifted["petal_length"] + 3.0
    monitor.add(_columns(shifted))
    scores = monitor.scores()
    assert scores["petal_length"] > 1.0
    assert scores["sepal_width"] < 0.1
    assert monitor.overall(scores) == scores["petal_length"]


def test_new_category_scores_high(baseline: dict[str, object]) -> None:
    monitor = drift_mod.DriftMonitor(baseline, features=("site",), window=100)
    monitor.add({"site": np.array(["west"] * 60 + ["north"] * 40, dtype=object)})
    assert monitor.scores()["site"] > 1.0


def test_window_slides_back_to_low(baseline: dict[str, object]) -> None:
    x, _ = demo.frame()
    monitor = drift_mod.DriftMonitor(baseline, features=("petal_length",), window=150)
    monitor.add({"petal_length": x["petal_length"].to_numpy() + 5})
    assert monitor.scores()["petal_length"] > 1.0
    # Feed the unshifted rows in small batches: the shifted ones slide out of the window.
    values = x["petal_length"].to_numpy()
    for start in range(0, 150, 7):
        monitor.add({"petal_length": values[start : start + 7]})
    assert monitor.rows == 150
    assert monitor.scores()["petal_length"] < 0.05


def test_ring_buffer_counts_match_a_recount(baseline: dict[str, object]) -> None:
    rng = np.random.default_rng(0)
    monitor = drift_mod.DriftMonitor(baseline, features=("sepal_width",), window=64)
    seen: list[float] = []
    for _ in range(40):
        batch = rng.normal(3.0, 0.5, size=int(rng.integers(1, 30)))
        monitor.add({"sepal_width": batch})
        seen.extend(batch.tolist())
    monitor.flush()  # the batches are held until read; the windows see them all at once
    fw = monitor._features["sepal_width"]
    recount = np.bincount(fw.bins(np.asarray(seen[-64:])), minlength=len(fw.counts))
    assert fw.counts.tolist() == recount.tolist()


def test_edges_with_outer_bounds_or_cut_points() -> None:
    outer = {"f": {"type": "numeric", "edges": [0, 1, 2, 3], "proportions": [0.2, 0.3, 0.5]}}
    inner = {"f": {"type": "numeric", "edges": [1, 2], "proportions": [0.2, 0.3, 0.5]}}
    a = drift_mod.DriftMonitor(outer, features=("f",), window=10)
    b = drift_mod.DriftMonitor(inner, features=("f",), window=10)
    for m in (a, b):
        m.add({"f": np.array([0.5, 0.5, 1.5, 1.5, 1.5, 2.5, 2.5, 2.5, 2.5, 9.0])})
    assert a.scores() == b.scores()
    assert a.scores()["f"] < 0.01
    with pytest.raises(ValueError, match="do not fit"):
        drift_mod.DriftMonitor(
            {"f": {"type": "numeric", "edges": [1], "proportions": [1, 2, 3]}}, features=("f",)
        )


def test_features_without_baseline_are_skipped() -> None:
    monitor = drift_mod.DriftMonitor({}, features=("a",))
    monitor.add({"a": np.array([1.0])})
    assert monitor.scores() == {} and monitor.overall({}) == 0.0


def test_held_rows_score_as_rows_added_one_by_one(baseline: dict[str, object]) -> None:
    x, _ = demo.frame(seed=2)
    columns = _columns(x)
    eager = drift_mod.DriftMonitor(baseline, features=tuple(x.columns), window=64)
    held = drift_mod.DriftMonitor(baseline, features=tuple(x.columns), window=64)
    for i in range(len(x)):
        row = {name: values[i : i + 1] for name, values in columns.items()}
        held.add(row)
        eager.add(row)
        eager.flush()
        if i % 37 == 0:
            assert held.scores() == eager.scores()
    assert held.scores() == eager.scores() and held.rows == eager.rows == 64


def test_held_rows_are_bounded(baseline: dict[str, object]) -> None:
    monitor = drift_mod.DriftMonitor(baseline, features=("sepal_width",), window=10)
    for _ in range(drift_mod.FOLD_ROWS * 3):
        monitor.add({"sepal_width": np.array([3.0])})
        assert monitor._held_rows < drift_mod.FOLD_ROWS
    assert monitor.rows == 10
