"""The chain ``Dataset → TrainingJob → HyperparameterSweep → ModelDeployment`` as a tree.

``kubectl get mlops`` lists the four kinds side by side; what a person wants to know is how they
hang together: which runs use which data, which sweep found which model, what serves it. Pure:
it takes the listed objects (plain dicts) and returns nodes; ``status`` prints them.

A sweep's trials are TrainingJobs too; they are counted on the sweep, not listed (a sweep of 500
trials would drown the tree). A finished run shows its resources as requested, used and
suggested (``cpu 500m, used 0.12, suggest 200m``); a sweep the largest over its finished trials
(``status.rightsizing``) and what ``trialTemplate.resources.auto`` gave its later trials.
ModelDeployments hang under the TrainingJob or sweep they serve; one serving a storage URI, or
anything whose parent is missing, is listed at the top level.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlops_operator.cli import fmt


@dataclasses.dataclass
class Node:
    kind: str
    namespace: str
    name: str
    phase: str
    detail: str
    children: list[Node] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "phase": self.phase,
            "detail": self.detail,
            "children": [c.to_dict() for c in self.children],
        }


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def sweep_of_trial(obj: dict[str, Any]) -> str | None:
    """The sweep a TrainingJob is a trial of (controller owner reference, else the sweep label)."""
    meta = _meta(obj)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "HyperparameterSweep" and ref.get("controller"):
            return str(ref.get("name"))
    labels = meta.get("labels") or {}
    value = labels.get("mlops.dev/hyperparametersweep")
    return str(value) if value else None


def _phase(obj: dict[str, Any]) -> str:
    status = _status(obj)
    if status.get("phase"):
        return str(status["phase"])
    return "Pending" if not status else "Unknown"


def _why(status: dict[str, Any]) -> str:
    reason, message = status.get("reason"), status.get("message")
    if reason and message:
        return f"{reason}: {message}"
    return str(reason or message or "")


def rightsizing(requested: dict[str, Any], used: dict[str, Any], suggested: dict[str, Any]) -> str:
    """``cpu 500m, used 0.12, suggest 200m · memory 512Mi, peak 98Mi, suggest 128Mi`` (and the GPUs
    when they were measured); empty when nothing was measured."""
    if not used and not suggested:
        return ""
    parts = []
    if used.get("cpuCores") is not None or suggested.get("cpu"):
        parts.append(
            f"cpu {requested.get('cpu') or '-'}, used {fmt.number(used.get('cpuCores', '-'))}, "
            f"suggest {suggested.get('cpu') or '-'}"
        )
    if used.get("peakMemoryBytes") is not None or suggested.get("memory"):
        parts.append(
            f"memory {requested.get('memory') or '-'}, peak {fmt.size(used.get('peakMemoryBytes'))}, "
            f"suggest {suggested.get('memory') or '-'}"
        )
    gpus = requested.get("gpu") or 0
    if gpus or used.get("gpuUtilizationMean") is not None:
        mean, peak = used.get("gpuUtilizationMean"), used.get("gpuUtilizationMax")
        busy = (
            f"busy {fmt.number(mean)}% (max {fmt.number(peak)}%)" if mean is not None else "busy not measured"
        )
        parts.append(f"gpu {gpus}, {busy}, suggest {suggested.get('gpu', gpus)}")
    return " · ".join(parts)


def dataset_detail(obj: dict[str, Any]) -> str:
    status = _status(obj)
    parts = []
    rows = status.get("rows") or {}
    if rows.get("output") is not None:
        split = "/".join(str(rows.get(k, 0)) for k in ("train", "validation", "test"))
        parts.append(f"{rows['output']} rows ({split})")
    if status.get("digestShort"):
        parts.append(f"version {status['digestShort']}")
    if status.get("task"):
        parts.append(str(status["task"]))
    warnings = status.get("warnings") or []
    if warnings:
        parts.append(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
    if _phase(obj) == "Failed":
        parts.append(_why(status))
    return " · ".join(p for p in parts if p)


def trainingjob_detail(obj: dict[str, Any]) -> str:
    status, spec = _status(obj), _spec(obj)
    parts = []
    estimator = (spec.get("model") or {}).get("estimator")
    if estimator:
        parts.append(str(estimator))
    metric = status.get("objectiveMetric")
    values = ((status.get("metrics") or {}).get(metric) or {}) if metric else {}
    if metric and (values or status.get("objectiveValue") is not None):
        shown = []
        for split, label in (("validation", "val"), ("test", "test"), ("cvMean", "cv")):
            if values.get(split) is not None:
                shown.append(f"{fmt.number(values[split])} {label}")
        if not shown and status.get("objectiveValue") is not None:
            shown.append(fmt.number(status["objectiveValue"]))
        parts.append(f"{metric} " + " / ".join(shown))
    if status.get("durationSeconds") is not None:
        parts.append(fmt.duration(float(status["durationSeconds"])))
    parts.append(
        rightsizing(
            dict(spec.get("resources") or {}),
            dict(status.get("resourcesUsed") or {}),
            dict(status.get("suggestedResources") or {}),
        )
    )
    if _phase(obj) in {"Failed", "WaitingForData", "Queued", "Suspended"}:
        parts.append(_why(status))
    return " · ".join(p for p in parts if p)


def sweep_detail(obj: dict[str, Any]) -> str:
    status, spec = _status(obj), _spec(obj)
    parts = []
    algorithm = (spec.get("algorithm") or {}).get("name")
    if algorithm:
        parts.append(str(algorithm))
    trials = status.get("trials") or {}
    if status.get("progress"):
        parts.append(f"{status['progress']} trials")
    running = trials.get("running") or 0
    failed = trials.get("failed") or 0
    if running:
        parts.append(f"{running} running")
    if failed:
        parts.append(f"{failed} failed")
    best = status.get("bestTrial") or {}
    if best.get("objectiveValue") is not None:
        metric = (spec.get("objective") or {}).get("metric", "objective")
        parts.append(f"best {metric} {fmt.number(best['objectiveValue'])} ({best.get('name', '?')})")
    sized = status.get("rightsizing") or {}
    if sized.get("measuredTrials"):
        shown = rightsizing(
            dict((spec.get("trialTemplate") or {}).get("resources") or {}),
            dict(sized.get("used") or {}),
            dict(sized.get("suggested") or {}),
        )
        parts.append(f"max of {sized['measuredTrials']} trials: {shown}" if shown else "")
    if sized.get("autoTrials"):
        given = sized.get("autoResources") or {}
        requests = ", ".join(f"{k} {given[k]}" for k in ("cpu", "memory", "gpu") if k in given)
        parts.append(f"auto: {sized['autoTrials']} trials given {requests or 'the suggestion'}")
    if _phase(obj) == "Failed":
        parts.append(_why(status))
    return " · ".join(p for p in parts if p)


def deployment_detail(obj: dict[str, Any]) -> str:
    status, spec = _status(obj), _spec(obj)
    parts = []
    ready = status.get("readyReplicas") or 0
    desired = status.get("desiredReplicas")
    if desired is not None:
        parts.append(f"{ready}/{desired} ready")
    if spec.get("stage"):
        parts.append(str(spec["stage"]))
    model = spec.get("model") or {}
    if model.get("storageUri"):
        parts.append(f"model {model['storageUri']}")
    canary = status.get("canary") or {}
    if canary.get("state") and canary.get("state") != "Healthy":
        parts.append(f"canary {canary['state']}")
    drift = status.get("drift") or {}
    if drift.get("score") is not None:
        parts.append(
            f"drift {fmt.number(drift['score'])}"
            + (f" on {drift['feature']}" if drift.get("feature") else "")
        )
    parts.append(_retrain(status.get("retrain") or {}))
    if status.get("url"):
        parts.append(str(status["url"]))
    if _phase(obj) == "Failed":
        parts.append(_why(status))
    return " · ".join(p for p in parts if p)


def _retrain(retrain: dict[str, Any]) -> str:
    """The run going on (its phase), else the last decision with its numbers: ``retrain 3 Rejected
    (accuracy 0.91 vs 0.93)``."""
    current = retrain.get("current") or {}
    if current:
        return f"retrain {current.get('run', '?')} {current.get('phase', '?')}"
    last = (retrain.get("history") or [{}])[0]
    if not last:
        return ""
    text = f"retrain {last.get('run', '?')} {last.get('phase', '?')}"
    judged = last.get("overall") or last.get("test") or {}
    if last.get("metric") and judged.get("challenger") is not None and judged.get("champion") is not None:
        text += f" ({last['metric']} {fmt.number(judged['challenger'])} vs {fmt.number(judged['champion'])})"
    return text


def _node(kind: str, obj: dict[str, Any], detail: str) -> Node:
    namespace, name = _key(obj)
    return Node(kind=kind, namespace=namespace, name=name, phase=_phase(obj), detail=detail)


def build(
    *,
    datasets: list[dict[str, Any]],
    trainingjobs: list[dict[str, Any]],
    sweeps: list[dict[str, Any]],
    deployments: list[dict[str, Any]],
) -> list[Node]:
    """Roots of the chain (Datasets first, then whatever has no parent), children in name order."""
    ds_nodes = {_key(o): _node("Dataset", o, dataset_detail(o)) for o in datasets}
    sweep_nodes = {_key(o): _node("HyperparameterSweep", o, sweep_detail(o)) for o in sweeps}
    tj_nodes: dict[tuple[str, str], Node] = {}
    roots_extra: list[Node] = []

    def attach(parent: Node | None, child: Node, missing: str) -> None:
        if parent is not None:
            parent.children.append(child)
        else:
            if missing:
                child.detail = f"{child.detail} · {missing}" if child.detail else missing
            roots_extra.append(child)

    for obj in trainingjobs:
        if sweep_of_trial(obj):
            continue  # a trial: counted on its sweep
        node = _node("TrainingJob", obj, trainingjob_detail(obj))
        tj_nodes[_key(obj)] = node
        ref = (_spec(obj).get("datasetRef") or {}).get("name")
        parent = ds_nodes.get((node.namespace, str(ref))) if ref else None
        attach(parent, node, f"Dataset {ref} not found" if ref else "")
    for obj in sweeps:
        node = sweep_nodes[_key(obj)]
        ref = ((_spec(obj).get("trialTemplate") or {}).get("datasetRef") or {}).get("name")
        parent = ds_nodes.get((node.namespace, str(ref))) if ref else None
        attach(parent, node, f"Dataset {ref} not found" if ref else "")
    for obj in deployments:
        node = _node("ModelDeployment", obj, deployment_detail(obj))
        model = _spec(obj).get("model") or {}
        owner: Node | None = None
        missing = ""
        if model.get("trainingJobRef"):
            owner = tj_nodes.get((node.namespace, str(model["trainingJobRef"])))
            missing = f"TrainingJob {model['trainingJobRef']} not found"
        elif model.get("sweepRef"):
            owner = sweep_nodes.get((node.namespace, str(model["sweepRef"])))
            missing = f"HyperparameterSweep {model['sweepRef']} not found"
        attach(owner, node, missing)
    order = {"Dataset": 0, "TrainingJob": 1, "HyperparameterSweep": 2, "ModelDeployment": 3}
    for node in [*ds_nodes.values(), *tj_nodes.values(), *sweep_nodes.values()]:
        node.children.sort(key=lambda n: (order[n.kind], n.name))
    roots = sorted(ds_nodes.values(), key=lambda n: (n.namespace, n.name))
    roots += sorted(roots_extra, key=lambda n: (n.namespace, order[n.kind], n.name))
    return roots


def render(roots: list[Node], *, colour: bool = False, show_namespace: bool = False) -> list[str]:
    """The tree as lines: ``├──``/``└──`` connectors, name, coloured phase, details."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        connector = "" if top else ("└── " if last else "├── ")
        name = f"{node.kind}/{node.name}"
        if show_namespace and top:
            name = f"{node.namespace}/{name}"
        rows.append((prefix + connector + name, node.phase, node.detail, node.phase))
        child_prefix = prefix if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(node.children):
            walk(child, child_prefix, i == len(node.children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    if not rows:
        return []
    width = max(len(r[0]) for r in rows)
    phase_width = max(len(r[1]) for r in rows)
    lines = []
    for label, phase, detail, _ in rows:
        shown = fmt.colour(phase.ljust(phase_width), fmt.phase_colour(phase), enabled=colour)
        lines.append(f"{label.ljust(width)}  {shown}  {detail}".rstrip())
    return lines
