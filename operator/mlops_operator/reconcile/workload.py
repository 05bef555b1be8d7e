"""One builder for every workload pod the operator runs: prepare and train Jobs, serving pods.

The Dataset and TrainingJob reconcilers each used to build their own Job and the copies drifted
(the training pod mounted the service-account token, the config landed in different
directories, the failure rules came in a different order). Every pod here gets the same basics,
whatever image runs in it (a user's own training image included): the restricted Pod Security
contexts, no service-account token and no service-link variables (a workload never talks to the
API), a writable ``/tmp`` on the read-only root, and for batch work the config file and
termination message of the contract in ``api.workload`` and one podFailurePolicy. Each kind adds
only what is its own: volumes, resources, env, placement. Pure, like the rest of ``reconcile``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import workload as contract
from mlops_operator.reconcile import owner as rowner

CONFIG_VOLUME = "config"
TMP_VOLUME = "tmp"


@dataclasses.dataclass(frozen=True)
class WorkloadSettings:
    """Operator settings the builders need, passed explicitly (never read from globals)."""

    workload_image: str = "mlops-workloads:0.1.0"
    # The GPU-capable variant (CUDA builds of PyTorch and XGBoost): pods that ask for GPUs or
    # run a built-in PyTorch network get it; everything else keeps the small CPU image.
    workload_gpu_image: str = "mlops-workloads-gpu:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    pvc_root: str = "/mnt/mlops"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_label: str = "nvidia.com/gpu.present"
    gpu_taint_key: str = "nvidia.com/gpu"
    run_as_user: int = 1000
    # Where workload pods go by default (an admin's choice, e.g. a node pool for ML work); a
    # resource's own nodeSelector and tolerations are added on top.
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


def restricted_security_context(run_as_user: int) -> dict[str, Any]:
    """Container securityContext that passes the ``restricted`` Pod Security profile."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(run_as_user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def storage_volume(
    location: common.StorageLocation, settings: WorkloadSettings, name: str = "storage"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (volume, volumeMount) pair that makes ``location`` visible at its ``local_path``."""
    if location.scheme == "pvc":
        volume = {"name": name, "persistentVolumeClaim": {"claimName": location.claim}}
        mount = {"name": name, "mountPath": f"{settings.pvc_root}/pvc/{location.claim}"}
    else:
        volume = {"name": name, "hostPath": {"path": location.path, "type": "DirectoryOrCreate"}}
        mount = {"name": name, "mountPath": location.path}
    return volume, mount


def s3_secret_mounts(
    connections: Iterable[common.S3Connection | None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read-only Secret volumes for the S3 credentials ``connections`` name, one per Secret.

    Mounted at ``<SECRETS_DIR>/s3/<secret>`` (``S3Connection.credentials_dir``), ``optional`` so
    that a missing Secret lets the pod start and fail with a clear reason instead of hanging in
    ContainerCreating. The operator itself never reads them.
    """
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for conn in connections:
        if conn is None or conn.secret_ref is None or conn.secret_ref.name in seen:
            continue
        secret = conn.secret_ref.name
        seen.add(secret)
        name = f"s3-{len(seen) - 1}"
        volumes.append({"name": name, "secret": {"secretName": secret, "optional": True}})
        mounts.append(
            {"name": name, "mountPath": conn.credentials_dir(contract.SECRETS_DIR), "readOnly": True}
        )
    return volumes, mounts


def gpu_scheduling(settings: WorkloadSettings) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Node selector and toleration added to pods that ask for GPUs."""
    return (
        {settings.gpu_node_label: "true"},
        [{"key": settings.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}],
    )


def placement(
    settings: WorkloadSettings,
    *,
    gpu: int = 0,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A workload pod's nodeSelector and tolerations: the operator's defaults, the GPU pool when
    it asks for GPUs, then the resource's own (which win on a key both set)."""
    selector = dict(settings.node_selector)
    tols = [dict(t) for t in settings.tolerations]
    if gpu:
        gpu_selector, gpu_tols = gpu_scheduling(settings)
        selector.update(gpu_selector)
        tols += gpu_tols
    selector.update(node_selector or {})
    for tol in tolerations or []:
        if tol not in tols:
            tols.append(tol)
    return selector, tols


def pod_spec(
    settings: WorkloadSettings,
    *,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pod-level basics of every workload pod (Job or Deployment)."""
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(settings.run_as_user),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": volumes,
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    return pod


def batch_container(
    settings: WorkloadSettings,
    *,
    name: str,
    image: str,
    command: Sequence[str],
    mounts: Iterable[dict[str, Any]] = (),
    resources: dict[str, Any] | None = None,
    env: Iterable[dict[str, Any]] = (),
    ports: Iterable[dict[str, Any]] = (),
    config_json: str | None = None,
) -> dict[str, Any]:
    """A batch workload's container: its config file and ``/tmp`` mounted first, its result read
    from the termination message (or the log tail when it died before writing one); ``env``
    comes after the contract's variables. With ``config_json`` the config travels in the pod
    spec (``$MLOPS_CONFIG``) instead of a mounted ConfigMap (the Job is built with
    ``config_map=None``)."""
    config_env = (
        {"name": contract.CONFIG_ENV, "value": config_json}
        if config_json is not None
        else {"name": contract.CONFIG_FILE_ENV, "value": contract.CONFIG_FILE}
    )
    config_mounts = (
        []
        if config_json is not None
        else [{"name": CONFIG_VOLUME, "mountPath": contract.CONFIG_DIR, "readOnly": True}]
    )
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
        "env": [
            config_env,
            *process_env(),
            *env,
        ],
        "volumeMounts": [
            *config_mounts,
            {"name": TMP_VOLUME, "mountPath": contract.TMP_DIR},
            *mounts,
        ],
        "securityContext": restricted_security_context(settings.run_as_user),
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources:
        container["resources"] = resources
    if ports:
        container["ports"] = list(ports)
    return container


def pod_failure_policy(container: str) -> dict[str, Any]:
    """The same rules for every batch workload, in this order: the contract's permanent exit code
    fails the Job at once (retrying cannot help), an evicted or preempted pod is not counted
    against ``backoffLimit`` (not the workload's fault), anything else is retried."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "In",
                    "values": [contract.PERMANENT_EXIT_CODE],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def job(
    owner: rowner.Owner,
    settings: WorkloadSettings,
    *,
    name: str,
    component: str,
    config_map: str | None,
    container: dict[str, Any],
    volumes: Iterable[dict[str, Any]] = (),
    backoff_limit: int,
    active_deadline_seconds: int | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    pod_extra: dict[str, Any] | None = None,
    spec_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job of one workload run: one pod that is never restarted in place, the config
    ConfigMap (unless ``config_map`` is None: the config is in the container's env) and an
    emptyDir ``/tmp`` as its first volumes. ``labels`` are added to the Job's
    (not the pod's) labels; ``pod_extra`` and ``spec_extra`` are the kind's own pod and Job fields."""
    pod_labels = owner.labels(component)
    pod = pod_spec(
        settings,
        containers=[container],
        volumes=[
            *([{"name": CONFIG_VOLUME, "configMap": {"name": config_map}}] if config_map is not None else []),
            {"name": TMP_VOLUME, "emptyDir": {}},
            *volumes,
        ],
        node_selector=node_selector,
        tolerations=tolerations,
    )
    pod["restartPolicy"] = "Never"
    pod.update(pod_extra or {})
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "podFailurePolicy": pod_failure_policy(container["name"]),
        "template": {"metadata": {"labels": pod_labels}, "spec": pod},
    }
    if active_deadline_seconds:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    spec.update(spec_extra or {})
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**pod_labels, **(labels or {})},
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


# Long-running workloads (the serving and review servers): an apps/v1 Deployment whose pods
# get the same basics as the batch ones, plus HTTP probes on a named port and a rolling update
# that never takes a ready pod away before its successor is ready.


def process_env() -> list[dict[str, Any]]:
    """The variables that make a Python process at home on the read-only root: ``$HOME`` and
    ``$TMPDIR`` on the writable /tmp, unbuffered output for the logs."""
    return [
        {"name": "HOME", "value": contract.TMP_DIR},
        {"name": "TMPDIR", "value": contract.TMP_DIR},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def http_probe(
    path: str,
    *,
    period_seconds: int,
    failure_threshold: int,
    timeout_seconds: int,
    initial_delay_seconds: int | None = None,
) -> dict[str, Any]:
    """A probe that GETs ``path`` on the container's ``http`` port."""
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": "http"}}
    if initial_delay_seconds is not None:
        probe["initialDelaySeconds"] = initial_delay_seconds
    probe.update(
        {
            "periodSeconds": period_seconds,
            "failureThreshold": failure_threshold,
            "timeoutSeconds": timeout_seconds,
        }
    )
    return probe


def server_container(
    settings: WorkloadSettings,
    *,
    name: str,
    image: str,
    command: Sequence[str],
    config: dict[str, Any],
    port: int,
    probes: dict[str, dict[str, Any]],
    resources: dict[str, Any],
    env: Iterable[dict[str, Any]] = (),
    mounts: Iterable[dict[str, Any]] = (),
    lifecycle: dict[str, Any] | None = None,
    extra_ports: Iterable[tuple[str, int]] = (),
) -> dict[str, Any]:
    """A server's container: its config as compact JSON in ``$MLOPS_CONFIG`` (then ``env``), a
    TCP port named ``http`` (then ``extra_ports``, ``(name, port)``), ``probes`` by field name
    (``readinessProbe``, ...), the restricted securityContext, ``mounts`` then ``/tmp``, and the
    log tail as its termination message."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
        "env": [
            {"name": contract.CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
            *env,
        ],
        "ports": [
            {"name": "http", "containerPort": port, "protocol": "TCP"},
            *({"name": name, "containerPort": number, "protocol": "TCP"} for name, number in extra_ports),
        ],
        **probes,
    }
    if lifecycle is not None:
        container["lifecycle"] = lifecycle
    container.update(
        {
            "resources": resources,
            "securityContext": restricted_security_context(settings.run_as_user),
            "volumeMounts": [*mounts, {"name": TMP_VOLUME, "mountPath": contract.TMP_DIR}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    )
    return container


def server_deployment_spec(
    settings: WorkloadSettings,
    *,
    container: dict[str, Any],
    volumes: Iterable[dict[str, Any]],
    tmp_size: str,
    selector: dict[str, str],
    pod_labels: dict[str, str],
    termination_grace_period_seconds: int,
    gpu: int = 0,
    min_ready_seconds: int | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A server's Deployment spec (without ``replicas``: the caller's to place): one pod of
    ``container`` with ``volumes`` then a ``tmp_size`` emptyDir /tmp, placed by ``placement``,
    rolled one surge pod at a time with none unavailable."""
    node_selector, tolerations = placement(settings, gpu=gpu)
    pod = pod_spec(
        settings,
        containers=[container],
        volumes=[*volumes, {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": tmp_size}}],
        node_selector=node_selector,
        tolerations=tolerations,
    )
    pod["terminationGracePeriodSeconds"] = termination_grace_period_seconds
    template_meta: dict[str, Any] = {"labels": pod_labels}
    if pod_annotations is not None:
        template_meta["annotations"] = pod_annotations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
    }
    if min_ready_seconds is not None:
        spec["minReadySeconds"] = min_ready_seconds
    spec["template"] = {"metadata": template_meta, "spec": pod}
    return spec


def deployment(
    *,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    spec_hash_of: Any = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment of ``spec``, annotated with the spec hash of ``spec_hash_of``
    (the spec itself unless given: what a change must roll) and then ``annotations``."""
    hashed = spec if spec_hash_of is None else spec_hash_of
    meta = {
        **metadata,
        "annotations": {rowner.ANNOTATION_SPEC_HASH: rowner.spec_hash(hashed), **(annotations or {})},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
