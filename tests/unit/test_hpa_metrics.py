"""The HPA's metrics exist: each name in ``HPA_METRICS`` is served by a prometheus-adapter rule of the
chart, and that rule reads a series the model server really exports, over the prediction endpoints
the operator's own autoscaler counts. Renaming the HPA metric, the rule or the server's series
breaks this test (the PromQL itself runs against a real Prometheus in test_prometheus.py)."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml
from prometheus_client import parser as prom_parser

import prometheus_adapter
from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_metrics
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo, telemetry

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mlops-operator"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, from a real server's /metrics after a prediction, a probe, a scrape."""
    server = app_mod.App(bundle_mod.load(demo.build(tmp_path_factory.mktemp("model"))), model_name="iris")
    body = json.dumps({"instances": [ROW]}).encode()
    assert server.handle("POST", "/v1/models/iris:predict", body).status == 200
    assert server.handle("GET", "/v2/health/ready", b"").status == 200
    assert server.handle("GET", "/metrics", b"").status == 200
    response = server.handle("GET", "/metrics", b"")
    out: dict[str, list[dict[str, str]]] = {}
    for family in prom_parser.text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def md(metric: str) -> api.ModelDeployment:
    return api.ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "model": {"storageUri": "pvc://m/x"},
                "autoscaling": {"autoscaler": "hpa", "metric": metric},
            },
        }
    )


@pytest.mark.parametrize("metric", sorted(build.HPA_METRICS))
def test_the_hpa_names_a_metric_the_adapter_derives_from_what_the_server_exports(
    metric: str, exported: dict[str, list[dict[str, str]]]
) -> None:
    hpa = build.horizontal_pod_autoscaler(md(metric))
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert name == build.HPA_METRICS[metric]
    rule = prometheus_adapter.rule_for(name)
    assert rule.series in exported, f"{name} reads {rule.series}, which the server does not export"
    # Per pod: the adapter maps the namespace and pod labels (the PodMonitor adds them) to objects.
    assert rule.resources == {"namespace": "namespace", "pod": "pod"}
    # Prediction requests only, the ones the KPA counts: probes and scrapes would inflate the load.
    endpoint = rule.endpoint_filter
    assert endpoint is not None
    assert all("endpoint" in labels for labels in exported[rule.series])
    for path in (*telemetry.PREDICTION_ENDPOINTS, *modeldeployment_metrics.PREDICTION_ENDPOINTS):
        assert endpoint.fullmatch(path), path
    served = {labels["endpoint"] for labels in exported[rule.series]}
    assert "/v1/models/{name}:predict" in served and len(served) > 1, served  # a probe or scrape too
    for path in served - set(telemetry.PREDICTION_ENDPOINTS):
        assert not endpoint.fullmatch(path), path


def test_the_pod_monitor_adds_the_labels_the_rules_map() -> None:
    text = (CHART / "templates" / "podmonitor.yaml").read_text(encoding="utf-8")
    for label in ("namespace", "pod"):
        assert f"targetLabel: {label}" in text


def test_pods_query_renders_as_prometheus_adapter_does() -> None:
    rule = prometheus_adapter.rule_for(build.HPA_METRICS["rps"])
    query = prometheus_adapter.pods_query(rule, "team-a", ["a-1", "a-2"])
    assert query == (
        'sum by (pod) (rate(mlops_serve_requests_total{namespace="team-a",pod=~"a-1|a-2",'
        'endpoint=~".*(:predict|/infer)"}[1m]))'
    )
    assert (
        yaml.safe_load(prometheus_adapter.RULES_FILE.read_text(encoding="utf-8"))["rules"]["default"] is False
    )
