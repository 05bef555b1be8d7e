"""Every workload pod the operator builds passes the Pod Security ``restricted`` profile.

A user's own image runs in these pods, so they get the tightest profile Kubernetes defines and no
service-account token. The checks below reimplement the controls of the ``restricted`` level
(which includes ``baseline``) from https://kubernetes.io/docs/concepts/security/pod-security-standards/
as the admission plugin applies them to a pod spec; the integration test
``test_pod_security.py`` has a real apiserver enforce the same profile on built Jobs.

``file://`` storage is mounted by hostPath, which ``restricted`` (and ``baseline``) forbid: it
exists for single-node local and e2e runs, where nothing enforces a profile. The restricted check
is therefore made on ``pvc://`` storage, and a second test pins that hostPath is the only thing
``file://`` adds.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import modeldeployment as md_api
from mlops_operator.api import trainingjob as tj_api
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import modeldeployment_build as md_build
from mlops_operator.reconcile import trainingjob_build as tj_build
from mlops_operator.reconcile import workload as rworkload

SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test", service_account="mlops-workload")
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What the ``restricted`` Pod Security level refuses in ``pod`` (a pod spec), plus a mounted
    service-account token (not a PSS control, but a workload must never hold one)."""
    out: list[str] = []
    containers = [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]
    pod_sc = pod.get("securityContext") or {}
    if pod.get("automountServiceAccountToken") is not False:
        out.append("automountServiceAccountToken is not false")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            out.append(f"{field} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']} has type {sorted(kinds - ALLOWED_VOLUMES)}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl.get('name')}")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    if pod_seccomp not in {None, "RuntimeDefault", "Localhost"}:
        out.append(f"pod seccompProfile is {pod_seccomp}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod is a Windows hostProcess")
    for c in containers:
        name = c.get("name")
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            out.append(f"{name}: seccompProfile is {seccomp}")
        if sc.get("procMount") not in {None, "Default"}:
            out.append(f"{name}: procMount is {sc['procMount']}")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{name}: Windows hostProcess")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port['hostPort']}")
    return out


def _dataset(storage: str, source: str) -> dataset_api.Dataset:
    return dataset_api.Dataset.from_body(
        {
            "metadata": {"name": "churn", "namespace": "ml", "uid": "u-ds", "generation": 1},
            "spec": {
                "sources": [
                    {"file": {"uri": source}},
                    {"configMap": {"name": "extra-rows", "key": "rows.csv"}},
                    {"http": {"url": "https://example.org/b.csv", "sha256": "a" * 64}},
                ],
                "schema": {"target": "label"},
                "storage": storage,
                "resources": {"cpu": "1", "memory": "1Gi"},
            },
        }
    )


def _training(dataset_uri: str, *, gpu: int = 0, workers: int = 1) -> dict[str, Any]:
    estimator = "TorchMLPClassifier" if workers > 1 else "XGBClassifier" if gpu else "RandomForestClassifier"
    tj = tj_api.TrainingJob.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-tj", "generation": 1},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": estimator},
                "resources": {"cpu": "1", "memory": "1Gi", "gpu": gpu},
                "workers": workers,
            },
        }
    )
    config = tj_build.train_config(tj, dataset_uri=dataset_uri, dataset_digest="sha256:ab", settings=SETTINGS)
    master = "10.96.0.9" if workers > 1 else None
    return tj_build.job(tj, config=config, settings=SETTINGS, suspend=False, master_addr=master)


def _serving(model_uri: str, track: str) -> dict[str, Any]:
    md = md_api.ModelDeployment.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-md", "generation": 1},
            "spec": {"model": {"storageUri": model_uri}, "workers": 2},
        }
    )
    return md_build.deployment(md, track=track, model_uri=model_uri, replicas=1, settings=SETTINGS)


def workload_pods(scheme: str) -> dict[str, dict[str, Any]]:
    """The pod template of every kind of workload pod the operator builds, on ``scheme`` storage."""
    root = "pvc://data" if scheme == "pvc" else "file:///data"
    built = {
        "prepare": rds_build.build_job(
            _dataset(f"{root}/datasets/churn", f"{root}/raw/a.csv"), settings=SETTINGS
        ),
        "train": _training(f"{root}/datasets/iris/abc"),
        "train-gpu": _training(f"{root}/datasets/iris/abc", gpu=1),
        "train-workers": _training(f"{root}/datasets/iris/abc", workers=2),
        "serve-stable": _serving(f"{root}/models/iris/v1", "stable"),
        "serve-canary": _serving(f"{root}/models/iris/v2", "canary"),
    }
    return {name: obj["spec"]["template"]["spec"] for name, obj in built.items()}


@pytest.mark.parametrize("name", sorted(workload_pods("pvc")))
def test_every_workload_pod_passes_the_restricted_profile(name: str) -> None:
    pod = workload_pods("pvc")[name]
    assert restricted_violations(pod) == []
    assert pod["serviceAccountName"] == "mlops-workload"  # the admin's account, still without a token
    assert pod["enableServiceLinks"] is False


def test_training_pods_read_their_config_from_their_own_annotation() -> None:
    """A run's config is a downwardAPI file (allowed by ``restricted``), not a ConfigMap."""
    for name in ("train", "train-gpu", "train-workers"):
        pod = workload_pods("pvc")[name]
        config = next(v for v in pod["volumes"] if v["name"] == rworkload.CONFIG_VOLUME)
        assert set(config) == {"name", "downwardAPI"}, name
        assert not any("configMap" in v for v in pod["volumes"]), name


def test_file_storage_adds_only_host_path_volumes() -> None:
    for name, pod in workload_pods("file").items():
        problems = restricted_violations(pod)
        assert problems and all("['hostPath']" in p for p in problems), (name, problems)


def test_the_checker_catches_what_restricted_refuses() -> None:
    pod = workload_pods("pvc")["train"]
    bad = {**pod, "automountServiceAccountToken": True, "hostNetwork": True}
    container = dict(bad["containers"][0])
    container["securityContext"] = {
        **container["securityContext"],
        "allowPrivilegeEscalation": True,
        "capabilities": {"add": ["SYS_ADMIN"]},
        "seccompProfile": {"type": "Unconfined"},
    }
    bad["containers"] = [{**container, "ports": [{"containerPort": 80, "hostPort": 80}]}]
    assert len(restricted_violations(bad)) == 7
