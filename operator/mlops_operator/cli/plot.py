"""``mlops plot sweep NAME``: a PNG of a sweep's objective per trial and the best so far.

The trials are the sweep's TrainingJobs (label ``mlops.dev/hyperparametersweep``); each finished
one reports ``status.objectiveValue``. Failed trials are marked on the axis, so a sweep that
burns half its budget on failures shows it. matplotlib is imported only here, with the Agg
backend (no display needed).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mlops_operator.api import estimators
from mlops_operator.cli import fmt, kube

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


def render_png(plot: SweepPlot, path: str) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise kube.CliError("plots need matplotlib: pip install 'mlops-operator[workloads]'") from exc

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=120)
    done = [t for t in plot.trials if t.value is not None]
    values = [float(t.value) for t in done if t.value is not None]
    if done:
        axes.scatter(
            [t.index for t in done], values, s=28, color="#4c72b0", label=f"{plot.metric} per trial", zorder=3
        )
        best = plot.best_so_far()
        xs = [t.index for t, b in zip(plot.trials, best, strict=True) if b is not None]
        ys = [b for b in best if b is not None]
        axes.step(xs, ys, where="post", color="#dd8452", linewidth=2, label="best so far", zorder=2)
        winner = (max if plot.direction == "maximize" else min)(done, key=lambda t: t.value or 0.0)
        axes.annotate(
            f"{winner.name}\n{fmt.number(winner.value)}",
            (winner.index, winner.value),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    failed = [t for t in plot.trials if t.phase == "Failed"]
    if failed:
        bottom = min(values, default=0.0)
        axes.scatter(
            [t.index for t in failed],
            [bottom] * len(failed),
            marker="x",
            color="#c44e52",
            label=f"failed ({len(failed)})",
            zorder=4,
        )
    if plot.goal is not None:
        axes.axhline(
            plot.goal, color="#55a868", linestyle="--", linewidth=1, label=f"goal {fmt.number(plot.goal)}"
        )
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel(f"{plot.metric} ({plot.direction})")
    title = f"HyperparameterSweep {plot.name}"
    if plot.algorithm:
        title += f" · {plot.algorithm}"
    title += f" · {len(done)}/{len(plot.trials)} trials finished"
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    if not plot.trials:
        axes.text(0.5, 0.5, "no trials yet", transform=axes.transAxes, ha="center", va="center")
    else:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def run(session: kube.Session, name: str, output: str | None) -> str:
    sweep = session.get("HyperparameterSweep", name)
    namespace = kube.namespace_of(sweep)
    trainingjobs = [o for o in session.list("TrainingJob") if kube.namespace_of(o) == namespace]
    plot = collect(sweep, trainingjobs)
    path = output or f"{name}.png"
    render_png(plot, path)
    return path
