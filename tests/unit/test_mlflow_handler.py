"""The Model handler with and without an MLflow export: a version registered in a pass reaches MLflow
in that pass, MLflow's outage never costs a version nor readiness, no tracking URI means no
condition and no call; the operator's configuration and the chart's values for it."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import _mlflow_fake
import jsonschema
import pytest
import yaml

from mlops_operator.api import model as api
from mlops_operator.handlers import framework, settings
from mlops_operator.handlers import model as hmodel
from mlops_operator.mlflow_export import client as mclient
from mlops_operator.reconcile import workload as rworkload

NS = "ns"
CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mlops-operator"


@dataclasses.dataclass
class FakeKube:
    objects: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    applied: list[str] = dataclasses.field(default_factory=list)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return copy.deepcopy(self.objects.get(kind, []))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj["metadata"]["name"])
        self.objects.setdefault(obj["kind"], []).append(obj)
        return obj


def context(kube: FakeKube) -> framework.Context:
    return framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=rworkload.WorkloadSettings(),
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        logger=logging.getLogger("test"),
    )


def model_body(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": NS, "uid": "m-uid", "generation": 1},
        "spec": {},
        "status": status or {},
    }


def trainingjob(name: str = "run") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid"},
        "spec": {"registerAs": "iris", "datasetRef": {"name": "d"}, "model": {"estimator": "SVC"}},
        "status": {"phase": "Succeeded", "modelUri": f"pvc://m/{name}", "specHash": "h"},
    }


@pytest.fixture
def fake() -> Iterator[_mlflow_fake.FakeMlflow]:
    server = _mlflow_fake.start()
    yield server
    server.server.shutdown()


@pytest.fixture(autouse=True)
def no_export_afterwards() -> Iterator[None]:
    yield
    hmodel.configure_export(None)


def conditions(status: Any) -> dict[str, Any]:
    return {c["type"]: c for c in status.to_api().get("conditions", [])}


def test_without_a_tracking_uri_nothing_changes(fake: _mlflow_fake.FakeMlflow) -> None:
    assert hmodel.configure_export(None) is None
    kube = FakeKube(objects={"TrainingJob": [trainingjob()]})
    outcome = hmodel.reconcile(context(kube), model_body())
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert status["versionCount"] == 1
    assert "MLflowExported" not in conditions(outcome.status) and "mlflow" not in status
    assert fake.store.calls == []
    # An operator that exported before and does not now drops the stale condition, keeps the state.
    stale = dict(status)
    stale["mlflow"] = {"trackingUri": "http://m", "experiment": "e", "registeredModel": "ns.iris"}
    stale["conditions"] = [
        *status["conditions"],
        {"type": "MLflowExported", "status": "False", "reason": "MLflowUnreachable", "message": "x"},
    ]
    outcome = hmodel.reconcile(context(kube), model_body(stale))
    assert "MLflowExported" not in conditions(outcome.status)
    assert outcome.status.to_api()["mlflow"]["trackingUri"] == "http://m"  # type: ignore[union-attr]


def test_a_version_reaches_mlflow_in_the_pass_that_registers_it(fake: _mlflow_fake.FakeMlflow) -> None:
    hmodel.configure_export(mclient.Config(tracking_uri=fake.url))
    kube = FakeKube(objects={"TrainingJob": [trainingjob()]})
    outcome = hmodel.reconcile(context(kube), model_body())
    assert kube.applied == ["iris-v1"]
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert [v["version"] for v in status["mlflow"]["versions"]] == [1]
    assert (
        status["mlflow"]["registeredModel"] == "ns.iris" and status["mlflow"]["experiment"] == "mlops/ns/iris"
    )
    assert conditions(outcome.status)["MLflowExported"]["status"] == "True"
    assert [e.reason for e in outcome.events] == ["VersionRegistered", "MLflowExported"]
    (run,) = fake.store.runs.values()
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlops.dev/model-uid"] == "m-uid" and tags["mlops.dev/source-name"] == "run"
    # The next pass, with that status stored: no record written, no MLflow call, no Event.
    calls = len(fake.store.calls)
    again = hmodel.reconcile(context(kube), model_body(status))
    assert kube.applied == ["iris-v1"] and len(fake.store.calls) == calls and again.events == []
    assert again.status.to_api() == status  # type: ignore[union-attr]


def test_mlflow_down_costs_no_version_and_no_readiness() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hmodel.configure_export(mclient.Config(tracking_uri=f"http://127.0.0.1:{port}", token="sekrit"))
    kube = FakeKube(objects={"TrainingJob": [trainingjob()]})
    outcome = hmodel.reconcile(context(kube), model_body())
    assert kube.applied == ["iris-v1"]
    status = outcome.status.to_api()  # type: ignore[union-attr]
    assert status["phase"] == "Ready" and status["versionCount"] == 1
    cond = conditions(outcome.status)
    assert cond["Ready"]["status"] == "True"
    assert (cond["MLflowExported"]["status"], cond["MLflowExported"]["reason"]) == (
        "False",
        "MLflowUnreachable",
    )
    assert [(e.type, e.reason) for e in outcome.events] == [
        ("Normal", "VersionRegistered"),
        ("Warning", "MLflowExportFailed"),
    ]
    assert "sekrit" not in json.dumps(status) and all("sekrit" not in e.message for e in outcome.events)
    # Still down on the next pass (backing off or not): no second Warning.
    again = hmodel.reconcile(context(kube), model_body(status))
    assert [e.reason for e in again.events] == []


def test_the_model_handler_forgets_a_deleted_model(fake: _mlflow_fake.FakeMlflow) -> None:
    exporter = hmodel.configure_export(mclient.Config(tracking_uri=fake.url))
    assert exporter is not None and hmodel.REGISTRATION.forget is not None
    exporter._failed("m-uid")
    assert exporter.backing_off("m-uid")
    hmodel.REGISTRATION.forget("m-uid")
    assert not exporter.backing_off("m-uid")


def test_operator_config_reads_the_mlflow_environment() -> None:
    assert settings.OperatorConfig.from_env({}).mlflow is None
    config = settings.OperatorConfig.from_env(
        {
            "MLOPS_MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000",
            "MLOPS_MLFLOW_EXPERIMENT_PREFIX": "teams/",
            "MLFLOW_TRACKING_USERNAME": "op",
            "MLFLOW_TRACKING_PASSWORD": "pw-123",
        }
    )
    assert config.mlflow is not None
    assert (config.mlflow.base_url, config.mlflow.experiment_prefix) == (
        "http://mlflow.mlflow:5000",
        "teams/",
    )
    assert "pw-123" not in repr(config)
    with pytest.raises(ValueError, match="MLOPS_MLFLOW_TRACKING_URI"):
        settings.OperatorConfig.from_env({"MLOPS_MLFLOW_TRACKING_URI": "mlflow:5000"})


def test_startup_configures_the_export_from_the_operator_config(fake: _mlflow_fake.FakeMlflow) -> None:
    before = settings.CONFIG
    try:
        settings.configure(settings.OperatorConfig(mlflow=mclient.Config(tracking_uri=fake.url)))
        hmodel.start_export(logger=logging.getLogger("test"))
        current = hmodel.exporter()
        assert current is not None and current.config.base_url == fake.url
        settings.configure(settings.OperatorConfig())
        hmodel.start_export(logger=logging.getLogger("test"))
        assert hmodel.exporter() is None
    finally:
        settings.configure(before)


# ---------------------------------------------------------------------------------------------
# The chart's values (rendering is checked with helm in tests/integration/test_mlflow_export.py)
# ---------------------------------------------------------------------------------------------


def chart_errors(mlflow: dict[str, Any]) -> list[str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    values["mlflow"] = {**values["mlflow"], **mlflow}
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


def test_chart_defaults_export_nothing() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["mlflow"] == {
        "trackingUri": "",
        "experimentPrefix": "mlops/",
        "credentialsSecret": "",
        "timeoutSeconds": 10,
    }
    assert chart_errors({}) == []


@pytest.mark.parametrize(
    "good",
    [
        {"trackingUri": "http://mlflow.mlflow.svc:5000"},
        {"trackingUri": "https://mlflow.example.com/team", "credentialsSecret": "mlflow-auth"},
        {"timeoutSeconds": 2.5, "experimentPrefix": ""},
    ],
)
def test_chart_accepts_mlflow_values(good: dict[str, Any]) -> None:
    assert chart_errors(good) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"trackingUri": "http://user:pass@mlflow:5000"},  # credentials belong in the Secret
        {"trackingUri": "mlflow:5000"},
        {"credentialsSecret": "Not_A_Name"},
        {"timeoutSeconds": 0},
        {"trakingUri": "http://mlflow"},
    ],
)
def test_chart_refuses_bad_mlflow_values(bad: dict[str, Any]) -> None:
    assert chart_errors(bad) != []


def test_deployment_template_reads_credentials_from_the_secret_only() -> None:
    text = (CHART / "templates" / "deployment.yaml").read_text(encoding="utf-8")
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        block = text[text.index(f"- name: {name}") :][:200]
        assert "secretKeyRef" in block and "optional: true" in block and "value:" not in block
    assert api.CONDITION_MLFLOW == "MLflowExported"
