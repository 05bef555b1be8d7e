"""Printer columns a person can read: 4 significant digits and kubectl-style durations.

A printer column prints its JSONPath value as stored, so `kubectl get tj` once showed
``OBJECTIVE 0.9565217391304348`` and ``DURATION 5``. Number columns now point at string fields
that the status models derive from the numbers when they are written.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from mlops_operator.api import common, sweep, trainingjob

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (5, "5s"),
        (5.9, "5s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 180, "5h3m"),
        (30 * 3600, "30h"),
        (51 * 3600, "2d3h"),
        (9 * 86400, "9d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
        (-3, "0s"),
    ],
)
def test_durations_read_as_kubectl_prints_them(seconds: float, shown: str) -> None:
    assert common.human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.9565217391304348, "0.9565"), (1.0, "1"), (12.3456, "12.35"), (-0.000123456, "-0.0001235")],
)
def test_objectives_have_four_significant_digits(value: float, shown: str) -> None:
    assert common.significant(value) == shown


def test_trainingjob_status_carries_its_display_fields_and_drops_stale_ones() -> None:
    status = trainingjob.TrainingJobStatus(objective_value=0.9565217391304348, duration_seconds=5.0)
    wire = status.to_api()
    assert (wire["objectiveShort"], wire["duration"]) == ("0.9565", "5s")
    # A new run clears the numbers: the strings go with them (never a stale column).
    fresh = trainingjob.TrainingJobStatus.model_validate(wire).model_copy(
        update={"objective_value": None, "duration_seconds": None}
    )
    assert "objectiveShort" not in fresh.to_api() and "duration" not in fresh.to_api()


def test_sweep_best_trial_has_a_short_objective() -> None:
    best = sweep.BestTrial(name="t-3", index=3, objective_value=0.973333333)
    wire = sweep.HyperparameterSweepStatus(best_trial=best).to_api()
    assert wire["bestTrial"]["objectiveShort"] == "0.9733"


def test_no_printer_column_prints_a_raw_float() -> None:
    """Every number column of every kind points at a readable field (integers are fine)."""
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        assert columns
        for column in columns:
            assert column["type"] != "number", f"{path.name}: column {column['name']} prints a raw float"
            assert "Seconds" not in column["jsonPath"], f"{path.name}: {column['name']} prints bare seconds"
