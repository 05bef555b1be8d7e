"""Which model a ``spec.model`` (or ``spec.canary.model``) names, pure.

A source that is not ready yet resolves to no URI with the reason (``WaitingForModel``), a
failed one to ``failed=True``; a Model alias resolves to the version it names in the Model's
status. The handler reads the objects ``source_refs`` names; nothing here reads the cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as api


@dataclasses.dataclass(frozen=True)
class Resolved:
    uri: str | None
    reason: str = ""
    message: str = ""
    failed: bool = False
    s3: common.S3Connection | None = None  # how the pods reach an s3:// uri
    version: int | None = None  # the Model version, for a modelRef


def _s3(raw: Any) -> common.S3Connection | None:
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        return common.S3Connection.model_validate(raw)
    except ValueError:
        return None


def source_refs(source: api.ModelSource) -> list[tuple[str, str]]:
    """The objects the handler must read to resolve ``source``."""
    if source.model_ref is not None:
        return [("Model", source.model_ref.name)]
    if source.training_job_ref:
        return [("TrainingJob", source.training_job_ref)]
    if source.sweep_ref:
        return [("HyperparameterSweep", source.sweep_ref)]
    return []


def resolve(source: api.ModelSource, sources: dict[tuple[str, str], dict[str, Any] | None]) -> Resolved:
    """The model directory ``source`` names (None while it has none) and how to reach it:
    ``source.s3``, else what the TrainingJob or best trial recorded."""
    found = _resolve(source, sources)
    if source.s3 is not None and found.uri is not None:
        return dataclasses.replace(found, s3=source.s3)
    return found


def _registered(ref: api.ModelRef, body: dict[str, Any] | None) -> Resolved:
    """The version a Model's alias (or a fixed number) names, from the Model's status."""
    if body is None:
        return Resolved(None, "WaitingForModel", f"Model {ref.name} does not exist (yet)")
    status = body.get("status") or {}
    alias = ref.effective_alias()
    version: int | None = ref.version
    if alias is not None:
        named = [a for a in status.get("aliases") or [] if a.get("name") == alias]
        version = named[0].get("version") if named else None
        if not isinstance(version, int):
            return Resolved(
                None, "WaitingForModel", f"alias {alias!r} of Model {ref.name} names no version yet"
            )
    entry = next((v for v in status.get("versions") or [] if v.get("version") == version), None)
    if entry is None or not entry.get("modelUri"):
        return Resolved(
            None,
            "ModelVersionNotFound",
            f"Model {ref.name} lists no version {version}"
            + (f" (named by alias {alias!r})" if alias else "")
            + "; it was deleted, or is older than the versions its status lists",
        )
    where = f"alias {alias!r}" if alias else "pinned version"
    return Resolved(
        uri=str(entry["modelUri"]),
        s3=_s3(entry.get("modelS3")),
        version=version,
        message=f"Model {ref.name} version {version} ({where})",
    )


def _resolve(source: api.ModelSource, sources: dict[tuple[str, str], dict[str, Any] | None]) -> Resolved:
    if source.model_ref is not None:
        return _registered(source.model_ref, sources.get(("Model", source.model_ref.name)))
    if source.storage_uri:
        return Resolved(uri=source.storage_uri)
    if source.training_job_ref:
        name = source.training_job_ref
        body = sources.get(("TrainingJob", name))
        if body is None:
            return Resolved(None, "WaitingForModel", f"TrainingJob {name} does not exist (yet)")
        status = body.get("status") or {}
        phase = status.get("phase")
        if phase == "Failed":
            return Resolved(
                None,
                "ModelSourceFailed",
                f"TrainingJob {name} failed: {status.get('message', '')}",
                failed=True,
            )
        if phase != "Succeeded" or not status.get("modelUri"):
            return Resolved(None, "WaitingForModel", f"TrainingJob {name} is {phase or 'Pending'}")
        return Resolved(uri=str(status["modelUri"]), s3=_s3(status.get("modelS3")))
    name = str(source.sweep_ref)
    body = sources.get(("HyperparameterSweep", name))
    if body is None:
        return Resolved(None, "WaitingForModel", f"HyperparameterSweep {name} does not exist (yet)")
    status = body.get("status") or {}
    best = status.get("bestTrial") or {}
    if status.get("phase") == "Failed" and not best.get("modelUri"):
        return Resolved(
            None, "ModelSourceFailed", f"HyperparameterSweep {name} failed without a model", failed=True
        )
    if status.get("phase") != "Succeeded" or not best.get("modelUri"):
        return Resolved(
            None,
            "WaitingForModel",
            f"HyperparameterSweep {name} is {status.get('phase') or 'Pending'}; its best model is "
            "served once it succeeds",
        )
    return Resolved(uri=str(best["modelUri"]), s3=_s3(best.get("modelS3")))
