"""Retraining through the ModelDeployment handler: passes against a fake API carry a run from the
annotation to the alias move (what is read, patched and applied, and as which field manager),
and the labelled-rows count is read from a REAL review server over HTTP."""

from __future__ import annotations

import datetime
import json
import logging
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_operator.api import common
from mlops_operator.handlers import framework
from mlops_operator.handlers import modeldeployment as handler
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads.review import backlog as backlog_mod
from mlops_workloads.review import demo as review_demo
from mlops_workloads.review import server as review_server

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
V1, V2 = "pvc://models/iris/aaaa", "pvc://models/iris/bbbb"
D1, D2 = "1" * 64, "2" * 64


class FakeKube:
    """Objects by (kind, namespace, name); records patches and applies with their field manager."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[tuple[str, dict[str, Any]]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"].get("namespace", "ml"), obj["metadata"]["name"])] = obj

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace or "", name))

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        want = dict(p.split("=", 1) for p in (label_selector or "").split(",") if p)
        return [
            o
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == namespace
            and want.items() <= ((o.get("metadata") or {}).get("labels") or {}).items()
        ]

    def apply(self, obj: dict[str, Any], *, field_manager: str = "mlops-operator") -> dict[str, Any]:
        self.applied.append((field_manager, obj))
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        old = self.objects.get(key, {})
        self.objects[key] = {**obj, "status": old.get("status", {})}
        return self.objects[key]

    def patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict[str, Any], **_: Any
    ) -> dict[str, Any] | None:
        self.patched.append((kind, name, patch))
        obj = self.objects.get((kind, namespace or "", name))
        if obj is not None:
            annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
            annotations.update(((patch.get("metadata") or {}).get("annotations")) or {})
        return obj

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None


def ctx(kube: FakeKube) -> framework.Context:
    return framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=rworkload.WorkloadSettings(),
        now=NOW,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )


def deployment(status: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": common.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "uid": "u-1",
            "generation": 1,
            "annotations": annotations,
        },
        "spec": {
            "model": {"modelRef": {"name": "iris"}},
            "retrain": {
                "template": {
                    "trainingJob": {
                        "datasetRef": {"name": "iris-plus"},
                        "model": {"estimator": "LogisticRegression"},
                    }
                }
            },
        },
        "status": status,
    }


def model(versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": "ml"},
        "status": {"aliases": [{"name": "champion", "version": 1}], "versions": versions},
    }


V1_RECORD = {
    "version": 1,
    "modelUri": V1,
    "source": {"kind": "TrainingJob", "name": "t"},
    "datasetDigest": D1,
}
V2_RECORD = {"version": 2, "modelUri": V2, "source": {"kind": "TrainingJob", "name": "iris-challenger-1"}}


def test_passes_carry_a_run_from_the_annotation_to_the_alias_move() -> None:
    kube = FakeKube()
    kube.put(model([V1_RECORD]))
    kube.put(
        {
            "kind": "Dataset",
            "metadata": {"name": "iris-plus", "namespace": "ml"},
            "spec": {},
            "status": {"phase": "Ready", "digest": D1, "completionTime": "2026-01-01T10:00:00Z"},
        }
    )
    annotations = {"mlops.dev/retrain": "please"}
    status: dict[str, Any] = {}

    def reconcile() -> dict[str, Any]:
        nonlocal status
        outcome = handler.reconcile(ctx(kube), deployment(status, annotations))
        assert isinstance(outcome.status, common.StatusBase)
        status = outcome.status.to_api()
        return status

    reconcile()
    assert status["retrain"]["current"]["phase"] == "Refreshing"
    assert kube.patched == [
        ("Dataset", "iris-plus", {"metadata": {"annotations": {"mlops.dev/refresh": "retrain/iris/1"}}})
    ]
    # The Dataset re-reads its sources (its own reconciler, not here) into version D2.
    dataset = kube.objects[("Dataset", "ml", "iris-plus")]
    dataset["status"] = {
        "phase": "Ready",
        "digest": D2,
        "storageUri": "pvc://data/iris/2",
        "versions": [{"digest": D2, "storageUri": "pvc://data/iris/2"}],
        "lastRefreshRequest": "retrain/iris/1",
        "completionTime": "2026-01-01T12:00:00Z",
    }
    reconcile()
    assert status["retrain"]["current"]["phase"] == "Training"
    tj = kube.objects[("TrainingJob", "ml", "iris-challenger-1")]
    assert tj["spec"]["registerAs"] == "iris"
    # The run succeeds and the Model registers it as version 2.
    tj["status"] = {"phase": "Succeeded", "modelUri": V2}
    kube.put(model([{**V2_RECORD, "datasetDigest": D2}, V1_RECORD]))
    reconcile()
    assert status["retrain"]["current"]["phase"] == "Evaluating"
    job = kube.objects[("Job", "ml", "iris-evaluate-1")]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "mlops_workloads.evaluate"
    # The evaluation completes: the challenger wins.
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    result = {
        "ok": True,
        "metric": "accuracy",
        "test": {"rows": 30, "champion": 0.7, "challenger": 0.9},
        "overall": {"rows": 30, "champion": 0.7, "challenger": 0.9},
    }
    kube.put(
        {
            "kind": "Pod",
            "metadata": {
                "name": "iris-evaluate-1-abc",
                "namespace": "ml",
                "labels": {"batch.kubernetes.io/job-name": "iris-evaluate-1"},
            },
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "evaluate",
                        "state": {"terminated": {"exitCode": 0, "message": json.dumps(result)}},
                    }
                ],
            },
        }
    )
    reconcile()
    assert status["retrain"]["history"][0]["phase"] == "Promoted"
    moves = [(m, o) for m, o in kube.applied if o["kind"] == "Model"]
    assert moves == [
        (
            "mlops-retrain",
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "Model",
                "metadata": {
                    "name": "iris",
                    "namespace": "ml",
                    "annotations": {"alias.mlops.dev/champion": "2"},
                },
            },
        )
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Retraining"]["status"] == "False" and conditions["Retraining"]["reason"] == "Promoted"
    # A pass after: nothing new (the annotation was acted on).
    applied = len(kube.applied)
    reconcile()
    assert status["retrain"].get("current") is None and status["retrain"]["runs"] == 1
    assert not [o for _, o in kube.applied[applied:] if o["kind"] in ("Model", "TrainingJob", "Job")]


@pytest.fixture
def review(tmp_path: pathlib.Path) -> Iterator[tuple[str, backlog_mod.Backlog]]:
    uri = f"file://{tmp_path}/root"
    review_demo.seed(uri, requests=6)
    backlog = backlog_mod.open_backlog(uri, refresh_seconds=0)
    srv = review_server.Server(("127.0.0.1", 0), backlog=backlog, deployment="iris")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(srv.port), backlog
    finally:
        srv.shutdown()
        srv.server_close()


def test_labelled_rows_come_from_the_review_server_over_http(review: tuple[str, backlog_mod.Backlog]) -> None:
    port, backlog = review
    source = handler.HttpReviewStatsSource(port=int(port), timeout=5)
    pod = {"status": {"podIP": "127.0.0.1"}}
    assert source.labelled(pod) == 0
    page = backlog.pending(limit=3)
    rows = page.rows
    other = next(c for c in rows[1]["classes"] if str(c) != rows[1]["predictionLabel"])
    items = [
        {"requestId": rows[0]["requestId"], "row": rows[0]["row"], "action": "confirmed"},
        {
            "requestId": rows[1]["requestId"],
            "row": rows[1]["row"],
            "action": "corrected",
            "label": str(other),
        },
        {"requestId": rows[2]["requestId"], "row": rows[2]["row"], "action": "skipped"},
    ]
    backlog.save(items, reviewer="ana")
    assert source.labelled(pod) == 2  # skipped rows are no labels
    assert handler.HttpReviewStatsSource(port=1, timeout=1).labelled(pod) is None  # nothing listens
    assert source.labelled({"status": {}}) is None


def test_an_idle_deployment_without_the_dataset_trigger_does_not_read_the_dataset() -> None:
    kube = FakeKube()
    kube.put(model([V1_RECORD]))
    reads: list[str] = []
    get = kube.get

    def counting(api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        reads.append(kind)
        return get(api_version, kind, name, namespace)

    kube.get = counting  # type: ignore[method-assign]
    body = deployment({}, {})
    body["spec"]["retrain"]["triggers"] = {"newDatasetVersion": False}
    handler.reconcile(ctx(kube), body)
    assert "Dataset" not in reads and "Model" in reads
    body["spec"]["retrain"]["triggers"] = {"newDatasetVersion": True}
    handler.reconcile(ctx(kube), body)
    assert "Dataset" in reads
