"""The Model registry against the real control plane: versions from TrainingJobs and a sweep's
best trial, aliases moved by annotation, the CLI and a sweep promotion, versions that outlive
what produced them, and no spec field of a user's object ever written by the operator.

The operator runs as a subprocess with only the Model and sweep handlers (and the child
watches) in a namespace no other operator watches: TrainingJobs and trials are moved by the
test, which writes their outcome through the status subresource as the TrainingJob controller
would. The user's objects are server-side applied by a "GitOps" field manager, so the
managedFields say exactly who owns what.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import subprocess_operator
from kubernetes import client as k8s
from namespace_api import GITOPS, GROUP, VERSION, NamespaceApi

from conftest import Cluster, wait_until
from mlops_operator import cli

pytestmark = pytest.mark.integration

DIGEST = "ab" * 32
LAUNCH = """
import sys, kopf, logging
from mlops_operator.handlers import settings
settings.configure(
    settings.OperatorConfig(
        metrics_port=int(sys.argv[2]), metrics_host="127.0.0.1", namespaces=(sys.argv[1],)
    )
)
kopf.configure(log_format=kopf.LogFormat.PLAIN)
logging.getLogger("kubernetes").setLevel(logging.WARNING)
import mlops_operator.handlers.model, mlops_operator.handlers.sweep, mlops_operator.handlers.children
import mlops_operator.handlers.modeldeployment
kopf.run(clusterwide=False, namespaces=(sys.argv[1],), standalone=True, liveness_endpoint=None)
"""


@dataclasses.dataclass
class RegistryOperator(subprocess_operator.SubprocessOperator):
    """The operator with the Model, sweep and ModelDeployment handlers, in its own subprocess."""

    launch: str = LAUNCH
    label: str = "registry"


@dataclasses.dataclass
class Api(NamespaceApi):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.apps = k8s.AppsV1Api(self.cluster.api_client())

    def model(self) -> dict[str, Any]:
        return dict(self.get("models", "iris").get("status") or {})

    def trials(self, sweep: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "trainingjobs",
            label_selector=f"mlops.dev/hyperparametersweep={sweep}",
        )["items"]
        return items

    def record(self, version: int) -> dict[str, Any]:
        cm = self.core.read_namespaced_config_map(f"iris-v{version}", self.namespace)
        data: dict[str, Any] = json.loads(cm.data["version.json"])
        return data

    def events(self, name: str) -> set[str]:
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return {e.reason for e in items}


def training_spec(**extra: Any) -> dict[str, Any]:
    return {
        "datasetRef": {"name": "iris"},
        "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
        "metrics": ["accuracy"],
        "registerAs": "iris",
        **extra,
    }


def sweep_spec() -> dict[str, Any]:
    return {
        "trialTemplate": {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
            "metrics": ["accuracy"],
        },
        "searchSpace": [{"name": "max_depth", "type": "int", "low": 2, "high": 12}],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "algorithm": {"name": "random"},
        "seed": 3,
        "maxTrials": 2,
        "parallelism": 2,
        "promote": {"model": "iris", "alias": "champion"},
    }


def served(api: Api, name: str) -> tuple[str | None, int | None]:
    """(the model directory the stable Deployment's pods load, status.servedModelVersion)."""
    try:
        deployment = api.apps.read_namespaced_deployment(f"{name}-predictor", api.namespace)
    except k8s.ApiException:
        return None, None
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env or []}
    config = json.loads(env.get("MLOPS_CONFIG") or "{}")
    status = api.get("modeldeployments", name).get("status") or {}
    return config.get("modelDir"), status.get("servedModelVersion")


def spec_managers(obj: dict[str, Any]) -> set[str]:
    """The field managers that own any field under ``spec`` (server-side apply's managedFields)."""
    return {
        str(entry["manager"])
        for entry in obj["metadata"].get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    }


def versions(status: dict[str, Any]) -> list[int]:
    return [int(v["version"]) for v in status.get("versions") or []]


def aliases(status: dict[str, Any]) -> dict[str, int]:
    return {a["name"]: int(a["version"]) for a in status.get("aliases") or []}


@pytest.fixture
def registry(cluster: Cluster, isolated_namespace: str) -> Iterator[RegistryOperator]:
    handle = RegistryOperator(cluster=cluster, namespace=isolated_namespace)
    yield handle
    handle.kill()
    for kind in ("hps", "models", "tj"):
        for name in cluster.kubectl("get", kind, "-n", isolated_namespace, "-o", "name").stdout.split():
            cluster.kubectl(
                "patch",
                "-n",
                isolated_namespace,
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )


@pytest.fixture
def api(cluster: Cluster, isolated_namespace: str) -> Api:
    return Api(cluster=cluster, namespace=isolated_namespace, dataset_digest=DIGEST)


def test_versions_aliases_and_lineage_outlive_their_sources(
    api: Api, registry: RegistryOperator, cluster: Cluster
) -> None:
    registry.start()
    api.gitops_apply("Model", "iris", {"description": "iris classifiers"})
    wait_until(lambda: api.model().get("phase") == "Ready", timeout=30, what="the Model to be Ready")

    # A TrainingJob with registerAs: version 1 once it succeeded, with its lineage.
    api.gitops_apply("TrainingJob", "run-a", training_spec())
    api.finish("run-a", 0.90)
    status = wait_until(lambda: (s := api.model()) and versions(s) == [1] and s, timeout=30, what="version 1")
    assert status["versions"][0]["source"] == {"kind": "TrainingJob", "name": "run-a"}
    assert status["versions"][0]["datasetDigest"] == DIGEST
    record = api.record(1)
    assert record["source"]["name"] == "run-a" and record["source"]["runHash"] == "hash-run-a"
    assert record["metrics"]["accuracy"]["validation"] == 0.90
    cm = api.core.read_namespaced_config_map("iris-v1", api.namespace)
    assert cm.immutable is True
    assert (
        cm.metadata.labels["mlops.dev/model"] == "iris"
        and cm.metadata.labels["mlops.dev/model-version"] == "1"
    )
    assert [(r.kind, r.name) for r in cm.metadata.owner_references] == [("Model", "iris")]

    # A second run: version 2, newest first.
    api.gitops_apply("TrainingJob", "run-b", training_spec(model={"estimator": "RandomForestClassifier"}))
    api.finish("run-b", 0.95)
    wait_until(lambda: versions(api.model()) == [2, 1], timeout=30, what="version 2")

    # An alias by annotation, then another by the CLI (server-side apply as mlops-cli).
    cluster.kubectl("annotate", "-n", api.namespace, "models/iris", "alias.mlops.dev/champion=1")
    status = wait_until(
        lambda: (s := api.model()) and aliases(s).get("champion") == 1 and s,
        timeout=30,
        what="champion -> v1",
    )
    assert status["champion"] == 1 and status["aliasHistory"][0]["by"].startswith("annotation")
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "models",
        "alias",
        "iris",
        "challenger",
        "2",
        "-n",
        api.namespace,
        "--kubeconfig",
        str(cluster.kubeconfig),
    ]
    assert cli.main(argv, out=out, err=err) == 0, err.getvalue()
    status = wait_until(
        lambda: (s := api.model()) and aliases(s).get("challenger") == 2 and s,
        timeout=30,
        what="challenger -> v2",
    )
    assert status["aliasHistory"][0]["by"] == "annotation (mlops-cli)"
    assert aliases(status)["champion"] == 1, "the CLI's apply kept the other alias"
    # An unknown version is refused: the alias stays, the condition and an Event say why.
    cluster.kubectl(
        "annotate", "--overwrite", "-n", api.namespace, "models/iris", "alias.mlops.dev/champion=9"
    )
    wait_until(lambda: "AliasRefused" in api.events("iris"), timeout=30, what="an AliasRefused Event")
    status = api.model()
    cond = next(c for c in status["conditions"] if c["type"] == "AliasesResolved")
    assert cond["status"] == "False" and "version 9 does not exist" in cond["message"]
    assert aliases(status)["champion"] == 1
    cluster.kubectl(
        "annotate", "--overwrite", "-n", api.namespace, "models/iris", "alias.mlops.dev/champion=1"
    )

    # A ModelDeployment that serves the champion: version 1 now.
    api.gitops_apply("ModelDeployment", "iris-champion", {"model": {"modelRef": {"name": "iris"}}})
    v1 = f"pvc://models/{api.namespace}/run-a/0123456789abcdef"
    wait_until(lambda: served(api, "iris-champion") == (v1, 1), timeout=60, what="the champion (v1) served")

    # Delete a TrainingJob: its version stays (a third run proves a pass happened since).
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.namespace, "trainingjobs", "run-a")
    api.gitops_apply("TrainingJob", "run-c", training_spec(metrics=["accuracy", "f1"]))
    api.finish("run-c", 0.80)
    status = wait_until(lambda: (s := api.model()) and versions(s) == [3, 2, 1] and s, timeout=30, what="v3")
    assert status["versions"][-1]["source"]["name"] == "run-a"

    # A sweep that promotes to the Model: its best trial becomes a version, champion moves to it.
    api.gitops_apply("HyperparameterSweep", "search", sweep_spec())
    trials = wait_until(lambda: len(t := api.trials("search")) == 2 and t, timeout=30, what="2 trials")
    names = sorted(t["metadata"]["name"] for t in trials)
    api.finish(names[0], 0.91)
    api.finish(names[1], 0.97)
    status = wait_until(
        lambda: (s := api.model()) and aliases(s).get("champion") == 4 and s,
        timeout=60,
        what="champion -> v4",
    )
    entry = status["versions"][0]
    assert entry["source"] == {"kind": "HyperparameterSweep", "name": "search", "trial": names[1]}
    move = status["aliasHistory"][0]
    assert (move["by"], move["from"], move["to"]) == ("sweep/search", 1, 4)
    assert f"promoted trial {names[1]}, accuracy 0.97" in move["reason"]
    assert {"VersionRegistered", "AliasMoved"} <= api.events("iris")
    # The deployment follows the alias: its pods now load version 4, and it says so.
    v4 = f"pvc://models/{api.namespace}/{names[1]}/0123456789abcdef"
    wait_until(lambda: served(api, "iris-champion") == (v4, 4), timeout=60, what="the champion (v4) served")
    assert "ModelVersionChanged" in api.events("iris-champion")

    # GitOps safety: no spec field of any user object is the operator's.
    for plural, name in (
        ("models", "iris"),
        ("trainingjobs", "run-b"),
        ("hyperparametersweeps", "search"),
        ("modeldeployments", "iris-champion"),
    ):
        obj = api.get(plural, name)
        assert spec_managers(obj) == {GITOPS}, (plural, name, spec_managers(obj))
    assert "mlops-operator" not in spec_managers(api.get("models", "iris"))

    # Delete the sweep (its trials go with it): the promoted version and its lineage remain.
    api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, api.namespace, "hyperparametersweeps", "search", propagation_policy="Foreground"
    )
    wait_until(
        lambda: (
            not any(
                s["metadata"]["name"] == "search"
                for s in api.custom.list_namespaced_custom_object(
                    GROUP, VERSION, api.namespace, "hyperparametersweeps"
                )["items"]
            )
        ),
        timeout=60,
        what="the sweep to be deleted",
    )
    cluster.kubectl("annotate", "-n", api.namespace, "models/iris", "alias.mlops.dev/staging=4")
    status = wait_until(
        lambda: (s := api.model()) and aliases(s).get("staging") == 4 and s, timeout=30, what="staging -> v4"
    )
    assert versions(status) == [4, 3, 2, 1] and status["champion"] == 4
    assert status["versions"][0]["source"]["name"] == "search"
    lineage = api.record(4)
    assert lineage["source"]["kind"] == "HyperparameterSweep" and lineage["source"]["trial"] == names[1]
    assert lineage["dataset"]["digest"] == DIGEST and lineage["objective"]["value"] == 0.97
    assert lineage["modelUri"] == f"pvc://models/{api.namespace}/{names[1]}/0123456789abcdef"
    # kubectl get shows the latest version, the champion and the count.
    header, row = cluster.kubectl("get", "mlm", "iris", "-n", api.namespace).stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "LATEST", "CHAMPION", "VERSIONS"]
    assert row.split()[:4] == ["iris", "4", "4", "4"]
