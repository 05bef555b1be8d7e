"""The TrainingJob API: spec defaults, checks the apiserver cannot do, and the rendered CRD."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from mlops_operator.api import trainingjob as api
from mlops_operator.crdgen import crd


def spec(**kw: Any) -> api.TrainingJobSpec:
    base: dict[str, Any] = {"datasetRef": {"name": "iris"}, "model": {"estimator": "LogisticRegression"}}
    base.update(kw)
    return api.TrainingJobSpec.model_validate(base)


def test_defaults_follow_the_estimator_task() -> None:
    assert spec().effective_metrics() == ["accuracy", "f1", "roc_auc"]
    assert spec().effective_objective() == ("accuracy", "maximize")
    ridge = spec(model={"estimator": "Ridge"})
    assert ridge.effective_metrics() == ["rmse", "mae", "r2"]
    assert ridge.effective_objective() == ("rmse", "minimize")
    assert spec(model={"estimator": "SVC"}).effective_metrics() == ["accuracy", "f1"]
    assert spec(metrics=["log_loss"], objective={"metric": "log_loss"}).effective_objective() == (
        "log_loss",
        "minimize",
    )


def test_validate_spec_names_the_field() -> None:
    assert api.validate_spec(spec(model={"estimator": "LogisticRegression", "params": {"C": 1.0}})) == []
    assert api.validate_spec(spec(model={"estimator": "SVC"}, metrics=["roc_auc"])) == [
        "metrics: roc_auc needs predicted probabilities, which SVC does not give; "
        "set model.params probability: true"
    ]
    assert (
        api.validate_spec(
            spec(model={"estimator": "SVC", "params": {"probability": True}}, metrics=["roc_auc"])
        )
        == []
    )
    assert api.validate_spec(spec(metrics=["rmse"])) == [
        "metrics: rmse does not apply to classification (LogisticRegression)"
    ]
    assert api.validate_spec(spec(metrics=["f1"], objective={"metric": "accuracy"})) == [
        "objective.metric: accuracy must be one of spec.metrics"
    ]
    assert api.validate_spec(spec(model={"estimator": "LogisticRegression", "params": {"max_iter": -1}})) == [
        "model.params.max_iter: must be an int >= 0, got -1"
    ]
    # Your own image may use a GPU with any estimator name.
    assert api.validate_spec(spec(resources={"gpu": 1}, image="me/trainer:1")) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"crossValidation": {"folds": 1}},
        {"crossValidation": {"folds": 21}},
        {"model": {"estimator": "NotAModel"}},
        {"metrics": ["accuracy", "bogus"]},
        {"runPolicy": {"backoffLimit": -1}},
        {"datasetRef": {"name": "Bad_Name"}},
        {"unknownField": 1},
    ],
)
def test_schema_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        spec(**bad)


def _rules(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.extend(node.get("x-kubernetes-validations", []))
        for value in node.values():
            out.extend(_rules(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_rules(value))
    return out


def test_crd_renders_with_columns_short_name_and_rules() -> None:
    definition = crd.build(api.TrainingJob)
    names = definition["spec"]["names"]
    assert names["shortNames"] == ["tj"] and names["kind"] == "TrainingJob"
    version = definition["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Estimator",
        "Objective",
        "Duration",
        "Data",
        "Reason",
        "Model",
        "Trainer",
        "Workers",
        "Device",
        "Age",
    ]
    schema = version["schema"]["openAPIV3Schema"]
    spec_schema = schema["properties"]["spec"]
    assert spec_schema["properties"]["model"]["properties"]["params"]["x-kubernetes-preserve-unknown-fields"]
    assert "XGBClassifier" in spec_schema["properties"]["model"]["properties"]["estimator"]["enum"]
    messages = [r["message"] for r in _rules(spec_schema)]
    assert "objective.metric must be one of spec.metrics" in messages
    assert any(m.startswith("resources.gpu: only ") and "XGBClassifier, XGBRegressor" in m for m in messages)


def test_transition_rules_guard_immutable_fields_while_running() -> None:
    rules = api.TrainingJob.model_json_schema()["x-kubernetes-validations"]
    assert [r["fieldPath"] for r in rules] == [
        *(f".spec.{f}" for f in api.IMMUTABLE_WHILE_RUNNING),
        ".spec.objective",  # a trainer names its objective (on the resource: a sweep's template need not)
    ]
    model_rule = next(r for r in rules if r["fieldPath"] == ".spec.model")
    assert "oldSelf.status.phase != 'Running'" in model_rule["rule"]
    assert "self.spec.model == oldSelf.spec.model" in model_rule["rule"]
    assert model_rule["message"].startswith("spec.model cannot change while the TrainingJob is Running")
