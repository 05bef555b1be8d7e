"""The sweep handler carries out the plan: creates only new trials, stops, promotes only into what it owns."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from mlops_operator.handlers import framework
from mlops_operator.handlers import sweep as hsweep
from mlops_operator.reconcile import workload as rworkload


@dataclasses.dataclass
class FakeKube:
    trainingjobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deployments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    calls: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        assert kind == "TrainingJob" and kw["label_selector"] == "mlops.dev/hyperparametersweep=s"
        return list(self.trainingjobs)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["metadata"]["name"]))
        if obj["kind"] == "TrainingJob":
            self.trainingjobs.append(obj)
        else:
            self.deployments[obj["metadata"]["name"]] = obj
        return obj

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.deployments.get(name)

    def patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.calls.append(("patch", name))
        return patch

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.calls.append(("delete", name))
        self.trainingjobs = [t for t in self.trainingjobs if t["metadata"]["name"] != name]
        return True


def context(kube: FakeKube) -> framework.Context:
    return framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=rworkload.WorkloadSettings(),
        now=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
        logger=logging.getLogger("test"),
    )


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "HyperparameterSweep",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {
            "trialTemplate": {"datasetRef": {"name": "iris"}, "model": {"estimator": "LogisticRegression"}},
            "searchSpace": [{"name": "C", "type": "float", "low": 0.01, "high": 10, "log": True}],
            "objective": {"metric": "accuracy", "goal": 0.9},
            "algorithm": {"name": "random"},
            "parallelism": 2,
            "maxTrials": 4,
            "promote": {"modelDeployment": "md"},
            **spec,
        },
    }


def finish(trial: dict[str, Any], value: float) -> None:
    trial["status"] = {
        "phase": "Succeeded",
        "objectiveValue": value,
        "objectiveMetric": "accuracy",
        "modelUri": f"pvc://m/{trial['metadata']['name']}",
        "completionTime": "2025-01-01T00:00:01Z",
    }


def test_creates_trials_once_and_writes_status_and_events() -> None:
    kube = FakeKube()
    outcome = hsweep.reconcile(context(kube), body())
    assert kube.calls == [("apply", "s-trial-0"), ("apply", "s-trial-1")]
    assert outcome.status is not None and outcome.status.to_api()["trials"]["created"] == 2  # type: ignore[union-attr]
    assert {e.reason for e in outcome.events} == {"Started", "TrialsCreated"}
    kube.calls.clear()
    b = body()
    b["status"] = outcome.status.to_api()  # type: ignore[union-attr]
    hsweep.reconcile(context(kube), b)
    assert kube.calls == []  # slots full: nothing created, nothing rewritten


def test_goal_stops_running_trials_and_creates_the_missing_model_deployment() -> None:
    kube = FakeKube()
    first = hsweep.reconcile(context(kube), body())
    finish(kube.trainingjobs[0], 0.95)
    b = body()
    b["status"] = first.status.to_api()  # type: ignore[union-attr]
    kube.calls.clear()
    outcome = hsweep.reconcile(context(kube), b)
    assert ("delete", "s-trial-1") in kube.calls
    assert ("apply", "md") in kube.calls  # no ModelDeployment yet: created
    created = kube.deployments["md"]
    assert created["spec"]["model"] == {"storageUri": "pvc://m/s-trial-0"}
    assert created["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "mlops-operator",
        "mlops.dev/promoted-from-sweep": "s",
    }
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert status["phase"] == "Succeeded" and status["promotion"]["state"] == "Created"
    assert "Promoted" in {e.reason for e in outcome.events}


def test_a_users_model_deployment_is_never_written() -> None:
    """Neither apply nor patch: the promotion lands in the status and an Event instead."""
    users = {
        "metadata": {
            "name": "md",
            "managedFields": [{"manager": "argocd-controller", "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
        },
        "spec": {"replicas": 3, "model": {"trainingJobRef": "tj"}},
    }
    kube = FakeKube(deployments={"md": users})
    first = hsweep.reconcile(context(kube), body())
    finish(kube.trainingjobs[0], 0.95)
    b = body()
    b["status"] = first.status.to_api()  # type: ignore[union-attr]
    kube.calls.clear()
    outcome = hsweep.reconcile(context(kube), b)
    assert [c for c in kube.calls if c[1] == "md"] == []
    assert kube.deployments["md"] is users
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert status["promotion"]["state"] == "NotApplied"
    assert status["promotion"]["modelUri"] == "pvc://m/s-trial-0"
    [event] = [e for e in outcome.events if e.reason == "PromotionNotApplied"]
    assert "storageUri: pvc://m/s-trial-0" in event.message


def test_the_handler_is_registered_with_the_framework() -> None:
    reg = framework.REGISTRY["hyperparametersweeps"]
    assert reg.kind == "HyperparameterSweep" and reg.reconcile is hsweep.reconcile
