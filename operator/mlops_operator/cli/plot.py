"""``mlops plot sweep NAME``: a PNG of a sweep's objective per trial, the best so far and
which parameters mattered.

The trials are the sweep's TrainingJobs (label ``mlops.dev/hyperparametersweep``); each finished
one reports ``status.objectiveValue``. Failed trials are marked on the axis, so a sweep that
burns half its budget on failures shows it. The drawing is :mod:`mlops_operator.cli.plots`
(the ``cli`` extra: matplotlib, with Optuna's fANOVA), imported only when a plot is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from typing import Any

from mlops_operator.api import estimators
from mlops_operator.cli import kube

_INDEX = re.compile(r"-(\d+)$")


@dataclasses.dataclass(frozen=True)
class Trial:
    index: int
    name: str
    phase: str
    value: float | None


@dataclasses.dataclass(frozen=True)
class SweepPlot:
    name: str
    metric: str
    direction: str  # maximize | minimize
    goal: float | None
    algorithm: str
    trials: tuple[Trial, ...]

    def best_so_far(self) -> list[float | None]:
        best: float | None = None
        out: list[float | None] = []
        for trial in self.trials:
            if trial.value is not None and (
                best is None or (trial.value > best if self.direction == "maximize" else trial.value < best)
            ):
                best = trial.value
            out.append(best)
        return out


def trial_index(obj: dict[str, Any]) -> int | None:
    meta = obj.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = source.get("mlops.dev/trial-index") or source.get("mlops.dev/trial")
        if value is not None and str(value).isdigit():
            return int(value)
    match = _INDEX.search(str(meta.get("name", "")))
    return int(match.group(1)) if match else None


def collect(sweep: dict[str, Any], trainingjobs: list[dict[str, Any]]) -> SweepPlot:
    spec = sweep.get("spec") or {}
    objective = spec.get("objective") or {}
    metric = str(objective.get("metric") or "objective")
    direction = objective.get("direction") or estimators.default_direction(metric)
    name = kube.name_of(sweep)
    uid = (sweep.get("metadata") or {}).get("uid")
    mine = []
    for obj in trainingjobs:
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        owned = any(r.get("uid") == uid for r in refs) if uid and refs else True
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get("mlops.dev/hyperparametersweep") == name and owned:
            mine.append(obj)
    mine.sort(
        key=lambda o: (
            trial_index(o) if trial_index(o) is not None else 1 << 30,
            str((o.get("metadata") or {}).get("creationTimestamp", "")),
            kube.name_of(o),
        )
    )
    trials = []
    for position, obj in enumerate(mine):
        status = obj.get("status") or {}
        value = status.get("objectiveValue")
        index = trial_index(obj)
        trials.append(
            Trial(
                index=index if index is not None else position,
                name=kube.name_of(obj),
                phase=str(status.get("phase") or "Pending"),
                value=float(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None,
            )
        )
    goal = objective.get("goal")
    return SweepPlot(
        name=name,
        metric=metric,
        direction=str(direction),
        goal=float(goal) if isinstance(goal, (int, float)) else None,
        algorithm=str((spec.get("algorithm") or {}).get("name") or ""),
        trials=tuple(trials),
    )


def render_png(plot: SweepPlot, path: str, trainingjobs: list[dict[str, Any]] | None = None) -> None:
    """Draw with the one sweep plot of the project (:mod:`mlops_operator.cli.plots`: objective
    per trial, best so far, failures, and fANOVA parameter importance)."""
    missing = [m for m in ("matplotlib", "optuna", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        raise kube.CliError(f"plots need {', '.join(missing)}: pip install 'mlops-operator[cli]'")
    from mlops_operator.cli import plots

    records = plots.trials_from_trainingjobs(trainingjobs or [], metric=plot.metric)
    title = f"HyperparameterSweep {plot.name}" + (f" · {plot.algorithm}" if plot.algorithm else "")
    if plot.direction == "minimize":
        plots.plot_sweep(records, path, direction="minimize", metric=plot.metric, title=title)
    else:
        plots.plot_sweep(records, path, direction="maximize", metric=plot.metric, title=title)


def run(session: kube.Session, name: str, output: str | None) -> str:
    sweep = session.get("HyperparameterSweep", name)
    namespace = kube.namespace_of(sweep)
    trainingjobs = [o for o in session.list("TrainingJob") if kube.namespace_of(o) == namespace]
    plot = collect(sweep, trainingjobs)
    path = output or f"{name}.png"
    mine = [
        o
        for o in trainingjobs
        if (o.get("metadata", {}).get("labels") or {}).get("mlops.dev/hyperparametersweep") == name
    ]
    render_png(plot, path, mine)
    return path
