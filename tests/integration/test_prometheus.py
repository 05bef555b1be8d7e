"""Prometheus (Debian's package) scrapes the operator and a model server; the dashboard's queries and
the alert rules are evaluated against what it stored.

- the operator runs in-process (the session ``operator`` fixture) and reconciles real objects in
  a test namespace; the model server is ``python -m mlops_workloads.serve`` on the demo iris model,
  scraped with the ``namespace``/``modeldeployment``/``pod`` labels the chart's PodMonitor adds;
- every expression of ``files/dashboard.json`` is run through ``/api/v1/query`` (no error), and
  those of the panels this setup can feed must return series;
- the Pods metric of each ``autoscaling.metric`` an HPA reads: its prometheus-adapter rule's
  ``metricsQuery`` (``files/prometheus-adapter-values.yaml``), rendered as the adapter renders it,
  gives the serving pod a positive value while traffic flows;
- the chart's PrometheusRule, rendered by Helm, passes ``promtool check rules``, Prometheus loads
  and evaluates every rule without error, and with test thresholds the serving alerts go pending
  for the right deployment while the operator-down alert stays quiet.

Needs ``prometheus`` and ``promtool`` (Debian: ``apt-get install -y prometheus``).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import prometheus_adapter
from conftest import Cluster, OperatorHandle, free_port, wait_until
from mlops_operator.reconcile import modeldeployment_build as build
from model_server import running

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops-operator"
SERVING_LABELS = {"namespace": "team-a", "modeldeployment": "iris", "pod": "iris-7d9f-abcde"}
# Thresholds low enough that the traffic below makes the serving alerts' expressions true.
TEST_THRESHOLDS = {
    "servingLatencyP95Seconds": "0.000001",
    "driftPsi": "0.05",
    "driftMinRows": "50",
    "lowConfidenceRatio": "0.0001",
}


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: apt-get install -y prometheus", pytrace=False)
    return found


# ---------------------------------------------------------------------------------------------
# the model server
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def model_server(tmp: pathlib.Path) -> Iterator[str]:
    from mlops_workloads.serve import demo

    with running(demo.build(tmp / "model"), tmp, "--drift-window", "200") as (url, _):
        yield url.removeprefix("http://")


def send_traffic(address: str, stop: threading.Event) -> None:
    """Predictions until ``stop``: in-distribution rows, then shifted ones (drift, low confidence)."""
    from mlops_workloads.serve import demo

    x, _ = demo.frame()
    normal = x.to_dict(orient="records")
    shifted = x.assign(petal_length=x["petal_length"] + 3.0, sepal_width=x["sepal_width"] * 0.5)
    # Between versicolor and virginica: the model is unsure of these (low confidence).
    unsure = [
        {"sepal_length": 6.2, "sepal_width": 2.8, "petal_length": 4.85, "petal_width": 1.65, "site": "north"}
    ]
    drifted = [
        row for pair in zip(shifted.to_dict(orient="records"), unsure * len(x), strict=False) for row in pair
    ]
    batch = 0
    while not stop.is_set():
        source = normal if batch < 3 else drifted  # a few normal batches, then the shifted inputs
        start = (batch * 30) % len(source)
        body = json.dumps({"instances": source[start : start + 30]}).encode()
        request = urllib.request.Request(
            f"http://{address}/v1/models/iris:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        batch += 1
        stop.wait(0.1)


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def render_rules(cluster: Cluster, path: pathlib.Path) -> dict[str, Any]:
    args = [
        str(cluster.bin_dir / "helm"),
        "template",
        "x",
        str(CHART),
        "--kube-version",
        "1.34.0",
        "--set",
        "prometheusRule.force=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]
    for key, value in TEST_THRESHOLDS.items():
        args += ["--set-json", f"prometheusRule.thresholds.{key}={value}"]  # --set would pass a string
    rendered = yaml.safe_load(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    spec: dict[str, Any] = rendered["spec"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return spec


@contextlib.contextmanager
def prometheus(tmp: pathlib.Path, operator_port: int, serving: str, rules: pathlib.Path) -> Iterator[str]:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            # job="mlops-operator", as the chart's ServiceMonitor names it (jobLabel).
            {"job_name": "mlops-operator", "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
            # The labels the chart's PodMonitor relabels onto serving pods.
            {
                "job_name": "mlops-serving",
                "static_configs": [{"targets": [serving], "labels": SERVING_LABELS}],
            },
        ],
    }
    config_path = tmp / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    check = subprocess.run(
        [_binary("promtool"), "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base) or proc.poll() is not None, timeout=60, what="Prometheus to be ready")
        assert proc.poll() is None, (tmp / "prometheus.log").read_text(errors="replace")[-3000:]
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(base: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
        return bool(response.status == 200)
    return False


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        payload = json.loads(response.read())
    assert payload["status"] == "success", payload
    return payload["data"]


def query(base: str, expr: str) -> list[dict[str, Any]]:
    data = api(base, "query", query=expr)
    assert data["resultType"] in {"vector", "scalar"}, data
    result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data["result"]]
    return result


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", "15s")
                .replace('"$namespace"', '".*"')
                .replace('"$modeldeployment"', '".*"')
            )
            assert "$" not in expr, expr
            out.append((panel["title"], expr))
    return out


# Panels whose queries must return series here: the operator's always-present ones, and every
# serving panel the traffic below feeds (5xx share and input warnings have nothing to show).
MUST_HAVE_DATA = {
    "Operator pods up",
    "Failed TrainingJobs",
    "Finished in the last hour",
    "Prediction requests per second",
    "Prediction latency",
    "Replicas serving",
    "In-flight requests",
    "Low-confidence rate",
    "Drift (PSI) per feature",
    "Predictions by class",
    "Models served",
}


# ---------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------


def _sample_objects(namespace: str) -> list[dict[str, Any]]:
    """The example GitOps workloads (one of each kind), moved into the test namespace."""
    out = []
    for path in sorted((ROOT / "examples" / "gitops" / "workloads" / "team-a").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and str(doc.get("apiVersion", "")).startswith("mlops.dev/"):
                out.append(dict(doc, metadata=dict(doc["metadata"], namespace=namespace)))
    return out


def assert_hpa_metric_is_served(base: str, metric: str) -> None:
    """The PromQL prometheus-adapter runs for the HPA's Pods metric gives the serving pod a load."""
    rule = prometheus_adapter.rule_for(build.HPA_METRICS[metric])
    namespace, pod = SERVING_LABELS["namespace"], SERVING_LABELS["pod"]
    promql = prometheus_adapter.pods_query(rule, namespace, [pod])

    def positive() -> list[dict[str, Any]]:
        return [s for s in query(base, promql) if float(s["value"][1]) > 0]

    series = wait_until(positive, timeout=60, what=f"a positive {rule.name} (autoscaling.metric {metric})")
    assert [s["metric"] for s in series] == [{"pod": pod}], promql
    assert query(base, prometheus_adapter.pods_query(rule, namespace, ["another-pod"])) == []


def test_prometheus_scrapes_and_the_dashboard_and_alerts_find_their_series(
    cluster: Cluster, operator: OperatorHandle, namespace: str, tmp_path: pathlib.Path
) -> None:
    from mlops_operator.handlers import framework

    rules_path = tmp_path / "rules.yaml"
    spec = render_rules(cluster, rules_path)
    checked = subprocess.run(
        [_binary("promtool"), "check", "rules", str(rules_path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alert_names = [r["alert"] for g in spec["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(alert_names)} rules found" in checked.stdout

    # Give the operator something to reconcile: one object of each kind it handles.
    registered = {reg.kind for reg in framework.REGISTRY.values()}
    for obj in _sample_objects(namespace):
        if obj["kind"] in registered:
            cluster.apply(obj, namespace)

    def counted(kind: str) -> bool:
        # The object gauge moves after the reconcile counter, at the end of the same pass.
        text = operator.metrics()
        return all(
            f'{family}{{kind="{kind}"' in text
            for family in ("mlops_operator_reconcile_total", "mlops_operator_objects")
        )

    for kind in registered:
        wait_until(
            lambda kind=kind: counted(kind),
            timeout=60,
            what=f"a {kind} reconcile and object count in the operator's /metrics",
        )

    stop = threading.Event()
    with (
        model_server(tmp_path) as serving,
        prometheus(tmp_path, operator.metrics_port, serving, rules_path) as base,
    ):
        traffic = threading.Thread(target=send_traffic, args=(f"{serving}", stop), daemon=True)
        traffic.start()
        try:
            wait_until(
                lambda: len(query(base, "up == 1")) == 2, timeout=60, what="both targets up in Prometheus"
            )
            wait_until(
                lambda: query(base, "max(mlops_serve_drift_window_rows) >= 100"),
                timeout=90,
                what="drift-window rows to be scraped",
            )
            empty: list[str] = []

            def fed() -> bool:
                empty[:] = [t for t, e in dashboard_queries() if t in MUST_HAVE_DATA and not query(base, e)]
                return not empty

            with contextlib.suppress(AssertionError):
                wait_until(fed, timeout=90, what="every fed dashboard panel to return series")
            assert not empty, f"dashboard panels without data: {sorted(set(empty))}"
            for metric in sorted(build.HPA_METRICS):
                assert_hpa_metric_is_served(base, metric)
        finally:
            stop.set()
            traffic.join(timeout=30)

        results = {}
        for title, expr in dashboard_queries():
            results[(title, expr)] = query(base, expr)  # every query is valid PromQL here
        for (title, expr), series in results.items():
            if title in MUST_HAVE_DATA:
                assert series, f"panel {title!r} has no data: {expr}"
        by_title = {title: series for (title, _), series in results.items()}
        assert {s["metric"]["modeldeployment"] for s in by_title["Replicas serving"]} == {"iris"}
        assert {s["metric"]["class"] for s in by_title["Predictions by class"]} >= {"0", "1", "2"}
        assert {s["metric"]["feature"] for s in by_title["Drift (PSI) per feature"]} >= {
            "petal_length",
            "sepal_width",
        }
        for kind in registered:
            assert query(base, f'mlops_operator_reconcile_total{{job="mlops-operator", kind="{kind}"}}'), kind
            assert query(base, f'mlops_operator_objects{{kind="{kind}"}}'), kind

        # Prometheus loaded and evaluated every rule without error.
        def evaluated() -> list[dict[str, Any]]:
            rules = [r for g in api(base, "rules")["groups"] for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else []

        rules = wait_until(evaluated, timeout=30, what="every rule to be evaluated")
        assert sorted(r["name"] for r in rules) == sorted(alert_names)
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

        def pending() -> set[tuple[str, str, str]]:
            return {
                (
                    a["metric"]["alertname"],
                    a["metric"].get("namespace", ""),
                    a["metric"].get("modeldeployment", ""),
                )
                for a in query(base, "ALERTS")
            }

        wanted = {
            (name, "team-a", "iris")
            for name in ("MlopsServingLatencyHigh", "MlopsModelDrift", "MlopsLowConfidenceHigh")
        }
        seen: set[tuple[str, str, str]] = set()

        def all_pending() -> bool:
            seen.clear()
            seen.update(pending())
            return wanted <= seen

        with contextlib.suppress(AssertionError):
            wait_until(all_pending, timeout=30, what="the serving alerts to go pending")
        assert wanted <= seen, f"pending or firing: {sorted(seen)}; wanted: {sorted(wanted)}"
        firing = seen
        assert not any(name == "MlopsOperatorDown" for name, _, _ in firing)
        assert not any(name == "MlopsServingErrorsHigh" for name, _, _ in firing)
