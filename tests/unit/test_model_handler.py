"""The Model handler lists what the plan needs and writes only version records; a sweep that
promotes to a Model only never looks for a ModelDeployment; a source wakes the Model it names."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from mlops_operator.api import sweep as api_sweep
from mlops_operator.handlers import framework
from mlops_operator.handlers import model as hmodel
from mlops_operator.handlers import sweep as hsweep
from mlops_operator.reconcile import sweep as rsweep
from mlops_operator.reconcile import workload as rworkload

NS = "ns"


@dataclasses.dataclass
class FakeKube:
    objects: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    calls: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, str(kw.get("label_selector"))))
        return list(self.objects.get(kind, []))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"]))
        self.objects.setdefault(obj["kind"], []).append(obj)
        return obj

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        return None


def context(kube: FakeKube) -> framework.Context:
    return framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=rworkload.WorkloadSettings(),
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        logger=logging.getLogger("test"),
    )


def model_body() -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": NS, "uid": "m", "generation": 1},
        "spec": {},
    }


def trainingjob() -> dict[str, Any]:
    return {
        "metadata": {"name": "run", "namespace": NS, "uid": "t"},
        "spec": {"registerAs": "iris", "datasetRef": {"name": "d"}, "model": {"estimator": "SVC"}},
        "status": {"phase": "Succeeded", "modelUri": "pvc://m/run", "specHash": "h"},
    }


def test_reconcile_lists_records_and_sources_and_writes_one_record() -> None:
    kube = FakeKube(objects={"TrainingJob": [trainingjob()]})
    outcome = hmodel.reconcile(context(kube), model_body())
    assert ("list", "ConfigMap", "mlops.dev/model=iris") in kube.calls
    assert [c for c in kube.calls if c[0] == "apply"] == [("apply", "ConfigMap", "iris-v1")]
    assert outcome.status is not None and outcome.status.to_api()["versionCount"] == 1  # type: ignore[union-attr]
    kube.calls.clear()
    body = model_body()
    body["status"] = outcome.status.to_api()  # type: ignore[union-attr]
    hmodel.reconcile(context(kube), body)
    assert [c for c in kube.calls if c[0] == "apply"] == [], "the record exists: nothing is written again"


def test_named_model_is_read_from_succeeded_sources_only() -> None:
    assert hmodel.named_model(trainingjob()) == "iris"
    running = trainingjob() | {"status": {"phase": "Running"}}
    assert hmodel.named_model(running) is None
    sweep = {"spec": {"promote": {"model": "wine"}}, "status": {"phase": "Succeeded"}}
    assert hmodel.named_model(sweep) == "wine"
    assert hmodel.named_model({"spec": {}, "status": {"phase": "Succeeded"}}) is None


def _sweep(promote: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "HyperparameterSweep",
        "metadata": {"name": "s", "namespace": NS, "uid": "u", "generation": 1},
        "spec": {
            "trialTemplate": {"datasetRef": {"name": "iris"}, "model": {"estimator": "LogisticRegression"}},
            "searchSpace": [{"name": "C", "type": "float", "low": 0.01, "high": 10, "log": True}],
            "objective": {"metric": "accuracy", "goal": 0.9},
            "algorithm": {"name": "random"},
            "parallelism": 1,
            "maxTrials": 1,
            "promote": promote,
        },
    }


def test_a_sweep_promoting_to_a_model_only_writes_no_deployment_and_settles() -> None:
    kube = FakeKube()
    outcome = hsweep.reconcile(context(kube), _sweep({"model": "iris"}))
    trial = kube.objects["TrainingJob"][0]
    trial["status"] = {
        "phase": "Succeeded",
        "objectiveValue": 0.95,
        "objectiveMetric": "accuracy",
        "modelUri": "pvc://m/s-trial-0",
        "completionTime": "2026-01-01T00:00:01Z",
    }
    body = _sweep({"model": "iris"})
    body["status"] = outcome.status.to_api()  # type: ignore[union-attr]
    kube.calls.clear()
    outcome = hsweep.reconcile(context(kube), body)
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert status["phase"] == "Succeeded" and status["bestTrial"]["modelUri"] == "pvc://m/s-trial-0"
    assert not [c for c in kube.calls if c[1] == "ModelDeployment"], "no ModelDeployment read or written"
    assert "promotion" not in status
    body["status"] = status
    assert rsweep.settled(api_sweep.HyperparameterSweep.from_body(body))
