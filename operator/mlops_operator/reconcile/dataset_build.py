"""The children of a Dataset: its config (a ConfigMap) and its prepare batch/v1 Job.

Pure builders: everything comes in as arguments (the Dataset, the settings), and plain dicts
come out, ready for server-side apply. The spec hash is part of both names
(``<name>-prepare-<hash8>``), since a Job's pod template cannot change after creation; a
refresh (a re-read of the same spec's sources) adds its round (``<name>-prepare-<hash8>-<n>``).
The hash leaves out ``refresh`` and ``retention``: when and how long to keep versions decide
nothing about the data, so editing them never re-prepares.
"""

from __future__ import annotations

import posixpath
from typing import Any

from mlops_operator.api import common, workload
from mlops_operator.api import dataset as api
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
# Children
# ---------------------------------------------------------------------------------------------


def prepare_config(
    ds: api.Dataset, *, settings: rworkload.WorkloadSettings, retain: list[str] | None = None
) -> api.PrepareConfig:
    """The workload's config; ``retain``: the digests the status lists (the retention rule)."""
    return api.PrepareConfig(
        dataset=ds.metadata.name,
        namespace=ds.metadata.namespace,
        spec=ds.spec,
        retain=list(retain or [])[: api.VERSIONS_MAX],
        pvc_root=settings.pvc_root,
        config_map_root=SOURCES_DIR,
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
) -> dict[str, Any]:
    config = prepare_config(ds, settings=settings, retain=retain)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ds, child_name(ds, round_)),
        "data": {workload.CONFIG_KEY: config.model_dump_json(by_alias=True, exclude_none=True)},
    }


def _volumes(
    ds: api.Dataset, *, settings: rworkload.WorkloadSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts besides the config and /tmp: storage (read-write), sources (read-only),
    the S3 credentials Secret (s3:// storage and sources are reached over the network)."""
    storage = common.StorageLocation.parse(ds.spec.storage)
    volumes, mounts = rworkload.s3_secret_mounts([ds.spec.s3] if uses_s3(ds) else [])
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
    return volumes, mounts


def uses_s3(ds: api.Dataset) -> bool:
    """Whether the storage or a file source is an s3:// URI."""
    uris = [ds.spec.storage, *(s.file.uri for s in ds.spec.sources if s.file is not None)]
    return any(common.StorageLocation.parse(u).remote for u in uris)


def build_job(ds: api.Dataset, *, settings: rworkload.WorkloadSettings, round_: int = 0) -> dict[str, Any]:
    """The prepare Job: restricted, deadline and retries from the spec, data errors not retried."""
    spec = ds.spec
    volumes, mounts = _volumes(ds, settings=settings)
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
