"""Pure: a Model's version records as MLflow payloads, what is left to export, and the status.

The mapping, for a Model ``<model>`` in namespace ``<ns>``:

- one experiment per Model, ``<prefix><ns>/<model>`` (prefix ``mlops/`` by default);
- one run per version, named ``<model>-v<n>``: the version's parameters as params, its metrics as
  ``<metric>_<split>`` (``accuracy_validation``, ``accuracy_test``...) plus the objective under its
  own name, the lineage as ``mlops.dev/...`` tags (source, trial, dataset and digest, code
  version, model URI, the Model's uid and the version number, which find the run again), a short
  model card as the run's description (``mlflow.note.content``) and the full one as the artifact
  ``model_card.json``;
- one registered model per Model, ``<ns>.<model>`` (MLflow refuses ``/`` and ``:`` in names; a
  namespace has no dots, so the name is unambiguous), whose versions link to the model's
  directory (``source`` = the version's modelUri) and to the run;
- the Model's aliases mirrored onto the registered model (those MLflow can hold: not ``latest``
  and not ``v<digits>``, which MLflow reserves).

Everything here is a function of its arguments: no client, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from mlops_operator.api import common
from mlops_operator.api import model as api

TAG_PREFIX = "mlops.dev/"
TAG_MODEL_UID = TAG_PREFIX + "model-uid"
TAG_VERSION = TAG_PREFIX + "model-version"
TAG_NAMESPACE = TAG_PREFIX + "namespace"
TAG_MODEL = TAG_PREFIX + "model"
TAG_SOURCE_KIND = TAG_PREFIX + "source-kind"
TAG_SOURCE_NAME = TAG_PREFIX + "source-name"
TAG_TRIAL = TAG_PREFIX + "trial"
TAG_RUN_HASH = TAG_PREFIX + "run-hash"
TAG_DATASET = TAG_PREFIX + "dataset"
TAG_DATASET_DIGEST = TAG_PREFIX + "dataset-digest"
TAG_MODEL_URI = TAG_PREFIX + "model-uri"
TAG_CONTENT_ID = TAG_PREFIX + "model-content-id"
TAG_CODE_VERSION = TAG_PREFIX + "code-version"
TAG_ESTIMATOR = TAG_PREFIX + "estimator"
TAG_IMAGE = TAG_PREFIX + "image"
TAG_DEVICE = TAG_PREFIX + "device"
TAG_OBJECTIVE = TAG_PREFIX + "objective"
TAG_NOTE = "mlflow.note.content"  # the run's (and version's) description in MLflow's UI
TAG_USER = "mlflow.user"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_SOURCE = "mlflow.source.name"
USER = "mlops-operator"

CARD_FILE = "model_card.json"
PARAMS_PER_BATCH = 100  # MLflow's MAX_PARAMS_TAGS_PER_BATCH
METRICS_PER_BATCH = 500  # of MLflow's 1000 entities per batch
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000  # MLflow keeps 8000 (older servers 5000)
MAX_NOTE = 4000
MAX_SOURCE = 500  # model_versions.source is a VARCHAR(500)
MAX_MESSAGE = 1024
_KEY_BAD = re.compile(r"[^\w./\- ]")
_ALIAS_OK = re.compile(r"^[\w\-]{1,255}$")
_ALIAS_RESERVED = re.compile(r"^[vV]\d+$")


class Note(NamedTuple):
    """An Event for the Model (the handler posts it as ``reconcile.plan.EventNote``)."""

    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Version:
    """One version record as the export reads it (``version.json`` of ``<model>-v<n>``)."""

    version: int
    deleted: bool
    data: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one Model goes in MLflow."""

    namespace: str
    model: str
    uid: str
    experiment: str
    registered_model: str
    description: str


def experiment_name(prefix: str, namespace: str, model: str) -> str:
    return f"{prefix}{namespace}/{model}"[:500]


def registered_model_name(namespace: str, model: str) -> str:
    return f"{namespace}.{model}"


def target(resource: api.Model, *, prefix: str) -> Target:
    meta = resource.metadata
    namespace = meta.namespace or "default"
    return Target(
        namespace=namespace,
        model=meta.name,
        uid=meta.uid,
        experiment=experiment_name(prefix, namespace, meta.name),
        registered_model=registered_model_name(namespace, meta.name),
        description=resource.spec.description or "",
    )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_filter(uid: str, version: int) -> str:
    """The runs/search filter that finds the run of a version (made before a crash, perhaps)."""
    return f"tags.`{TAG_MODEL_UID}` = {_quote(uid)} and tags.`{TAG_VERSION}` = {_quote(str(version))}"


def version_filter(registered_model: str, run_id: str) -> str:
    """The model-versions/search filter that finds the registered version of a run."""
    return f"name = {_quote(registered_model)} and run_id = {_quote(run_id)}"


def run_name(t: Target, version: int) -> str:
    return f"{t.model}-v{version}"


def _not_unique(name: str) -> bool:
    """MLflow's own test (``mlflow.utils.validation.path_not_unique``): names are paths too."""
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith(("..", "/"))


def key(name: str) -> str:
    """A param or metric key MLflow accepts: letters, digits, ``_ - . /`` and spaces, and no path
    that would normalise to another name (``a/./b``, ``a/``, ``..``), which MLflow refuses: one
    bad key must not stop a version's export for good."""
    cleaned = _KEY_BAD.sub("_", str(name)).strip()[:MAX_KEY] or "_"
    if _not_unique(cleaned):
        cleaned = cleaned.replace("/", "_")
    if _not_unique(cleaned):
        cleaned = cleaned.replace(".", "_")
    return cleaned


def millis(stamp: object) -> int | None:
    parsed = common.parse_rfc3339(stamp)
    return int(parsed.timestamp() * 1000) if parsed is not None else None


def times(v: Version, *, now: datetime.datetime) -> tuple[int, int]:
    """(start, end) of the run in epoch milliseconds: the version's registration, the training's
    duration before it when the record knows it."""
    end = millis(v.data.get("created")) or int(now.timestamp() * 1000)
    duration = v.data.get("durationSeconds")
    start = end - int(float(duration) * 1000) if isinstance(duration, int | float) and duration > 0 else end
    return start, end


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "None"  # as MLflow's autologging writes an unset estimator parameter
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def params(v: Version) -> list[dict[str, str]]:
    """The version's parameters (a sweep's: the best trial's), values as strings."""
    raw = v.data.get("params")
    if not isinstance(raw, Mapping):
        return []
    out: dict[str, str] = {}
    for name, value in sorted(raw.items()):
        out.setdefault(key(name), _text(value)[:MAX_PARAM_VALUE])
    return [{"key": k, "value": val} for k, val in out.items()]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metrics(v: Version, *, timestamp: int) -> list[dict[str, Any]]:
    """``<metric>_<split>`` for every split the record has, and the objective under its own name."""
    out: dict[str, float] = {}
    raw = v.data.get("metrics")
    if isinstance(raw, Mapping):
        for name, splits in sorted(raw.items()):
            if isinstance(splits, Mapping):
                for split, value in sorted(splits.items()):
                    number = _finite(value)
                    if number is not None:
                        out[key(f"{name}_{split}")] = number
            elif (number := _finite(splits)) is not None:
                out[key(str(name))] = number
    objective = v.data.get("objective") or {}
    value = _finite(objective.get("value")) if isinstance(objective, Mapping) else None
    if value is not None and objective.get("metric"):
        out[key(str(objective["metric"]))] = value
    return [{"key": k, "value": val, "timestamp": timestamp, "step": 0} for k, val in out.items()]


def _source_text(v: Version) -> str:
    source = v.data.get("source") or {}
    what = f"{source.get('kind', '?')} {source.get('name', '?')}"
    return what + (f" (trial {source['trial']})" if source.get("trial") else "")


def note(t: Target, v: Version) -> str:
    """The run's description in MLflow's UI (markdown): the short model card."""
    d = v.data
    rows = [
        ("Model URI", d.get("modelUri")),
        ("Source", _source_text(v)),
        (
            "Dataset",
            " @ ".join(
                str(x) for x in (common.dig(d, "dataset", "name"), common.dig(d, "dataset", "digest")) if x
            ),
        ),
        ("Objective", _objective_text(v)),
        ("Estimator", d.get("estimator")),
        ("Code version", d.get("codeVersion")),
        ("Image", d.get("imageId")),
        ("Device", d.get("device")),
        ("Registered", d.get("created")),
    ]
    lines = [
        f"**{t.model} v{v.version}**, registered by the mlops-operator in namespace `{t.namespace}` "
        f"(Model `{t.model}`, ConfigMap `{t.model}-v{v.version}`).",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {str(value).replace('|', '/')} |" for label, value in rows if value),
    ]
    return "\n".join(lines)[:MAX_NOTE]


def _objective_text(v: Version) -> str | None:
    objective = v.data.get("objective") or {}
    if not isinstance(objective, Mapping) or objective.get("value") is None:
        return None
    return f"{objective.get('metric')} = {objective.get('value')}"


def run_tags(t: Target, v: Version) -> dict[str, str]:
    """The run's tags: the identity that finds it again, the lineage, and MLflow's own."""
    d = v.data
    source = d.get("source") or {}
    lineage: dict[str, Any] = {
        TAG_SOURCE_KIND: source.get("kind"),
        TAG_SOURCE_NAME: source.get("name"),
        TAG_TRIAL: source.get("trial"),
        TAG_RUN_HASH: source.get("runHash"),
        TAG_DATASET: common.dig(d, "dataset", "name"),
        TAG_DATASET_DIGEST: common.dig(d, "dataset", "digest"),
        TAG_MODEL_URI: d.get("modelUri"),
        TAG_CONTENT_ID: d.get("modelVersion"),
        TAG_CODE_VERSION: d.get("codeVersion"),
        TAG_ESTIMATOR: d.get("estimator"),
        TAG_IMAGE: d.get("imageId"),
        TAG_DEVICE: d.get("device"),
        TAG_OBJECTIVE: common.dig(d, "objective", "metric"),
    }
    tags = {
        TAG_MODEL_UID: t.uid,
        TAG_VERSION: str(v.version),
        TAG_NAMESPACE: t.namespace,
        TAG_MODEL: t.model,
        **{k: str(val)[:MAX_TAG_VALUE] for k, val in lineage.items() if val not in (None, "")},
        TAG_NOTE: note(t, v),
        TAG_USER: USER,
        TAG_SOURCE_TYPE: "JOB",
        TAG_SOURCE: f"{t.namespace}/{source.get('kind', '?')}/{source.get('name', '?')}"[:MAX_TAG_VALUE],
    }
    return tags


def model_card(t: Target, v: Version) -> dict[str, Any]:
    """The ``model_card.json`` artifact: the whole version record and where it lives."""
    record = {k: val for k, val in v.data.items() if k not in {"sourceKey", "promote"}}
    return {
        "registeredBy": USER,
        "namespace": t.namespace,
        "model": t.model,
        "modelUid": t.uid,
        "version": v.version,
        "configMap": f"{t.model}-v{v.version}",
        **{k: val for k, val in record.items() if k not in {"model", "version"}},
    }


def card_bytes(t: Target, v: Version) -> bytes:
    return json.dumps(model_card(t, v), indent=2, sort_keys=True, default=str).encode("utf-8")


def version_source(model_uri: object, run_id: str) -> str:
    """The registered version's ``source``: the model's directory, which is where the artifact
    is. MLflow accepts remote URIs (``pvc://``, ``s3://``) as they are; a local one
    (``file:///...``) only inside the run's own artifacts, and none over 500 characters, so those
    link to the run (``runs:/<id>``) and the directory stays in the ``mlops.dev/model-uri`` tag."""
    uri = str(model_uri or "")
    scheme = urllib.parse.urlsplit(uri).scheme if uri else ""
    if not uri or scheme in ("", "file") or len(uri) > MAX_SOURCE or ".." in uri.split("/"):
        return f"runs:/{run_id}"
    return uri


def model_version_tags(t: Target, v: Version) -> dict[str, str]:
    d = v.data
    tags = {
        TAG_MODEL_UID: t.uid,
        TAG_VERSION: str(v.version),
        TAG_MODEL_URI: str(d.get("modelUri") or "")[:MAX_TAG_VALUE],
        TAG_DATASET_DIGEST: str(common.dig(d, "dataset", "digest") or ""),
        TAG_SOURCE_KIND: str(common.dig(d, "source", "kind") or ""),
        TAG_SOURCE_NAME: str(common.dig(d, "source", "name") or ""),
    }
    return {k: val for k, val in tags.items() if val}


def version_description(t: Target, v: Version) -> str:
    return f"{t.model} v{v.version} from {_source_text(v)}: {v.data.get('modelUri') or '?'}"[:MAX_NOTE]


def model_tags(t: Target) -> dict[str, str]:
    return {TAG_NAMESPACE: t.namespace, TAG_MODEL: t.model, TAG_MODEL_UID: t.uid}


def alias_allowed(alias: str) -> bool:
    """MLflow refuses ``latest`` and ``v<digits>`` (they name versions) and any character but
    letters, digits, ``_`` and ``-``."""
    return bool(_ALIAS_OK.match(alias)) and not _ALIAS_RESERVED.match(alias) and alias != "latest"


# ---------------------------------------------------------------------------------------------
# What a pass does, and its status
# ---------------------------------------------------------------------------------------------


def state_for(old: api.MLflowExport | None, t: Target, *, tracking_uri: str) -> api.MLflowExport:
    """The stored export state, or a fresh one when it belongs to another server, experiment or
    registered model (the operator was pointed elsewhere, or the Model was re-created)."""
    if (
        old is not None
        and old.tracking_uri == tracking_uri
        and old.experiment == t.experiment
        and old.registered_model == t.registered_model
    ):
        return old
    return api.MLflowExport(
        tracking_uri=tracking_uri, experiment=t.experiment, registered_model=t.registered_model
    )


def pending(versions: Iterable[Version], state: api.MLflowExport) -> list[Version]:
    """The live versions not exported yet, oldest first (the order MLflow numbers them in)."""
    done = {e.version for e in state.versions}
    return sorted(
        (
            v
            for v in versions
            if not v.deleted and v.version > state.exported_through and v.version not in done
        ),
        key=lambda v: v.version,
    )


def advance(
    state: api.MLflowExport,
    *,
    versions: Sequence[Version],
    exported: Sequence[api.MLflowVersion],
    experiment_id: str | None,
    aliases: Sequence[api.Alias] = (),
) -> api.MLflowExport:
    """The state after a pass exported (or found) ``exported``: the versions the aliases name and
    the newest others listed (at most ``MAX_STATUS_VERSIONS``), ``exportedThrough`` moved up to just
    below the oldest version still to do."""
    entries = {e.version: e for e in state.versions} | {e.version: e for e in exported}
    named = {a.version for a in aliases}
    kept = [e for e in entries.values() if e.version in named]
    others = sorted((e for e in entries.values() if e.version not in named), key=lambda e: -e.version)
    listed = sorted([*kept, *others[: max(0, api.MAX_STATUS_VERSIONS - len(kept))]], key=lambda e: -e.version)
    left = pending(versions, state.model_copy(update={"versions": list(entries.values())}))
    highest = max([state.exported_through, *(v.version for v in versions)])
    through = left[0].version - 1 if left else highest
    return state.model_copy(
        update={
            "versions": listed,
            "exported_through": max(state.exported_through, through),
            "experiment_id": experiment_id or state.experiment_id,
        }
    )


def alias_targets(
    aliases: Sequence[api.Alias], state: api.MLflowExport
) -> tuple[dict[str, str], list[api.Alias], list[str]]:
    """(alias -> MLflow version for the aliases that can be mirrored now, the aliases whose version
    ``state`` does not list (their MLflow number is unknown), the aliases MLflow cannot hold)."""
    known = {e.version: e.model_version for e in state.versions if e.model_version}
    wanted: dict[str, str] = {}
    unknown: list[api.Alias] = []
    refused: list[str] = []
    for alias in sorted(aliases, key=lambda a: a.name):
        if not alias_allowed(alias.name):
            refused.append(alias.name)
        elif alias.version in known:
            wanted[alias.name] = known[alias.version]
        else:
            unknown.append(alias)
    return wanted, unknown, refused


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one export pass did (the ``export`` module's report)."""

    state: api.MLflowExport
    exported: Sequence[api.MLflowVersion] = ()
    left: int = 0  # versions still to export (a pass stops at its time budget)
    error_reason: str | None = None
    error_message: str = ""
    refused_aliases: Sequence[str] = ()
    skipped: bool = False  # backing off after a failure: nothing was tried


def with_outcome(
    status: api.ModelStatus, outcome: Outcome, *, now: datetime.datetime, generation: int | None
) -> tuple[api.ModelStatus, list[Note]]:
    """The status with ``mlflow`` and the ``MLflowExported`` condition, and the pass's Events: one
    Normal per pass that exported something, one Warning when a failure starts (or changes its
    reason), none while it goes on."""
    old = status.condition(api.CONDITION_MLFLOW)
    state = outcome.state
    events: list[Note] = []
    if outcome.skipped:
        return status.model_copy(update={"mlflow": state}), events
    if outcome.exported:
        parts = ", ".join(
            f"v{e.version} -> run {e.run_id}" + (f", version {e.model_version}" if e.model_version else "")
            for e in outcome.exported
        )
        events.append(
            Note(
                "Normal",
                "MLflowExported",
                f"{state.registered_model} in {state.experiment}: {parts}"[:MAX_MESSAGE],
            )
        )
    refused = (
        "; aliases MLflow cannot hold (latest, v<n>, other characters): " + ", ".join(outcome.refused_aliases)
        if outcome.refused_aliases
        else ""
    )
    cond_status: common.ConditionStatus
    if outcome.error_reason is not None:
        message = f"{outcome.error_message} (retried with backoff; registration goes on)"[:MAX_MESSAGE]
        if old is None or old.status != "False" or old.reason != outcome.error_reason:
            events.append(Note("Warning", "MLflowExportFailed", message))
        cond_status, reason = "False", outcome.error_reason
    elif outcome.left:
        cond_status, reason = "False", "Exporting"
        message = (
            f"exported through v{state.exported_through}; {outcome.left} version(s) to go on the next passes"
        )
    else:
        cond_status, reason = "True", "Exported"
        message = (
            f"every version is a run of experiment {state.experiment} and a version of "
            f"registered model {state.registered_model} at {state.tracking_uri}{refused}"
        )
    updated = status.model_copy(update={"mlflow": state}).with_condition(
        api.CONDITION_MLFLOW,
        cond_status,
        reason=reason,
        message=message[:MAX_MESSAGE],
        now=now,
        generation=generation,
    )
    return updated, events


def without_export(status: api.ModelStatus) -> api.ModelStatus:
    """The status of an operator that exports nothing: no ``MLflowExported`` condition (a stale
    one would say something nobody checks any more); ``status.mlflow`` stays for a later return."""
    if status.condition(api.CONDITION_MLFLOW) is None:
        return status
    return status.model_copy(
        update={"conditions": [c for c in status.conditions if c.type != api.CONDITION_MLFLOW]}
    )
