"""Plots of a HyperparameterSweep's trials: objective per trial, best so far, parameter importance.

The drawing behind ``mlops plot sweep`` (:mod:`mlops_operator.cli.plot` reads the cluster and
calls it). It lives with the CLI, its only user: matplotlib is the ``cli`` extra, so neither
the operator's pods (startup time, memory) nor the workloads image ship it, and the import
contracts keep the operator's process and the workloads from importing the CLI. The CLI
turns a sweep's trial TrainingJobs into plain records with ``trials_from_trainingjobs`` (the
labels and annotations are the API contract in ``mlops_operator.api.sweep``) and calls
``plot_sweep``. Rendering goes through matplotlib's object API and the Agg canvas directly,
so no global backend is set and no display is needed.

Importance is Optuna's fANOVA evaluator (a random forest fitted on the trials, variance
decomposed per parameter, Hutter et al. 2014), on a study rebuilt from the succeeded trials
with distributions inferred from the values seen.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mlops_operator.api import sweep

Direction = Literal["maximize", "minimize"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def trials_from_trainingjobs(objects: Sequence[Mapping[str, Any]], *, metric: str) -> list[dict[str, Any]]:
    """Plain trial records (index, params, value, state, rung) from a sweep's TrainingJobs."""
    out: list[dict[str, Any]] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        try:
            index = int(labels[sweep.LABEL_TRIAL_INDEX])
        except (KeyError, TypeError, ValueError):
            continue
        annotations = meta.get("annotations") or {}
        try:
            params = json.loads(annotations.get(sweep.ANNOTATION_TRIAL_PARAMS) or "{}")
        except ValueError:
            params = {}
        budget = annotations.get(sweep.ANNOTATION_TRIAL_BUDGET)
        status = obj.get("status") or {}
        value = status.get("objectiveValue") if status.get("objectiveMetric") in (None, metric) else None
        if value is None:
            value = ((status.get("metrics") or {}).get(metric) or {}).get("validation")
        out.append(
            {
                "index": index,
                "name": meta.get("name", f"trial-{index}"),
                "params": params if isinstance(params, dict) else {},
                "budget": json.loads(budget) if budget else None,
                "rung": int(labels.get(sweep.LABEL_TRIAL_RUNG, 0) or 0),
                "state": status.get("phase") or "Pending",
                "value": float(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else None,
            }
        )
    out.sort(key=lambda t: t["index"])
    return out


def _scored(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        t
        for t in trials
        if t.get("state") == "Succeeded"
        and isinstance(t.get("value"), int | float)
        and math.isfinite(t["value"])
    ]


def best_so_far(values: Sequence[float], direction: Direction) -> list[float]:
    """Running best: max for maximize, min for minimize."""
    out: list[float] = []
    for v in values:
        if not out:
            out.append(v)
        else:
            out.append(max(out[-1], v) if direction == "maximize" else min(out[-1], v))
    return out


def importances(trials: Sequence[Mapping[str, Any]], *, seed: int = 0) -> dict[str, float]:
    """fANOVA importance of each parameter that varied, normalised to sum to 1 (empty when unknowable)."""
    import optuna

    scored = _scored(trials)
    names = sorted({k for t in scored for k in (t.get("params") or {})})
    dists: dict[str, Any] = {}
    for name in names:
        values = [t["params"].get(name) for t in scored]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            lo, hi = float(min(values)), float(max(values))
            if lo < hi:
                log = lo > 0 and hi / lo > 100
                dists[name] = optuna.distributions.FloatDistribution(lo, hi, log=log)
        else:
            choices = list(dict.fromkeys(json.dumps(v) for v in values))
            if len(choices) > 1:
                dists[name] = optuna.distributions.CategoricalDistribution(choices)
    if len(scored) < 3 or not dists:
        return {}
    study = optuna.create_study()
    for t in scored:
        params = {
            n: (
                json.dumps(t["params"].get(n))
                if isinstance(d, optuna.distributions.CategoricalDistribution)
                else float(t["params"].get(n))
            )
            for n, d in dists.items()
        }
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=float(t["value"]))
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
        )
    return {k: float(v) for k, v in result.items()}


def plot_sweep(
    trials: Sequence[Mapping[str, Any]],
    out_png: str | pathlib.Path,
    *,
    direction: Direction = "maximize",
    metric: str = "objective",
    title: str | None = None,
) -> pathlib.Path:
    """Write a PNG: objective per trial with the best so far, and parameter importance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = pathlib.Path(out_png)
    ordered = sorted(trials, key=lambda t: int(t.get("index", 0)))
    scored = _scored(ordered)
    failed = [t for t in ordered if t.get("state") == "Failed"]
    weights = importances(ordered)

    fig = Figure(figsize=(12, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2, width_ratios=[3, 2])
    if scored:
        xs = [int(t["index"]) for t in scored]
        ys = [float(t["value"]) for t in scored]
        rungs = [int(t.get("rung") or 0) for t in scored]
        points = ax.scatter(xs, ys, c=rungs, cmap="viridis", s=22, alpha=0.8, label="trial")
        if len(set(rungs)) > 1:
            fig.colorbar(points, ax=ax, label="rung")
        ax.step(
            xs, best_so_far(ys, direction), where="post", color="tab:red", linewidth=2, label="best so far"
        )
        if failed:
            floor = min(ys) if direction == "maximize" else max(ys)
            ax.scatter(
                [int(t["index"]) for t in failed],
                [floor] * len(failed),
                marker="x",
                color="grey",
                label=f"failed ({len(failed)})",
            )
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no trial has a value yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} ({direction})")
    ax.set_title(title or f"{len(ordered)} trials, {len(scored)} with a value")
    ax.grid(alpha=0.3)

    if weights:
        names = sorted(weights, key=lambda n: weights[n])
        bx.barh(names, [weights[n] for n in names], color="tab:blue")
        bx.set_xlabel("importance (fANOVA, share of variance)")
        bx.set_xlim(0, 1.0)
    else:
        bx.text(
            0.5,
            0.5,
            "importance needs 3+ trials\nwith varying parameters",
            ha="center",
            va="center",
            transform=bx.transAxes,
        )
        bx.set_axis_off()
    bx.set_title("parameter importance")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
