"""The Dataset API: the model's own checks, the rendered CRD (CEL rules, printer columns,
short name, wire names) and what the digest covers."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from mlops_operator.api import dataset as api
from mlops_operator.crdgen import crd

BASE: dict[str, Any] = {"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/datasets/iris"}


def spec(**changes: Any) -> api.DatasetSpec:
    return api.DatasetSpec.model_validate({**BASE, **changes})


def test_defaults() -> None:
    s = spec()
    assert s.data_schema.target == "target" and s.data_schema.on_violation == "fail"
    assert (s.split.train, s.split.validation, s.split.test, s.split.seed) == (0.7, 0.15, 0.15, 42)
    assert s.features.scaling == "standard" and s.features.encoding == "onehot"
    assert s.cleaning.drop_duplicates is True and s.cleaning.imputation.strategy == "median"
    assert s.backoff_limit == 2 and s.active_deadline_seconds == 3600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sources": [{}]}, "exactly one of sklearn, synthetic, file, configMap, http or sql"),
        (
            {"sources": [{"sklearn": {"name": "iris"}, "http": {"url": "https://x.example/d.csv"}}]},
            "exactly one of",
        ),
        ({"sources": []}, "at least 1 item"),
        ({"sources": [{"sklearn": {"name": "mnist"}}]}, "'iris', 'wine'"),
        ({"split": {"train": 0.7, "validation": 0.2, "test": 0.2}}, "spec.split: train + validation + test"),
        ({"split": {"train": 0}}, "greater than 0"),
        ({"storage": "gs://bucket/x"}, "String should match pattern"),
        ({"storage": "s3://Bad_Bucket/x"}, "String should match pattern"),
        ({"sources": [{"http": {"url": "ftp://x/y.csv"}}]}, "String should match pattern"),
        ({"sources": [{"http": {"url": "https://x/y.csv", "sha256": "abc"}}]}, "String should match pattern"),
        ({"sources": [{"file": {"uri": "/data/x.csv"}}]}, "String should match pattern"),
        ({"sources": [{"synthetic": {"samples": 100, "features": 3, "informative": 5}}]}, "must not exceed"),
        (
            {"sources": [{"synthetic": {"samples": 100, "features": 2, "classes": 5}}]},
            "at most 2^informative",
        ),
        (
            {"sources": [{"synthetic": {"samples": 100, "classes": 3, "weights": [0.5, 0.5]}}]},
            "one entry per class",
        ),
        ({"sources": [{"synthetic": {"samples": 100, "noise": 2}}]}, "fraction of flipped labels"),
        ({"cleaning": {"imputation": {"strategy": "constant"}}}, "needs fillValue"),
        (
            {"cleaning": {"imputation": {"columns": [{"name": "a", "strategy": "constant"}]}}},
            "needs fillValue",
        ),
        ({"features": {"selection": {}}}, None),
        ({"schema": {"onViolation": "ignore"}}, "'fail' or 'drop'"),
        ({"resources": {"cpu": "-1"}}, "String should match pattern"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs(change: dict[str, Any], message: str | None) -> None:
    if message is None:  # only the apiserver's CEL rule catches it (checked in the integration test)
        spec(**change)
        return
    with pytest.raises(pydantic.ValidationError) as err:
        spec(**change)
    assert message in str(err.value)


def test_wire_names() -> None:
    s = spec(
        schema={"target": "y", "columns": [{"name": "a", "type": "float", "min": 0}], "onViolation": "drop"},
        sources=[{"configMap": {"name": "rows", "key": "data.csv"}}],
        cleaning={"imputation": {"columns": [{"name": "a", "strategy": "constant", "fillValue": "0"}]}},
    )
    wire = s.to_api()
    assert wire["schema"]["onViolation"] == "drop"
    assert wire["sources"][0]["configMap"] == {"name": "rows", "key": "data.csv"}
    assert wire["cleaning"]["imputation"]["columns"][0]["fillValue"] == "0"
    assert s.cleaning.imputation.for_column("a") == ("constant", "0", True)
    assert s.cleaning.imputation.for_column("b") == ("median", None, False)
    assert s.sources[0].kind() == "config_map"


def test_preparation_covers_data_not_placement() -> None:
    s = spec(resources={"cpu": "1"}, backoffLimit=0)
    prep = s.preparation()
    assert sorted(prep) == ["cleaning", "features", "schema", "sources", "split"]
    assert spec().preparation() == prep  # storage, resources and retries are not in it
    assert spec(split={"seed": 1}).preparation() != prep


def test_resource_from_body_with_status() -> None:
    body = {
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 3},
        "spec": BASE,
        "status": {
            "phase": "Ready",
            "digest": "ab" * 32,
            "digestShort": "abababababab",
            "rows": {"output": 149},
        },
    }
    ds = api.Dataset.from_body(body)
    assert ds.status.phase == "Ready" and ds.status.rows is not None and ds.status.rows.output == 149
    assert api.Dataset.from_body({**body, "status": None}).status == api.DatasetStatus()


def rendered() -> dict[str, Any]:
    (resource,) = crd.discover(["mlops_operator.api.dataset"])
    return crd.build(resource)


def rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_crd_names_and_printer_columns() -> None:
    out = rendered()
    assert out["spec"]["names"]["shortNames"] == ["dset"]
    assert out["spec"]["names"]["categories"] == ["mlops"]
    version = out["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Rows"] == ".status.rows.output"
    assert columns["Digest"] == ".status.digestShort"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert version["subresources"] == {"status": {}}


def test_crd_schema_rules() -> None:
    schema = rendered()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_schema = schema["properties"]["spec"]
    assert sorted(spec_schema["required"]) == ["sources", "storage"]
    assert "schema" in spec_schema["properties"] and "dataSchema" not in spec_schema["properties"]
    source = spec_schema["properties"]["sources"]["items"]
    assert rules(source) == [
        "(has(self.sklearn) ? 1 : 0) + (has(self.synthetic) ? 1 : 0) + (has(self.file) ? 1 : 0) + "
        "(has(self.configMap) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.sql) ? 1 : 0) + "
        "(has(self.feedback) ? 1 : 0) == 1"
    ]
    assert spec_schema["properties"]["sources"]["maxItems"] == 16
    split = spec_schema["properties"]["split"]
    assert split["x-kubernetes-validations"][0]["message"].startswith("spec.split:")
    assert split["properties"]["train"]["default"] == 0.7
    enum = source["properties"]["sklearn"]["properties"]["name"]["enum"]
    assert enum == ["iris", "wine", "breast_cancer", "digits", "diabetes"]
    status = schema["properties"]["status"]["properties"]
    assert status["warnings"]["maxItems"] == api.STATUS_WARNINGS_MAX
    assert status["missing"]["maxItems"] == api.STATUS_MISSING_MAX
    assert status["phase"]["enum"] == ["Pending", "Preparing", "Ready", "Failed"]


# -- split.stratify on a regression target (also a CEL rule: dataset-stratify-regression*.yaml) --


@pytest.mark.parametrize(
    "extra",
    [
        {"sources": [{"sklearn": {"name": "diabetes"}}]},
        {"sources": [{"synthetic": {"task": "regression", "samples": 100}}]},
        {"sources": [{"file": {"uri": "pvc://data/x.csv"}}], "schema": {"task": "regression"}},
    ],
)
def test_stratify_on_a_regression_target_is_refused(extra: dict[str, Any]) -> None:
    body = {"storage": "pvc://data/out", "split": {"stratify": True}, **extra}
    with pytest.raises(pydantic.ValidationError, match=r"spec\.split\.stratify: a regression target"):
        api.DatasetSpec.model_validate(body)


@pytest.mark.parametrize(
    "extra",
    [
        {"sources": [{"sklearn": {"name": "iris"}}]},
        {"sources": [{"file": {"uri": "pvc://data/x.csv"}}]},  # the rows decide: a note, not an error
        {"sources": [{"sklearn": {"name": "diabetes"}}], "schema": {"task": "classification"}},
    ],
)
def test_stratify_is_accepted_when_the_task_may_be_classification(extra: dict[str, Any]) -> None:
    body = {"storage": "pvc://data/out", "split": {"stratify": True}, **extra}
    assert api.DatasetSpec.model_validate(body).split.stratify is True
