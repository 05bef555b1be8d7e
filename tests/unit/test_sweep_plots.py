"""The sweep plot: a valid PNG, the right best-so-far curve, importance that finds what matters."""

from __future__ import annotations

import json
import pathlib
import random
import struct
import subprocess
import sys
from typing import Any

from mlops_operator.api import sweep
from mlops_operator.cli import plots


def synthetic(n: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        params = {"x": rng.uniform(0, 1), "noise": rng.uniform(0, 1), "kind": rng.choice(["a", "b"])}
        value = 1.0 - (params["x"] - 0.3) ** 2 + 0.001 * params["noise"]  # only x matters
        state = "Failed" if i % 9 == 4 else "Succeeded"
        out.append(
            {
                "index": i,
                "params": params,
                "value": value if state == "Succeeded" else None,
                "state": state,
                "rung": 0,
            }
        )
    return out


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == plots.PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return width, height


def test_plot_writes_a_valid_png(tmp_path: pathlib.Path) -> None:
    out = plots.plot_sweep(
        synthetic(), tmp_path / "sub" / "sweep.png", direction="maximize", metric="accuracy"
    )
    assert png_size(out) == (1200, 480)
    assert out.stat().st_size > 10_000  # not an empty canvas


def test_plot_uses_no_global_pyplot_state(tmp_path: pathlib.Path) -> None:
    """The object API only (no pyplot, no global backend), checked in a fresh interpreter since
    other tests in this process may import pyplot themselves."""
    code = (
        "import sys, pathlib; from mlops_operator.cli import plots; "
        "trials = [{'index': i, 'state': 'Succeeded', 'value': i / 10, 'params': {'x': i}} "
        "for i in range(5)]; "
        f"plots.plot_sweep(trials, pathlib.Path({str(tmp_path / 'p.png')!r}), direction='maximize', "
        "metric='accuracy'); assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_plot_handles_no_values_and_few_trials(tmp_path: pathlib.Path) -> None:
    pending = [{"index": 0, "params": {"x": 1}, "value": None, "state": "Running"}]
    assert png_size(plots.plot_sweep(pending, tmp_path / "empty.png")) == (1200, 480)
    assert plots.importances(pending) == {}


def test_best_so_far() -> None:
    assert plots.best_so_far([0.5, 0.3, 0.7, 0.6], "maximize") == [0.5, 0.5, 0.7, 0.7]
    assert plots.best_so_far([0.5, 0.3, 0.7, 0.2], "minimize") == [0.5, 0.3, 0.3, 0.2]


def test_importance_ranks_the_parameter_that_matters_first() -> None:
    weights = plots.importances(synthetic(60))
    assert set(weights) == {"x", "noise", "kind"}
    assert max(weights, key=lambda k: weights[k]) == "x"
    assert weights["x"] > 0.8
    assert abs(sum(weights.values()) - 1.0) < 1e-6


def test_trials_from_trainingjobs_reads_the_trial_contract() -> None:
    objects = [
        {
            "metadata": {
                "name": "s-trial-1",
                "labels": {sweep.LABEL_TRIAL_INDEX: "1", sweep.LABEL_TRIAL_RUNG: "2"},
                "annotations": {
                    sweep.ANNOTATION_TRIAL_PARAMS: json.dumps({"C": 0.5}),
                    sweep.ANNOTATION_TRIAL_BUDGET: "90",
                },
            },
            "status": {"phase": "Succeeded", "objectiveMetric": "accuracy", "objectiveValue": 0.9},
        },
        {
            "metadata": {"name": "s-trial-0", "labels": {sweep.LABEL_TRIAL_INDEX: "0"}},
            "status": {
                "phase": "Succeeded",
                "objectiveMetric": "f1",
                "objectiveValue": 0.1,
                "metrics": {"accuracy": {"validation": 0.8}},
            },
        },
        {"metadata": {"name": "unrelated"}},
    ]
    got = plots.trials_from_trainingjobs(objects, metric="accuracy")
    assert [(t["index"], t["value"], t["rung"], t["budget"]) for t in got] == [
        (0, 0.8, 0, None),
        (1, 0.9, 2, 90),
    ]
    assert got[1]["params"] == {"C": 0.5}
