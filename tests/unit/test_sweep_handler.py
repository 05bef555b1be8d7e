"""The sweep handler carries out the plan: creates only new trials, stops, promotes by apply or patch."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from mlops_operator.handlers import framework
from mlops_operator.handlers import sweep as hsweep
from mlops_operator.reconcile import common as rcommon


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
        settings=rcommon.Settings(),
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


def test_goal_stops_running_trials_and_promotes_by_apply_then_patch() -> None:
    kube = FakeKube()
    first = hsweep.reconcile(context(kube), body())
    finish(kube.trainingjobs[0], 0.95)
    b = body()
    b["status"] = first.status.to_api()  # type: ignore[union-attr]
    kube.calls.clear()
    outcome = hsweep.reconcile(context(kube), b)
    assert ("delete", "s-trial-1") in kube.calls
    assert ("apply", "md") in kube.calls  # no ModelDeployment yet: created
    assert kube.deployments["md"]["spec"]["model"] == {"storageUri": "pvc://m/s-trial-0"}
    assert outcome.status.to_api()["phase"] == "Succeeded"  # type: ignore[union-attr]
    # An existing ModelDeployment is repointed with a merge patch, not replaced.
    kube2 = FakeKube(trainingjobs=kube.trainingjobs, deployments={"md": {"spec": {"replicas": 3}}})
    hsweep.reconcile(context(kube2), body())
    assert ("patch", "md") in kube2.calls and ("apply", "md") not in kube2.calls


def test_the_handler_is_registered_with_the_framework() -> None:
    reg = framework.REGISTRY["hyperparametersweeps"]
    assert reg.kind == "HyperparameterSweep" and reg.reconcile is hsweep.reconcile
