"""Model versions, pure: what a source (a TrainingJob, a sweep's best trial) records, and its ConfigMap.

A version's record is written once, into an immutable ConfigMap ``<model>-v<n>`` owned by the
Model (so deleting the TrainingJob or the sweep that produced it leaves it, and deleting the
Model removes it). Sources are read as plain dicts, tolerant of fields they lack: a TrainingJob
of another version of the operator, or a sweep whose trials are gone, still registers with what
it has. A source's identity (``source_key``) decides whether it is registered already, so a
pass that crashed after writing a record and before writing the status never makes a second
one: the next pass finds the record by its label.

Pure: no kopf, no client, no clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_operator.api import common, estimators
from mlops_operator.api import model as api
from mlops_operator.reconcile import owner as rowner

COMPONENT = "model-version"
MAX_PARAM_CHARS = 256
# The TrainingJob's code version (reconcile.trainingjob_build reads the same annotation for the
# model card; the per-kind reconcilers import nothing of each other, so the name is repeated).
CODE_VERSION_ANNOTATION = "mlops.dev/code-version"


@dataclasses.dataclass(frozen=True)
class Record:
    """A version as read back from its ConfigMap."""

    version: int
    key: str
    deleted: bool
    mine: bool  # owned by this Model (not a leftover of an older Model of the same name)
    data: Mapping[str, Any]

    def metric(self, name: str) -> float | None:
        """The value of metric ``name``: the objective when it is that metric, else the validation
        value, else the cross-validation mean."""
        objective = self.data.get("objective") or {}
        if objective.get("metric") == name and isinstance(objective.get("value"), int | float):
            return float(objective["value"])
        values = (self.data.get("metrics") or {}).get(name) or {}
        for key in ("validation", "cvMean"):
            if isinstance(values, Mapping) and isinstance(values.get(key), int | float):
                return float(values[key])
        return None


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A finished source that names the Model and has no version yet."""

    key: str
    finished: str  # RFC 3339 completion time (sort key; "" when unknown)
    name: str
    record: dict[str, Any]  # version.json without version and created
    promote_alias: str | None = None  # a sweep's promote.alias
    promote_reason: str = ""


def owner(resource: api.Model) -> rowner.Owner:
    return rowner.Owner.of(resource)


def config_map_name(resource: api.Model, version: int) -> str:
    return owner(resource).child_name(f"v{version}")


def selector(resource: api.Model) -> str:
    return f"{api.LABEL_MODEL}={resource.metadata.name}"


def source_key(*parts: Any) -> str:
    return rowner.spec_hash(list(parts))


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
        return value[: MAX_PARAM_CHARS - 3] + "..."
    return value


def _model_s3(raw: Any) -> dict[str, Any] | None:
    """A modelS3 block as read back: endpoint, region, the Secret's name; nothing else travels."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return common.S3Connection.model_validate(raw).to_api()
    except ValueError:
        return None


def _lineage(tj: Mapping[str, Any]) -> dict[str, Any]:
    """What a TrainingJob says about the model it made (its spec and status, as stored)."""
    meta, spec, status = tj.get("metadata") or {}, tj.get("spec") or {}, tj.get("status") or {}
    params = common.dig(spec, "model", "params") or common.dig(spec, "trainer", "params") or {}
    out: dict[str, Any] = {
        "modelUri": status.get("modelUri"),
        "modelS3": _model_s3(status.get("modelS3")),
        "modelVersion": status.get("modelVersion"),
        "source": {
            "kind": "TrainingJob",
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "runHash": status.get("specHash"),
        },
        "dataset": {"name": common.dig(spec, "datasetRef", "name"), "digest": status.get("datasetDigest")},
        "objective": {"metric": status.get("objectiveMetric"), "value": status.get("objectiveValue")},
        "metrics": status.get("metrics") or {},
        "params": {str(k): _short(v) for k, v in dict(params).items()} if isinstance(params, Mapping) else {},
        "estimator": common.dig(spec, "model", "estimator") or common.dig(spec, "trainer", "image"),
        "imageId": status.get("imageId"),
        "codeVersion": str((meta.get("annotations") or {}).get(CODE_VERSION_ANNOTATION) or "")[:256] or None,
        "device": status.get("device"),
        "durationSeconds": status.get("durationSeconds"),
    }
    return out


def _prune(value: Any) -> Any:
    """Drop None values (recursively), so a record says only what its source knew."""
    if isinstance(value, Mapping):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    return value


def from_trainingjob(tj: Mapping[str, Any], model_name: str) -> Candidate | None:
    """A Succeeded TrainingJob with a model that names ``model_name`` in ``spec.registerAs``."""
    meta, spec, status = tj.get("metadata") or {}, tj.get("spec") or {}, tj.get("status") or {}
    if spec.get("registerAs") != model_name or status.get("phase") != "Succeeded":
        return None
    if not status.get("modelUri"):
        return None
    key = source_key(
        "TrainingJob", meta.get("uid") or meta.get("name"), status.get("specHash") or status["modelUri"]
    )
    return Candidate(
        key=key,
        finished=str(status.get("completionTime") or ""),
        name=str(meta.get("name")),
        record=_prune(_lineage(tj)),
    )


def _direction(sweep: Mapping[str, Any]) -> str:
    metric = str(common.dig(sweep, "spec", "objective", "metric") or "")
    return str(common.dig(sweep, "spec", "objective", "direction") or estimators.default_direction(metric))


def from_sweep(
    sweep: Mapping[str, Any], model_name: str, trainingjobs: Mapping[str, Mapping[str, Any]]
) -> Candidate | None:
    """A Succeeded sweep whose ``spec.promote.model`` is ``model_name``: its best trial, if it has a
    model and clears ``promote.threshold``. Lineage comes from the trial's TrainingJob while it
    exists, else from the sweep's ``status.bestTrial``; the identity is the same either way."""
    meta, spec, status = sweep.get("metadata") or {}, sweep.get("spec") or {}, sweep.get("status") or {}
    promote = spec.get("promote") or {}
    best = status.get("bestTrial") or {}
    if promote.get("model") != model_name or status.get("phase") != "Succeeded":
        return None
    if not best.get("modelUri") or not isinstance(best.get("objectiveValue"), int | float):
        return None
    value = float(best["objectiveValue"])
    threshold = promote.get("threshold")
    if isinstance(threshold, int | float):
        maximize = _direction(sweep) == "maximize"
        if (maximize and value < threshold) or (not maximize and value > threshold):
            return None
    metric = common.dig(spec, "objective", "metric")
    trial_name = str(best.get("name", ""))
    sweep_name, sweep_uid = str(meta.get("name")), meta.get("uid")
    key = source_key("HyperparameterSweep", sweep_uid or sweep_name, trial_name, best["modelUri"])
    trial = trainingjobs.get(trial_name)
    owners = [r.get("uid") for r in common.dig(trial or {}, "metadata", "ownerReferences") or []]
    if trial is not None and sweep_uid and sweep_uid not in owners:
        trial = None  # a TrainingJob of that name, but not this sweep's trial
    record = _lineage(trial) if trial is not None else {"dataset": {}}
    trial_source = record.get("source") or {}
    record.update(
        {
            "modelUri": best["modelUri"],
            "modelS3": _model_s3(best.get("modelS3")) or record.get("modelS3"),
            "objective": {"metric": metric, "value": value},
            "params": {str(k): _short(v) for k, v in dict(best.get("params") or {}).items()},
            "source": {
                "kind": "HyperparameterSweep",
                "name": sweep_name,
                "uid": sweep_uid,
                "trial": trial_name,
                "trialUid": trial_source.get("uid"),
                "runHash": trial_source.get("runHash"),
            },
        }
    )
    alias = str(promote.get("alias") or "champion")
    return Candidate(
        key=key,
        finished=str(status.get("completionTime") or ""),
        name=sweep_name,
        record=_prune(record),
        promote_alias=alias,
        promote_reason=f"sweep {sweep_name} promoted trial {trial_name}, {metric} {value:g}",
    )


def candidates(
    model_name: str, *, trainingjobs: Sequence[Mapping[str, Any]], sweeps: Sequence[Mapping[str, Any]]
) -> list[Candidate]:
    """Every finished source naming the Model, oldest first (the order versions are numbered in)."""
    by_name = {str(common.dig(t, "metadata", "name")): t for t in trainingjobs}
    found: dict[str, Candidate] = {}
    for tj in trainingjobs:
        c = from_trainingjob(tj, model_name)
        if c is not None:
            found.setdefault(c.key, c)
    for sw in sweeps:
        c = from_sweep(sw, model_name, by_name)
        if c is not None:
            found.setdefault(c.key, c)
    return sorted(found.values(), key=lambda c: (c.finished, c.name, c.key))


def parse_record(cm: Mapping[str, Any], model_uid: str) -> Record | None:
    """A version ConfigMap as a ``Record`` (None: not one, e.g. its version label is not a number)."""
    meta = cm.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        version = int(labels.get(api.LABEL_VERSION, ""))
    except ValueError:
        return None
    if version < 1:
        return None
    try:
        data = json.loads((cm.get("data") or {}).get(api.RECORD_KEY) or "{}")
    except json.JSONDecodeError:
        data = {}
    owners = {r.get("uid") for r in meta.get("ownerReferences") or []}
    return Record(
        version=version,
        key=str(labels.get(api.LABEL_SOURCE) or data.get("sourceKey") or ""),
        deleted=str(labels.get(api.LABEL_DELETED, "")).lower() == "true",
        mine=not model_uid or model_uid in owners,
        data=data if isinstance(data, dict) else {},
    )


def record_data(resource: api.Model, candidate: Candidate, *, version: int, created: str) -> dict[str, Any]:
    data = dict(candidate.record)
    data.update({"version": version, "model": resource.metadata.name, "sourceKey": candidate.key})
    data["created"] = created
    if candidate.promote_alias is not None:
        data["promote"] = {"alias": candidate.promote_alias, "reason": candidate.promote_reason}
    return data


def manifest(resource: api.Model, data: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable ConfigMap that holds one version's record, owned by the Model."""
    o = owner(resource)
    version = int(data["version"])
    labels = o.labels(COMPONENT) | {
        api.LABEL_VERSION: str(version),
        api.LABEL_SOURCE: str(data["sourceKey"]),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(resource, version),
            "namespace": o.namespace,
            "labels": labels,
            "ownerReferences": [o.reference()],
        },
        "immutable": True,
        "data": {api.RECORD_KEY: json.dumps(data, sort_keys=True, indent=2)},
    }


def status_entry(record: Record) -> api.ModelVersion:
    """A record as status.versions lists it."""
    d = record.data
    source = d.get("source") or {}
    objective = d.get("objective") or {}
    value = objective.get("value")
    s3 = d.get("modelS3")
    kind = (
        source.get("kind") if source.get("kind") in ("TrainingJob", "HyperparameterSweep") else "TrainingJob"
    )
    return api.ModelVersion(
        version=record.version,
        model_uri=d.get("modelUri"),
        model_s3=common.S3Connection.model_validate(s3) if isinstance(s3, Mapping) else None,
        model_version=str(d["modelVersion"])[:128] if d.get("modelVersion") else None,
        source=api.VersionSource(kind=kind, name=str(source.get("name") or "?"), trial=source.get("trial")),
        dataset_digest=common.dig(d, "dataset", "digest"),
        objective_metric=objective.get("metric"),
        objective_value=float(value) if isinstance(value, int | float) else None,
        created=d.get("created"),
    )


def annotation_manager(managed_fields: Sequence[Mapping[str, Any]], annotation: str) -> str | None:
    """The field manager that last set ``metadata.annotations[annotation]`` (server-side apply's
    managedFields), for the alias history's ``by``."""
    found: tuple[str, str] | None = None
    for entry in managed_fields:
        fields = common.dig(entry, "fieldsV1", "f:metadata", "f:annotations") or {}
        if f"f:{annotation}" in fields:
            stamp = str(entry.get("time") or "")
            if found is None or stamp >= found[0]:
                found = (stamp, str(entry.get("manager") or ""))
    return found[1] if found and found[1] else None
