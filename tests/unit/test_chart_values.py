"""values.schema.json: the chart's defaults validate, and the mistakes people make are refused.

Helm validates values against the schema on install, upgrade, lint and template; this test runs
the same JSON Schema (draft-07) with the reference Python validator, without a cluster. The
integration tier checks that Helm itself refuses the same bad values.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
from typing import Any

import jsonschema
import pytest
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mlops-operator"


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return loaded


def defaults() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return loaded


def errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(values)
    )


def with_(path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(defaults())
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


def test_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(schema())


def test_defaults_validate() -> None:
    assert errors(defaults()) == []


def test_every_value_is_declared_and_described() -> None:
    """additionalProperties is false where keys are fixed (typos fail); every key says what it does."""

    # Kubernetes structs passed through as they are: only their risky fields are pinned.
    passthrough = {"podSecurityContext", "securityContext"}

    def walk(values: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(values, dict) or "properties" not in node or path in passthrough:
            return
        assert node.get("additionalProperties") is False, path
        for key, value in values.items():
            assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
            child = node["properties"][key]
            assert child.get("description") or "properties" in child, f"{path}.{key} has no description"
            walk(value, child, f"{path}.{key}" if path else key)

    walk(defaults(), schema(), "")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("replicas", 3),
        ("replicas", 0),
        ("peering.enabled", True),
        ("watch", {"scope": "namespaces", "namespaces": ["team-a", "team-b"]}),
        ("watch", {"scope": "release", "namespaces": []}),
        ("image.digest", "sha256:" + "a" * 64),
        ("imagePullSecrets", [{"name": "regcred"}, "other"]),
        ("resources", {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}}),
        ("prometheusRule.thresholds.servingLatencyP95Seconds", 0.25),
        ("serviceMonitor.interval", "1m30s"),
        ("tolerations", [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}]),
        ("priorityClassName", "platform-controllers"),
        (
            "grafanaDashboard",
            {"enabled": True, "namespace": "monitoring", "labels": {"grafana_dashboard": "1"}},
        ),
    ],
)
def test_good_values_accepted(path: str, value: Any) -> None:
    assert errors(with_(path, value)) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("replicas", -1, r"replicas: -1 is less than the minimum of 0"),
        ("replicas", "2", r"replicas: '2' is not of type 'integer'"),
        # More than one replica without peering would reconcile every object twice.
        (
            "peering",
            {"enabled": False, "name": "", "installCRDs": True},
            r"peering.enabled: .*should not be valid",
        ),
        ("watch", {"scope": "everything", "namespaces": []}, r"watch.scope: 'everything' is not one of"),
        ("watch", {"scope": "namespaces", "namespaces": []}, r"watch.namespaces: \[\] should be non-empty"),
        (
            "watch",
            {"scope": "namespaces", "namespaces": ["Team_A"]},
            r"watch.namespaces.0: 'Team_A' does not match",
        ),
        ("watch", {"scope": "cluster", "namespaces": ["a"]}, r"watch.namespaces: .* expected to be empty"),
        ("image.pullPolicy", "Sometimes", r"image.pullPolicy: 'Sometimes' is not one of"),
        ("image.digest", "latest", r"image.digest: 'latest' does not match"),
        ("imageTag", "1.0", r"Additional properties are not allowed \('imageTag' was unexpected\)"),
        ("resources", {"requests": {"memory": "lots"}}, r"resources.requests.memory: 'lots' does not match"),
        ("securityContext.allowPrivilegeEscalation", True, r"allowPrivilegeEscalation: False was expected"),
        ("securityContext.privileged", True, r"privileged: False was expected"),
        ("podSecurityContext.runAsNonRoot", False, r"runAsNonRoot: True was expected"),
        ("podSecurityContext.runAsUser", 0, r"runAsUser: 0 is less than the minimum of 1"),
        ("metrics.port", 70000, r"metrics.port: 70000 is greater than the maximum of 65535"),
        ("serviceMonitor.interval", "30 seconds", r"serviceMonitor.interval: '30 seconds' does not match"),
        (
            "prometheusRule.thresholds.servingErrorRatio",
            1.5,
            r"servingErrorRatio: 1.5 is greater than the maximum",
        ),
        ("prometheusRule.thresholds.driftPsi", 0, r"driftPsi: 0 is less than or equal to the minimum of 0"),
        ("logging.format", "xml", r"logging.format: 'xml' is not one of"),
        ("maxWorkers", 0, r"maxWorkers: 0 is less than the minimum of 1"),
        ("nodeSelector", {"disk": 1}, r"nodeSelector.disk: 1 is not of type 'string'"),
        ("fullnameOverride", "Bad_Name", r"fullnameOverride: 'Bad_Name' does not match"),
    ],
)
def test_bad_values_refused(path: str, value: Any, message: str) -> None:
    values = with_(path, value)
    if path == "peering":
        values["replicas"] = 2
    found = errors(values)
    assert any(re.search(message, e) for e in found), found
