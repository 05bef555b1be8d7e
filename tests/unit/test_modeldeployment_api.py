"""ModelDeployment API model: the rules pydantic enforces and the CEL the CRD carries."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from mlops_operator.api import modeldeployment as api


def spec(**extra: Any) -> dict[str, Any]:
    return {"model": {"storageUri": "pvc://models/iris"}, **extra}


def test_defaults() -> None:
    s = api.ModelDeploymentSpec.model_validate(spec())
    assert s.stage == "staging" and s.low_confidence_threshold == 0.6 and s.max_batch_rows == 1000
    assert s.drift.threshold == 0.2 and s.replicas is None and s.autoscaling is None
    assert s.to_api()["model"] == {"storageUri": "pvc://models/iris"}


@pytest.mark.parametrize(
    "model",
    [{}, {"storageUri": "pvc://a/b", "trainingJobRef": "t"}, {"sweepRef": "s", "trainingJobRef": "t"}],
)
def test_exactly_one_model_source(model: dict[str, Any]) -> None:
    with pytest.raises(
        pydantic.ValidationError, match="exactly one of modelRef, trainingJobRef, sweepRef or storageUri"
    ):
        api.ModelDeploymentSpec.model_validate({"model": model})


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"replicas": 2, "autoscaling": {}}, "either replicas or autoscaling"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed"),
        ({"autoscaling": {"panicWindowSeconds": 60, "stableWindowSeconds": 60}}, "panicWindowSeconds"),
        ({"lowConfidenceThreshold": 1.5}, "less than or equal to 1"),
        (
            {"canary": {"model": {"storageUri": "file:///m"}, "trafficPercent": 101}},
            "less than or equal to 100",
        ),
        ({"stage": "prod"}, "staging"),
        ({"autoscaling": {"metric": "cpu"}}, "concurrency"),
        ({"maxBatchRows": 0}, "greater than or equal to 1"),
        ({"model": {"storageUri": "gs://bucket/x"}}, "pattern"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_specs_are_refused(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        api.ModelDeploymentSpec.model_validate(spec(**extra))


def _walk(node: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    if isinstance(node, dict):
        rules.extend(node.get("x-kubernetes-validations", []))
        for value in node.values():
            rules.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            rules.extend(_walk(value))
    return rules


def test_cel_rules_are_declared() -> None:
    rules = {r["rule"] for r in _walk(api.ModelDeployment.model_json_schema())}
    assert api.EXACTLY_ONE_MODEL in rules
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert "!(has(self.replicas) && has(self.autoscaling))" in rules


def test_crd_metadata() -> None:
    meta = api.ModelDeployment.crd
    assert meta.short_names == ("md",)
    assert [c.name for c in meta.printer_columns] == ["Phase", "Ready", "URL", "Stage", "Version", "Age"]


def test_status_round_trip_is_small() -> None:
    status = api.ModelDeploymentStatus(
        autoscaler=api.AutoscalerState(
            samples=[api.AutoscalerSample(t=1e9 + i, v=12.5) for i in range(120)],
            recommendations=[api.AutoscalerRecommendation(t=1e9 + i, n=3) for i in range(60)],
        )
    )
    wire = status.to_api()
    assert api.ModelDeploymentStatus.model_validate(wire) == status
    import json

    assert len(json.dumps(wire)) < 12_000


def test_serve_config() -> None:
    config = api.ServeConfig.model_validate({"modelDir": "/m", "workers": 2})
    assert config.port == 8080 and config.workers == 2
    with pytest.raises(pydantic.ValidationError):
        api.ServeConfig.model_validate({"modelDir": "/m", "port": 70000})
