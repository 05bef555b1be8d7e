"""The children of a Dataset: its config (a ConfigMap) and its prepare batch/v1 Job.

Pure builders: everything comes in as arguments (the Dataset, the settings), and plain dicts
come out, ready for server-side apply. The spec hash is part of both names
(``<name>-prepare-<hash8>``), since a Job's pod template cannot change after creation; a
refresh (a re-read of the same spec's sources) adds its round (``<name>-prepare-<hash8>-<n>``).
The hash leaves out ``refresh`` and ``retention``: when and how long to keep versions decide
nothing about the data, so editing them never re-prepares.

Feedback sources name a ModelDeployment; the handler reads it and :func:`resolve_feedback`
turns its ``spec.logging`` into the capture root the prepare pod reads (in its config) and the
volume or S3 credentials it needs. Where that root is stays out of the hash, as the rows of any
source do: the deployment's store is read afresh by each Job (a refresh round reads it where
it is then), and the Dataset's own spec says which deployment, hence which rows, it wants.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from typing import Any

import pydantic

from mlops_operator.api import common, workload
from mlops_operator.api import dataset as api
from mlops_operator.api import modeldeployment as md_api
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "prepare"
CONTAINER = "prepare"
COMMAND = ("python", "-m", "mlops_workloads.prepare")
SOURCES_DIR = "/etc/mlops/sources"


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


# Spec fields that never reach the data: a change to them needs no new prepare Job.
UNHASHED_FIELDS = ("refresh", "retention")


# Fields added after the first release, left out of the hash while they hold their defaults,
# so that an upgrade does not rename every Job (and re-prepare every Dataset).
HASHED_UNLESS_DEFAULT: dict[str, dict[str, Any]] = {"scale": api.Scale().to_api()}


def spec_hash(ds: api.Dataset) -> str:
    wire = {
        k: v
        for k, v in ds.spec.to_api().items()
        if k not in UNHASHED_FIELDS and not (k in HASHED_UNLESS_DEFAULT and v == HASHED_UNLESS_DEFAULT[k])
    }
    return rowner.spec_hash(wire)


def child_name(ds: api.Dataset, round_: int = 0) -> str:
    """``<name>-prepare-<hash8>`` (refresh rounds: ``-<round>`` added): the Job and its ConfigMap
    (different kinds, one name), cut to 63 characters (the Job's name is also a label value)."""
    return rowner.Owner.of(ds).child_name(f"{COMPONENT}-{spec_hash(ds)[:8]}", round_ or None)


def selector(ds: api.Dataset) -> str:
    """Label selector of every child of this Dataset."""
    return f"mlops.dev/dataset={ds.metadata.name},{rowner.LABEL_COMPONENT}={COMPONENT}"


# ---------------------------------------------------------------------------------------------
# Feedback sources: the ModelDeployments they read
# ---------------------------------------------------------------------------------------------

FEEDBACK_MISSING = "FeedbackSourceMissing"
FEEDBACK_NOT_CAPTURED = "FeedbackNotCaptured"
WAITING_REASONS = (FEEDBACK_MISSING, FEEDBACK_NOT_CAPTURED)


@dataclasses.dataclass(frozen=True)
class Waiting:
    """Why no prepare Job can start yet (a feedback source's deployment is missing or captures
    nothing): a reason for the status and what to do about it."""

    reason: str
    message: str


def feedback_deployments(ds: api.Dataset) -> list[str]:
    """The ModelDeployments the feedback sources name, each once, in source order."""
    names = [s.feedback.model_deployment for s in ds.spec.sources if s.feedback is not None]
    return list(dict.fromkeys(names))


def resolve_feedback(
    ds: api.Dataset, deployments: Mapping[str, Mapping[str, Any] | None]
) -> tuple[list[api.FeedbackStore], Waiting | None]:
    """Each feedback source's capture root, from the ModelDeployments as read (name → object,
    None or absent: not found); or why the Dataset has to wait, naming the first source that
    cannot be read (the other stores are then not needed)."""
    stores: list[api.FeedbackStore] = []
    namespace = ds.metadata.namespace
    for index, source in enumerate(ds.spec.sources):
        if source.feedback is None:
            continue
        name = source.feedback.model_deployment
        field = f"spec.sources[{index}].feedback.modelDeployment"
        body = deployments.get(name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return [], Waiting(
                FEEDBACK_MISSING,
                f"{field}: ModelDeployment {name!r} does not exist in namespace {namespace!r}; the "
                "Dataset prepares once it does (create it, or fix the name)",
            )
        raw = (body.get("spec") or {}).get("logging")
        if not raw:
            return [], Waiting(
                FEEDBACK_NOT_CAPTURED,
                f"{field}: ModelDeployment {name!r} sets no spec.logging, so it captures no rows to "
                "read; set its spec.logging (storageUri, and lowConfidence or sampleRate)",
            )
        try:
            logging = md_api.LoggingSpec.model_validate(raw)
        except pydantic.ValidationError as exc:
            return [], Waiting(
                FEEDBACK_NOT_CAPTURED,
                f"{field}: the spec.logging of ModelDeployment {name!r} cannot be read "
                f"({exc.error_count()} error(s)); see that ModelDeployment's status",
            )
        remote = common.StorageLocation.parse(logging.storage_uri).remote
        stores.append(
            api.FeedbackStore(
                source=index,
                model_deployment=name,
                uri=logging.root_uri(namespace, name),
                s3=logging.s3 if remote else None,
            )
        )
    return stores, None


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------


def prepare_config(
    ds: api.Dataset,
    *,
    settings: rworkload.WorkloadSettings,
    retain: list[str] | None = None,
    feedback: list[api.FeedbackStore] | None = None,
) -> api.PrepareConfig:
    """The workload's config; ``retain``: the digests the status lists (the retention rule);
    ``feedback``: the resolved stores of the feedback sources (:func:`resolve_feedback`)."""
    return api.PrepareConfig(
        dataset=ds.metadata.name,
        namespace=ds.metadata.namespace,
        spec=ds.spec,
        retain=list(retain or [])[: api.VERSIONS_MAX],
        pvc_root=settings.pvc_root,
        config_map_root=SOURCES_DIR,
        feedback=list(feedback) if feedback else None,
    )


def _metadata(ds: api.Dataset, name: str) -> dict[str, Any]:
    owner = rowner.Owner.of(ds)
    return {
        "name": name,
        "namespace": ds.metadata.namespace,
        "labels": owner.labels(COMPONENT),
        "annotations": {rowner.ANNOTATION_SPEC_HASH: spec_hash(ds)},
        "ownerReferences": [owner.reference()],
    }


def build_configmap(
    ds: api.Dataset,
    *,
    settings: rworkload.WorkloadSettings,
    round_: int = 0,
    retain: list[str] | None = None,
    feedback: list[api.FeedbackStore] | None = None,
) -> dict[str, Any]:
    config = prepare_config(ds, settings=settings, retain=retain, feedback=feedback)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ds, child_name(ds, round_)),
        "data": {workload.CONFIG_KEY: config.model_dump_json(by_alias=True, exclude_none=True)},
    }


def _volumes(
    ds: api.Dataset, *, settings: rworkload.WorkloadSettings, feedback: list[api.FeedbackStore]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts besides the config and /tmp: storage (read-write), sources (read-only),
    the S3 credentials Secrets (s3:// storage and sources are reached over the network; a
    feedback source's with its deployment's logging.s3)."""
    storage = common.StorageLocation.parse(ds.spec.storage)
    remote_feedback = [f.s3 for f in feedback if common.StorageLocation.parse(f.uri).remote]
    volumes, mounts = rworkload.s3_secret_mounts([*([ds.spec.s3] if uses_s3(ds) else []), *remote_feedback])
    mounted = {workload.CONFIG_DIR, workload.TMP_DIR}
    if not storage.remote:
        volume, mount = rworkload.storage_volume(storage, settings, name="storage")
        volumes.append(volume)
        mounts.append(mount)
        mounted.add(mount["mountPath"])
    for index, source in enumerate(ds.spec.sources):
        name = f"source-{index}"
        if source.config_map is not None:
            key = source.config_map.key
            volumes.append(
                {
                    "name": name,
                    # optional: a missing ConfigMap or key lets the pod start and fail with SourceUnreadable,
                    # rather than hang in ContainerCreating.
                    "configMap": {
                        "name": source.config_map.name,
                        "items": [{"key": key, "path": key}],
                        "optional": True,
                    },
                }
            )
            mounts.append({"name": name, "mountPath": f"{SOURCES_DIR}/{index}", "readOnly": True})
        elif source.sql is not None:
            # The connection URL (with its password) reaches the pod as a file; the operator never
            # reads the Secret. optional, as above: a missing Secret fails with SourceUnreadable.
            ref = source.sql.connection_secret_ref
            secrets_root = str(api.PrepareConfig.model_fields["secrets_root"].default).rstrip("/")
            volumes.append(
                {
                    "name": name,
                    "secret": {
                        "secretName": ref.name,
                        "items": [{"key": ref.key, "path": ref.key}],
                        "optional": True,
                    },
                }
            )
            mounts.append({"name": name, "mountPath": f"{secrets_root}/sources/{index}", "readOnly": True})
        elif source.file is not None:
            location = common.StorageLocation.parse(source.file.uri)
            if location.remote:
                continue
            if location.scheme == "pvc":
                volume, mount = rworkload.storage_volume(location, settings, name=name)
            else:
                directory = posixpath.dirname(location.path) or "/"
                volume = {"name": name, "hostPath": {"path": directory, "type": "Directory"}}
                mount = {"name": name, "mountPath": directory}
            if mount["mountPath"] in mounted:
                continue  # the same claim or directory is already mounted (e.g. the storage one)
            mounted.add(mount["mountPath"])
            volumes.append(volume)
            mounts.append({**mount, "readOnly": True})
    for store in feedback:
        # A deployment's capture root, read-only: its claim at <pvc root>/pvc/<claim> (once per
        # claim, like the file sources'), or its own directory for file://. DirectoryOrCreate,
        # as the server mounts it: a deployment that has captured nothing yet gives an empty
        # directory and the clear FeedbackEmpty, not a pod stuck in ContainerCreating.
        location = common.StorageLocation.parse(store.uri)
        if location.remote:
            continue
        name = f"source-{store.source}"
        if location.scheme == "pvc":
            volume, mount = rworkload.storage_volume(location, settings, name=name)
        else:
            volume = {"name": name, "hostPath": {"path": location.path, "type": "DirectoryOrCreate"}}
            mount = {"name": name, "mountPath": location.path}
        if mount["mountPath"] in mounted:
            continue
        mounted.add(mount["mountPath"])
        volumes.append(volume)
        mounts.append({**mount, "readOnly": True})
    return volumes, mounts


def uses_s3(ds: api.Dataset) -> bool:
    """Whether the storage or a file source is an s3:// URI."""
    uris = [ds.spec.storage, *(s.file.uri for s in ds.spec.sources if s.file is not None)]
    return any(common.StorageLocation.parse(u).remote for u in uris)


def build_job(
    ds: api.Dataset,
    *,
    settings: rworkload.WorkloadSettings,
    round_: int = 0,
    feedback: list[api.FeedbackStore] | None = None,
) -> dict[str, Any]:
    """The prepare Job: restricted, deadline and retries from the spec, data errors not retried;
    ``feedback``: the resolved stores of the feedback sources (their volumes and Secrets)."""
    spec = ds.spec
    volumes, mounts = _volumes(ds, settings=settings, feedback=list(feedback or []))
    node_selector, tolerations = rworkload.placement(
        settings,
        gpu=spec.resources.gpu,
        node_selector=spec.node_selector,
        tolerations=[t.to_api() for t in spec.tolerations or []],
    )
    name = child_name(ds, round_)  # the Job and its ConfigMap
    return rworkload.job(
        rowner.Owner.of(ds),
        settings,
        name=name,
        component=COMPONENT,
        config_map=name,
        container=rworkload.batch_container(
            settings,
            name=CONTAINER,
            image=settings.workload_image,
            command=COMMAND,
            mounts=mounts,
            resources=spec.resources.to_requirements(gpu_resource=settings.gpu_resource),
        ),
        volumes=volumes,
        backoff_limit=spec.backoff_limit,
        active_deadline_seconds=spec.active_deadline_seconds,
        annotations={rowner.ANNOTATION_SPEC_HASH: spec_hash(ds)},
        node_selector=node_selector,
        tolerations=tolerations,
    )
