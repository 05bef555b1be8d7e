"""HyperparameterSweep's children, pure: trial TrainingJobs out and back, and the promoted ModelDeployment.

A trial is a TrainingJob named ``<sweep>-trial-<index>`` (deterministic, so a retried or
restarted pass cannot duplicate it), labelled with its index, configuration and rung, and
annotated with the parameters the algorithm chose (JSON), its budget and, for CMA-ES, the
generation it was asked in. ``observe`` reads those back into the algorithm's ``Trial``
records: that is the sweep's whole memory.

Rightsizing (``trialTemplate.resources.auto``): a trial is created with the largest
``status.suggestedResources`` of the trials that finished before it (``auto_requests``), or
the template's requests while none has; the suggestion it got is annotated on it
(``mlops.dev/trial-resources``), so ``rightsizing`` rebuilds the status from the trials alone
(restart-safe). A trial is created once and never rewritten, so its spec (and the spec hash
its run started for) never changes when later trials are given more or less.

Promotion never writes a spec that a user or GitOps owns (Argo CD self-heal or Flux would revert
it, the operator would write it again, forever): the operator applies the ModelDeployment only
when there is none yet, or when it made that one itself for this sweep (``operator_owns``);
otherwise the promoted model is only recorded in the sweep's status and an Event.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from mlops_operator import search
from mlops_operator.api import common, estimators, rightsizing, sweep, trainingjob
from mlops_operator.reconcile import owner as rowner
from mlops_operator.search import space, trials

LABEL_TRIAL_INDEX = sweep.LABEL_TRIAL_INDEX
LABEL_TRIAL_CONFIG = sweep.LABEL_TRIAL_CONFIG
LABEL_TRIAL_RUNG = sweep.LABEL_TRIAL_RUNG
ANNOTATION_PARAMS = sweep.ANNOTATION_TRIAL_PARAMS
ANNOTATION_GENERATION = sweep.ANNOTATION_TRIAL_GENERATION
ANNOTATION_BUDGET = sweep.ANNOTATION_TRIAL_BUDGET
ANNOTATION_RESOURCES = sweep.ANNOTATION_TRIAL_RESOURCES
LABEL_PROMOTED_FROM = "mlops.dev/promoted-from-sweep"
ANNOTATION_PROMOTED_TRIAL = "mlops.dev/promoted-trial"
COMPONENT = "trial"


@dataclasses.dataclass(frozen=True)
class ObservedTrial:
    """A trial TrainingJob as read back: the algorithm's record plus what status needs."""

    trial: trials.Trial
    name: str
    model_uri: str | None = None
    model_s3: dict[str, Any] | None = None  # the trial's status.modelS3 (how to reach an s3:// model)
    dataset_digest: str = ""  # the Dataset version it trained on (status.datasetDigest)
    reason: str = ""
    message: str = ""
    deleting: bool = False
    used: dict[str, Any] | None = None  # status.resourcesUsed
    suggested: dict[str, Any] | None = None  # status.suggestedResources
    auto_resources: dict[str, Any] | None = None  # the suggestion it was created with (auto)


def selector(resource: sweep.HyperparameterSweep) -> str:
    """Label selector of the sweep's trials."""
    return f"mlops.dev/hyperparametersweep={resource.metadata.name}"


def seed_of(resource: sweep.HyperparameterSweep) -> int:
    spec_seed = resource.spec.seed
    return (
        spec_seed
        if spec_seed is not None
        else space.seed_from_uid(resource.metadata.uid or resource.metadata.name)
    )


# --------------------------------------------------------------------------------------------
# Reading trials back
# --------------------------------------------------------------------------------------------


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def objective_value(status: Mapping[str, Any], metric: str) -> float | None:
    """The trial's value of the sweep's metric on the validation split."""
    value: Any = None
    if status.get("objectiveMetric") in (None, metric):
        value = status.get("objectiveValue")
    if value is None:
        metrics = status.get("metrics") or {}
        entry = metrics.get(metric) if isinstance(metrics, Mapping) else None
        if isinstance(entry, Mapping):
            value = entry.get("validation", entry.get("cvMean"))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _json_mapping(text: Any) -> dict[str, Any] | None:
    try:
        return _mapping(json.loads(text)) if isinstance(text, str) else None
    except ValueError:
        return None


def observe(children: Sequence[Mapping[str, Any]], *, metric: str) -> list[ObservedTrial]:
    """Trial records from the sweep's TrainingJobs (objects without a trial index are ignored)."""
    out: list[ObservedTrial] = []
    for child in children:
        meta = child.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        index = _int(labels.get(LABEL_TRIAL_INDEX))
        if index is None or index < 0:
            continue
        try:
            params = json.loads(annotations.get(ANNOTATION_PARAMS) or "{}")
        except ValueError:
            params = {}
        status = child.get("status") or {}
        phase = status.get("phase")
        value = objective_value(status, metric)
        reason = str(status.get("reason") or "")
        message = str(status.get("message") or "")
        state: trials.TrialState
        if phase == "Succeeded" and value is not None:
            state = "Succeeded"
        elif phase == "Succeeded":
            state, reason = "Failed", "NoObjectiveValue"
            message = f"the trial succeeded but reported no {metric} on the validation split"
        elif phase == "Failed":
            state = "Failed"
        elif phase == "Running":
            state = "Running"
        else:
            state = "Pending"
        trial = trials.Trial(
            index=index,
            params=params if isinstance(params, dict) else {},
            state=state,
            value=value if state == "Succeeded" else None,
            config=_int(labels.get(LABEL_TRIAL_CONFIG), index),
            rung=_int(labels.get(LABEL_TRIAL_RUNG), 0) or 0,
            generation=_int(annotations.get(ANNOTATION_GENERATION)),
            finished=str(status.get("completionTime") or ""),
        )
        out.append(
            ObservedTrial(
                trial=trial,
                name=str(meta.get("name", "")),
                model_uri=status.get("modelUri"),
                model_s3=status.get("modelS3") if isinstance(status.get("modelS3"), dict) else None,
                dataset_digest=str(status.get("datasetDigest") or ""),
                reason=reason,
                message=message,
                deleting=bool(meta.get("deletionTimestamp")),
                used=_mapping(status.get("resourcesUsed")),
                suggested=_mapping(status.get("suggestedResources")),
                auto_resources=_json_mapping(annotations.get(ANNOTATION_RESOURCES)),
            )
        )
    out.sort(key=lambda o: o.trial.index)
    return out


# --------------------------------------------------------------------------------------------
# Building trials
# --------------------------------------------------------------------------------------------


def auto_requests(
    resource: sweep.HyperparameterSweep, observed: Sequence[ObservedTrial]
) -> dict[str, Any] | None:
    """With ``trialTemplate.resources.auto``: the largest suggestion of the finished trials (None
    without auto, or while no trial has finished with one)."""
    if not resource.spec.trial_template.resources.auto:
        return None
    return rightsizing.largest(o.suggested for o in observed if o.trial.done) or None


def trial_resources(template: sweep.TrialResources, suggested: Mapping[str, Any] | None) -> common.Resources:
    """The trial's resources: the template's, with ``suggested`` (``auto_requests``) as its requests;
    a limit below a new request is raised to it."""
    base = template.requests()
    if not template.auto or not suggested:
        return base
    update: dict[str, Any] = {}
    for key, limit, parse in (
        ("cpu", "cpu_limit", rightsizing.cpu_cores),
        ("memory", "memory_limit", rightsizing.memory_bytes),
    ):
        value = suggested.get(key)
        if not isinstance(value, str) or not value:
            continue
        update[key] = value
        given = getattr(base, limit)
        if given and parse(given) < parse(value):
            update[limit] = value
    gpu = suggested.get("gpu")
    if isinstance(gpu, int) and not isinstance(gpu, bool) and gpu >= 0:
        update["gpu"] = gpu
    return base.model_copy(update=update)


def trial_spec(
    resource: sweep.HyperparameterSweep,
    params: Mapping[str, Any],
    name: str,
    *,
    dataset_version: str | None = None,
    resources: Mapping[str, Any] | None = None,
) -> trainingjob.TrainingJobSpec:
    """The trial's TrainingJob spec: the template with the trial's parameters and the sweep's
    objective, pinned to ``dataset_version`` (the earlier trials' Dataset digest) so that a Dataset
    refreshed mid-sweep never has trials compared on different data, and with ``resources`` (the
    ``auto_requests``) as its requests when the template asks for them."""
    trial_template = resource.spec.trial_template
    fields = {key: getattr(trial_template, key) for key in trainingjob.TrainingJobSpec.model_fields}
    fields["resources"] = trial_resources(trial_template.resources, resources)
    template = trainingjob.TrainingJobSpec(**fields)
    objective = resource.spec.objective
    metrics = template.effective_metrics()
    if objective.metric not in metrics:
        metrics = [*metrics, objective.metric]
    update: dict[str, Any] = {
        "metrics": metrics if template.model is not None else None,
        "objective": trainingjob.Objective(
            metric=objective.metric, direction=objective.effective_direction()
        ),
    }
    if template.trainer is not None:  # your own code: its params pass through as the sweep sets them
        update["trainer"] = template.trainer.model_copy(
            update={"params": {**template.trainer.params, **params}}
        )
    else:
        assert template.model is not None
        update["model"] = template.model.model_copy(update={"params": {**template.model.params, **params}})
    if template.output is not None and template.output.storage_uri:
        location = common.StorageLocation.parse(template.output.storage_uri).join(name)
        update["output"] = template.output.model_copy(update={"storage_uri": location.uri()})
    if dataset_version and template.dataset_ref.version is None:
        update["dataset_ref"] = template.dataset_ref.model_copy(update={"version": dataset_version})
    return template.model_copy(update=update, deep=True)


def pinned_dataset(observed: Sequence[ObservedTrial]) -> str | None:
    """The Dataset digest of the sweep's first trial that pinned one (by index): what later
    trials train on."""
    for o in sorted(observed, key=lambda o: o.trial.index):
        if re.match(trainingjob.DATASET_VERSION_PATTERN, o.dataset_digest or ""):
            return o.dataset_digest
    return None


KUEUE_LABEL_PREFIX = "kueue.x-k8s.io/"


def trial_manifest(
    resource: sweep.HyperparameterSweep,
    *,
    index: int,
    suggestion: trials.Suggestion,
    algorithm: search.Search,
    dataset_version: str | None = None,
    resources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A trial's TrainingJob; ``resources``: the suggestion it gets (``auto_requests``)."""
    owner = rowner.Owner.of(resource)
    name = owner.child_name("trial", index)
    labels = {
        **owner.labels(COMPONENT),
        LABEL_TRIAL_INDEX: str(index),
        LABEL_TRIAL_CONFIG: str(suggestion.config),
        LABEL_TRIAL_RUNG: str(suggestion.rung),
    }
    # Trials queue in the sweep's Kueue LocalQueue, at its priority class (the TrainingJob carries
    # its kueue.x-k8s.io/ labels to its Job).
    labels.update({k: v for k, v in resource.metadata.labels.items() if k.startswith(KUEUE_LABEL_PREFIX)})
    annotations = {ANNOTATION_PARAMS: json.dumps(dict(suggestion.params), sort_keys=True)}
    if suggestion.generation is not None:
        annotations[ANNOTATION_GENERATION] = str(suggestion.generation)
    if suggestion.budget is not None:
        annotations[ANNOTATION_BUDGET] = json.dumps(suggestion.budget)
    if resources and resource.spec.trial_template.resources.auto:
        annotations[ANNOTATION_RESOURCES] = json.dumps(dict(resources), sort_keys=True)
    spec = trial_spec(
        resource,
        algorithm.trial_params(suggestion),
        name,
        dataset_version=dataset_version,
        resources=resources,
    )
    return {
        "apiVersion": common.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": resource.metadata.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner.reference()],
        },
        "spec": spec.to_api(),
    }


def _suggested(raw: Mapping[str, Any] | None) -> trainingjob.SuggestedResources | None:
    try:
        return trainingjob.SuggestedResources.model_validate(raw) if raw else None
    except pydantic.ValidationError:
        return None


def rightsizing_status(observed: Sequence[ObservedTrial]) -> sweep.Rightsizing | None:
    """The sweep's ``status.rightsizing`` from its trials: the largest use and suggestion over those
    that reported them, and the trials given a suggestion (None when there is neither)."""
    measured = [o for o in observed if o.used or o.suggested]
    given = sorted((o for o in observed if o.auto_resources), key=lambda o: o.trial.index)
    if not measured and not given:
        return None
    used = trainingjob.ResourcesUsed.from_result(rightsizing.largest_used(o.used for o in measured))
    return sweep.Rightsizing(
        measured_trials=len(measured),
        used=used,
        suggested=_suggested(rightsizing.largest(o.suggested for o in measured)),
        auto_trials=len(given),
        auto_resources=_suggested(given[-1].auto_resources) if given else None,
    )


def _first_value(p: sweep.SearchParameter) -> Any:
    if p.type == "categorical":
        return (p.values or [None])[0]
    return int(p.low or 0) if p.type == "int" else p.low


def validate(resource: sweep.HyperparameterSweep) -> list[str]:
    """Why no trial of this sweep could run; checked before the first trial. Each names the field."""
    spec = resource.spec
    errors = space.problems(spec)
    if errors:
        return errors
    template = spec.trial_template
    if template.model is None:
        # A trainer's params are its own: nothing to check them against but the search space.
        probe = {p.name: _first_value(p) for p in spec.search_space}
        return [
            f"trialTemplate: {e}" for e in trainingjob.validate_spec(trial_spec(resource, probe, "probe"))
        ]
    entry = estimators.REGISTRY.get(template.model.estimator)
    if entry is not None and spec.objective.metric not in estimators.metrics_for(entry.task):
        errors.append(
            f"objective.metric: {spec.objective.metric} does not apply to {entry.task} ({entry.name})"
        )
    for p in spec.search_space:
        if p.type == "categorical":
            probes = list(p.values or [])
        else:
            assert p.low is not None and p.high is not None
            probes = [p.low, p.high] if p.type == "float" else [int(p.low), int(p.high)]
        for value in probes:
            errors.extend(
                f"searchSpace[{p.name}]: {e}"
                for e in estimators.validate_params(template.model.estimator, {p.name: value})
            )
    if not errors:
        # One valid trial's spec: any error left is the template's own (metrics, params, GPU).
        probe = {p.name: _first_value(p) for p in spec.search_space}
        errors.extend(
            f"trialTemplate: {e}" for e in trainingjob.validate_spec(trial_spec(resource, probe, "probe"))
        )
    return list(dict.fromkeys(errors))


# --------------------------------------------------------------------------------------------
# Promotion
# --------------------------------------------------------------------------------------------


def promotion_manifest(resource: sweep.HyperparameterSweep, best: sweep.BestTrial) -> dict[str, Any]:
    """The ModelDeployment to apply when the operator owns it: the best trial's model directory (or
    the sweep, without one), labelled as made by the operator for this sweep."""
    assert resource.spec.promote is not None and resource.spec.promote.model_deployment is not None
    return {
        "apiVersion": common.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {
            "name": resource.spec.promote.model_deployment,
            "namespace": resource.metadata.namespace,
            "labels": {
                rowner.LABEL_MANAGED_BY: rowner.MANAGED_BY,
                LABEL_PROMOTED_FROM: resource.metadata.name,
            },
            "annotations": {ANNOTATION_PROMOTED_TRIAL: best.name},
        },
        "spec": {"model": promoted_model(resource, best)},
    }


def promoted_model(resource: sweep.HyperparameterSweep, best: sweep.BestTrial) -> dict[str, Any]:
    """The ``spec.model`` that serves ``best``: its model directory, or the sweep without one."""
    if not best.model_uri:
        return {"sweepRef": resource.metadata.name}
    model: dict[str, Any] = {"storageUri": best.model_uri}
    if best.model_s3 is not None:
        model["s3"] = best.model_s3.to_api()
    return model


@dataclasses.dataclass(frozen=True)
class PromotionTarget:
    """What the promotion needs to know of an existing ModelDeployment: who made it, who owns its spec."""

    labels: Mapping[str, str]
    spec_managers: frozenset[str]  # field managers owning any field under ``spec`` (managedFields)


def observe_target(body: Mapping[str, Any] | None) -> PromotionTarget | None:
    """Read an existing ModelDeployment (``None``: there is none) into a ``PromotionTarget``."""
    if body is None:
        return None
    meta = body.get("metadata") or {}
    managers = frozenset(
        str(entry.get("manager", ""))
        for entry in meta.get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    )
    return PromotionTarget(labels=dict(meta.get("labels") or {}), spec_managers=managers)


def operator_owns(target: PromotionTarget, resource: sweep.HyperparameterSweep) -> bool:
    """Whether the operator may rewrite ``target``: it made it for this sweep and nobody else wrote its spec.

    Labels alone are not enough (a user can copy them into Git); a spec field applied by another
    field manager (kubectl, Argo CD, Flux) means a person or GitOps owns the object now, and
    rewriting it would start an endless fight with self-heal.
    """
    labels = target.labels
    return (
        labels.get(rowner.LABEL_MANAGED_BY) == rowner.MANAGED_BY
        and labels.get(LABEL_PROMOTED_FROM) == resource.metadata.name
        and target.spec_managers <= {rowner.MANAGED_BY}  # the operator's field manager (k8s.client)
    )
