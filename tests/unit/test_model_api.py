"""The Model API (and the fields that name a Model on TrainingJobs and sweeps): defaults, what
the models refuse, and the CRD rendered from them."""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from mlops_operator.api import dataset, modeldeployment, sweep, trainingjob
from mlops_operator.api import model as api
from mlops_operator.crdgen import crd
from mlops_operator.reconcile import trainingjob_build

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_and_bounds() -> None:
    resource = api.Model.from_body({"metadata": {"name": "iris", "namespace": "ns"}, "spec": {}})
    assert resource.spec.status_versions == 20 and resource.spec.promotion is None
    rule = api.PromotionRule(metric="accuracy")
    assert (rule.alias, rule.direction, rule.min_improvement) == ("champion", "maximize", 0.0)
    for bad in (
        {"statusVersions": 0},
        {"statusVersions": 101},
        {"promotion": {"metric": "a", "minImprovement": -1}},
    ):
        with pytest.raises(pydantic.ValidationError):
            api.Model.from_body({"metadata": {"name": "iris"}, "spec": bad})
    with pytest.raises(pydantic.ValidationError, match="alias"):
        api.PromotionRule(metric="accuracy", alias="Champion!")


def test_alias_history_uses_from_on_the_wire() -> None:
    move = api.AliasMove(alias="champion", from_=1, to=2, by="annotation", reason="r")
    assert move.to_api()["from"] == 1
    assert api.AliasMove.model_validate({"alias": "c", "from": 3, "to": 4, "by": "x"}).from_ == 3


def _trial_template(**extra: Any) -> dict[str, Any]:
    return {"datasetRef": {"name": "iris"}, "model": {"estimator": "LogisticRegression"}, **extra}


def _sweep(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trialTemplate": _trial_template(),
        "searchSpace": [{"name": "C", "type": "float", "low": 0.01, "high": 10}],
        "objective": {"metric": "accuracy"},
        "algorithm": {"name": "random"},
    }
    base.update(spec)
    return {"metadata": {"name": "s", "namespace": "ns"}, "spec": base}


def test_promote_needs_a_deployment_or_a_model() -> None:
    with pytest.raises(pydantic.ValidationError, match="promote needs modelDeployment, model or both"):
        sweep.HyperparameterSweep.from_body(_sweep(promote={"threshold": 0.5}))
    only_model = sweep.HyperparameterSweep.from_body(_sweep(promote={"model": "iris"}))
    assert only_model.spec.promote is not None and only_model.spec.promote.alias == "champion"
    assert only_model.spec.promote.model_deployment is None
    both = sweep.HyperparameterSweep.from_body(_sweep(promote={"model": "iris", "modelDeployment": "md"}))
    assert both.spec.promote is not None and both.spec.promote.model_deployment == "md"


def test_trials_are_not_registered_one_by_one() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"set promote\.model to register the best trial"):
        sweep.HyperparameterSweep.from_body(_sweep(trialTemplate=_trial_template(registerAs="iris")))


def test_register_as_never_changes_the_run() -> None:
    spec = trainingjob.TrainingJobSpec.model_validate(_trial_template())
    named = trainingjob.TrainingJobSpec.model_validate(_trial_template(registerAs="iris"))
    assert named.register_as == "iris"
    assert trainingjob_build.run_hash(spec) == trainingjob_build.run_hash(named)
    with pytest.raises(pydantic.ValidationError, match="registerAs"):
        trainingjob.TrainingJobSpec.model_validate(_trial_template(registerAs="Iris_Model"))


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    doc: dict[str, Any] = crd.build(api.Model)
    return doc


def test_crd_names_printer_columns_and_status_subresource(rendered: dict[str, Any]) -> None:
    names = rendered["spec"]["names"]
    assert (names["plural"], names["singular"], names["kind"]) == ("models", "model", "Model")
    assert names["shortNames"] == ["mlm"] and names["categories"] == ["mlops"]
    version = rendered["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["jsonPath"], c["type"]) for c in version["additionalPrinterColumns"]]
    assert columns[:3] == [
        ("Latest", ".status.latestVersion", "integer"),
        ("Champion", ".status.champion", "integer"),
        ("Versions", ".status.versionCount", "integer"),
    ]
    assert columns[-1][0] == "Age"


def test_crd_schema_rules(rendered: dict[str, Any]) -> None:
    root = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert {r["rule"] for r in root["x-kubernetes-validations"]} == {"self.metadata.name.size() <= 63"}
    status = root["properties"]["status"]["properties"]
    assert status["aliases"]["x-kubernetes-list-map-keys"] == ["name"]
    assert "from" in status["aliasHistory"]["items"]["properties"]
    assert status["versions"]["maxItems"] == api.MAX_STATUS_VERSIONS
    promote = sweep.HyperparameterSweep.model_json_schema(by_alias=True)["$defs"]["Promote"]
    assert promote["x-kubernetes-validations"][0]["rule"] == "has(self.modelDeployment) || has(self.model)"


def test_committed_crd_is_up_to_date() -> None:
    committed = yaml.safe_load((ROOT / "crds" / "mlops.dev_models.yaml").read_text())
    assert committed == yaml.safe_load(crd.render(crd.build(api.Model)))


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "models").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse(path: pathlib.Path) -> None:
    kinds = {
        "Model": api.Model,
        "HyperparameterSweep": sweep.HyperparameterSweep,
        "TrainingJob": trainingjob.TrainingJob,
        "Dataset": dataset.Dataset,
        "ModelDeployment": modeldeployment.ModelDeployment,
    }
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kinds[doc["kind"]].from_body(doc)
