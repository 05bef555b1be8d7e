"""The HyperparameterSweep API: defaults, what the model refuses, and the CRD rendered from it."""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from mlops_operator.api import sweep
from mlops_operator.crdgen import crd
from mlops_operator.reconcile import sweep_build

ROOT = pathlib.Path(__file__).resolve().parents[2]


def minimal(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trialTemplate": {"datasetRef": {"name": "iris"}, "model": {"estimator": "SVC"}},
        "searchSpace": [{"name": "C", "type": "float", "low": 0.01, "high": 100, "log": True}],
        "objective": {"metric": "log_loss"},
        "algorithm": {"name": "tpe"},
    }
    base.update(spec)
    return {"metadata": {"name": "s", "namespace": "ns"}, "spec": base}


def test_defaults() -> None:
    resource = sweep.HyperparameterSweep.from_body(minimal())
    spec = resource.spec
    assert (spec.max_trials, spec.parallelism, spec.max_failed_trials, spec.seed) == (20, 3, 3, None)
    assert spec.objective.effective_direction() == "minimize"  # log_loss
    assert sweep.Objective(metric="accuracy").effective_direction() == "maximize"
    assert resource.status == sweep.HyperparameterSweepStatus()
    assert spec.trial_template.model.estimator == "SVC"


def test_unknown_fields_and_algorithms_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="maxTrialz"):
        sweep.HyperparameterSweep.from_body(minimal(maxTrialz=3))
    with pytest.raises(pydantic.ValidationError, match=r"algorithm\.name"):
        sweep.HyperparameterSweep.from_body(minimal(algorithm={"name": "bayesian"}))
    with pytest.raises(pydantic.ValidationError, match="parallelism"):
        sweep.HyperparameterSweep.from_body(minimal(parallelism=0))
    with pytest.raises(pydantic.ValidationError, match="populationSize"):
        sweep.HyperparameterSweep.from_body(minimal(algorithm={"name": "cmaes", "populationSize": 2}))


def test_status_written_by_the_framework_on_failure_parses() -> None:
    """framework.failed_status adds reason and message at the top of status: the model accepts them."""
    body = minimal()
    body["status"] = {
        "phase": "Failed",
        "reason": "ChildRejected",
        "message": "422 ...",
        "observedGeneration": 1,
    }
    assert sweep.HyperparameterSweep.from_body(body).status.reason == "ChildRejected"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    doc: dict[str, Any] = crd.build(sweep.HyperparameterSweep)
    return doc


def test_crd_names_printer_columns_and_status_subresource(rendered: dict[str, Any]) -> None:
    names = rendered["spec"]["names"]
    assert names["plural"] == "hyperparametersweeps" and names["kind"] == "HyperparameterSweep"
    assert set(names["shortNames"]) == {"hps", "sweep"}
    version = rendered["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [
        (c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"] if not c.get("priority")
    ]
    assert columns[:3] == [
        ("Progress", ".status.progress"),
        ("Best", ".status.bestTrial.objectiveShort"),
        ("Phase", ".status.phase"),
    ]
    assert "Age" in [c["name"] for c in version["additionalPrinterColumns"]]


def test_crd_schema_rules(rendered: dict[str, Any]) -> None:
    spec = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    space = spec["properties"]["searchSpace"]
    assert space["x-kubernetes-list-type"] == "map" and space["x-kubernetes-list-map-keys"] == ["name"]
    assert space["maxItems"] == sweep.MAX_PARAMETERS
    item_rules = {r["message"] for r in space["items"]["x-kubernetes-validations"]}
    assert {
        "low must be less than high",
        "log scale needs low > 0",
        "step must not exceed high - low",
    } <= item_rules
    assert space["items"]["properties"]["values"]["minItems"] == 1
    spec_rules = {r["message"] for r in spec["x-kubernetes-validations"]}
    assert "algorithm.budget is required for successiveHalving and hyperband" in spec_rules
    assert "searchSpace, objective and algorithm are immutable; create a new sweep" in spec_rules
    template_rules = {r["message"] for r in spec["properties"]["trialTemplate"]["x-kubernetes-validations"]}
    assert "trialTemplate is immutable; create a new sweep" in template_rules
    # Mutable while running: no rule mentions them.
    assert not any(
        "parallelism" in r["rule"] or "maxTrials" in r["rule"] for r in spec["x-kubernetes-validations"]
    )


def test_committed_crd_is_up_to_date() -> None:
    committed = yaml.safe_load((ROOT / "crds" / "mlops.dev_hyperparametersweeps.yaml").read_text())
    assert committed == yaml.safe_load(crd.render(crd.build(sweep.HyperparameterSweep)))


@pytest.mark.parametrize(
    "path",
    sorted([*(ROOT / "examples" / "sweeps").glob("*.yaml"), ROOT / "examples" / "quickstart" / "sweep.yaml"]),
    ids=lambda p: p.name,
)
def test_examples_parse_and_pass_the_operator_checks(path: pathlib.Path) -> None:
    body = yaml.safe_load(path.read_text())
    resource = sweep.HyperparameterSweep.from_body(body)
    assert sweep_build.validate(resource) == []
