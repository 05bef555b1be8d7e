"""A real apiserver enforces Pod Security ``restricted`` on the workload Jobs the operator builds.

The unit test ``tests/unit/test_pod_security.py`` checks every workload pod against a
reimplementation of the profile; this one lets the apiserver's own PodSecurity admission judge a
prepare and a training Job (``pvc://`` storage: ``file://`` mounts hostPath, for local runs only).
Nothing is created: ``--dry-run=server`` runs admission and stops. PodSecurity enforces on pods
and only warns on the templates of Jobs, so each Job is dry-run applied with ``warn`` (no
warning allowed) and its pod template as a bare Pod with ``enforce``; a hostPath pod being
refused shows that the namespace really enforces.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Cluster
from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import trainingjob as tj_api
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import trainingjob_build as tj_build
from mlops_operator.reconcile import workload as rworkload

pytestmark = pytest.mark.integration

SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")


def _jobs(namespace: str, root: str) -> list[dict[str, Any]]:
    ds = dataset_api.Dataset.from_body(
        {
            "metadata": {"name": "churn", "namespace": namespace, "uid": "u-ds", "generation": 1},
            "spec": {
                "sources": [
                    {"file": {"uri": f"{root}/raw/a.csv"}},
                    {"configMap": {"name": "x", "key": "a.csv"}},
                ],
                "schema": {"target": "label"},
                "storage": f"{root}/datasets/churn",
            },
        }
    )
    tj = tj_api.TrainingJob.from_body(
        {
            "metadata": {"name": "iris", "namespace": namespace, "uid": "u-tj", "generation": 1},
            "spec": {
                "datasetRef": {"name": "churn"},
                "model": {"estimator": "XGBClassifier"},
                "resources": {"gpu": 1},
            },
        }
    )
    config = tj_build.train_config(
        tj, dataset_uri=f"{root}/datasets/churn/abc", dataset_digest="sha256:ab", settings=SETTINGS
    )
    jobs = [
        rds_build.build_job(ds, settings=SETTINGS),
        tj_build.job(tj, config=config, settings=SETTINGS, suspend=True),
    ]
    for job in jobs:
        job["metadata"].pop("ownerReferences")  # the owners do not exist; admission would not care
    return jobs


def _as_pod(job: dict[str, Any]) -> dict[str, Any]:
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"], "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def _dry_run(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> tuple[int, str]:
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=pytest", "-n", namespace, "-f", "-",
        input=json.dumps(manifest),
        check=False,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def test_built_jobs_pass_restricted_admission(cluster: Cluster, isolated_namespace: str) -> None:
    ns = isolated_namespace
    cluster.kubectl(
        "label", "namespace", ns,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    for job in _jobs(ns, "pvc://data"):
        code, stderr = _dry_run(cluster, ns, job)
        assert code == 0 and "PodSecurity" not in stderr, (job["metadata"]["name"], stderr)
        code, stderr = _dry_run(cluster, ns, _as_pod(job))
        assert code == 0 and "PodSecurity" not in stderr, (job["metadata"]["name"], stderr)
    code, stderr = _dry_run(cluster, ns, _as_pod(_jobs(ns, "file:///data")[0]))
    assert code != 0 and "hostPath" in stderr
