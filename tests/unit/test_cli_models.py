"""``mlops models``: listing, comparing two versions, moving an alias and retiring a version,
against a fake ``Kube`` holding plain dicts (the records are what the reconciler writes)."""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import _fake_kube
import pytest
import yaml

from mlops_operator import cli
from mlops_operator.api import model as api
from mlops_operator.cli import kube
from mlops_operator.reconcile import model as rmodel

NS = "team"


def _tj(name: str, value: float, depth: int, done: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {
            "registerAs": "iris",
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"max_depth": depth}},
        },
        "status": {
            "phase": "Succeeded",
            "modelUri": f"pvc://models/{NS}/{name}",
            "specHash": f"h-{name}",
            "datasetDigest": "ab" * 32,
            "objectiveMetric": "accuracy",
            "objectiveValue": value,
            "metrics": {"accuracy": {"validation": value, "test": value - 0.02}},
            "completionTime": done,
        },
    }


def world() -> dict[str, list[dict[str, Any]]]:
    """A Model with two versions and a champion, as the reconciler leaves it."""
    body: dict[str, Any] = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "iris",
            "namespace": NS,
            "uid": "m-uid",
            "generation": 1,
            "annotations": {"alias.mlops.dev/champion": "1"},
            "managedFields": [
                {
                    "manager": "mlops-cli",
                    "operation": "Apply",
                    "fieldsV1": {"f:metadata": {"f:annotations": {"f:alias.mlops.dev/champion": {}}}},
                }
            ],
        },
        "spec": {},
    }
    jobs = [_tj("a", 0.9, 3, "2026-03-01T10:00:00Z"), _tj("b", 0.95, 8, "2026-03-01T11:00:00Z")]
    plan = rmodel.plan(
        api.Model.from_body(body),
        observed=rmodel.Observed(trainingjobs=jobs, managed_fields=body["metadata"]["managedFields"]),
        now=datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC),
    )
    body["status"] = plan.status.to_api()
    return {"Model": [body], "ConfigMap": plan.create_once}


class FakeKube(_fake_kube.FakeKube):
    """The read-only fake, recording what the CLI applies and patches."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(objects)
        self.applied: list[tuple[dict[str, Any], str]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []

    def apply(self, obj: dict[str, Any], *, field_manager: str = "mlops-operator") -> dict[str, Any]:
        self.applied.append((obj, field_manager))
        return obj

    def patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict[str, Any]
    ) -> None:
        self.patched.append((kind, name, patch))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    k = FakeKube(world())
    monkeypatch.setattr(kube, "connect", lambda **_: kube.Session(kube=k, namespace=NS))  # type: ignore[arg-type]
    return k


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_models_lists_versions_aliases_and_moves(fake: FakeKube) -> None:
    code, text, _ = run("models")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "iris  (2 versions, latest v2)  champion=v1"
    assert lines[1].startswith("  v2") and "accuracy=0.95" in lines[1] and "from TrainingJob b" in lines[1]
    assert lines[2].startswith("  v1") and lines[2].endswith("[champion]")
    assert "moved champion (new) -> v1 by annotation (mlops-cli)" in text
    assert fake.closed


def test_models_json_and_yaml(fake: FakeKube) -> None:
    code, text, _ = run("models", "-o", "json")
    data = json.loads(text)
    assert code == 0 and data[0]["name"] == "iris" and [v["version"] for v in data[0]["versions"]] == [2, 1]
    assert data[0]["aliases"][0] == {"name": "champion", "version": 1, "since": "2026-03-01T12:00:00Z"}
    _, text, _ = run("models", "-o", "yaml")
    assert yaml.safe_load(text)[0]["versionCount"] == 2


def test_compare_shows_metrics_params_data_and_a_diff(fake: FakeKube) -> None:
    code, text, _ = run("models", "compare", "iris", "1", "v2")
    assert code == 0
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert "0.9" in rows["accuracy (validation)"] and "0.95" in rows["accuracy (validation)"]
    assert rows["accuracy (validation)"].endswith(" *")
    assert rows["param max_depth"].split()[-3:] == ["3", "8", "*"]
    assert not rows["data digest"].endswith("*")  # the same data
    assert "--- iris-v1" in text and "+++ iris-v2" in text and '+  "version": 2' in text


def test_alias_applies_the_annotation_as_mlops_cli(fake: FakeKube) -> None:
    code, text, _ = run("models", "alias", "iris", "challenger", "2")
    assert code == 0 and "challenger -> v2" in text
    obj, manager = fake.applied[0]
    assert manager == "mlops-cli"
    # The champion annotation mlops-cli applied before is sent again (apply would drop it otherwise).
    assert obj["metadata"]["annotations"] == {
        "alias.mlops.dev/champion": "1",
        "alias.mlops.dev/challenger": "2",
    }
    assert set(obj) == {"apiVersion", "kind", "metadata"}, "never a spec field"


def test_asking_again_for_the_annotated_version_writes_it_the_other_way(fake: FakeKube) -> None:
    run("models", "alias", "iris", "champion", "1")
    assert fake.applied[0][0]["metadata"]["annotations"]["alias.mlops.dev/champion"] == "v1"


def test_alias_refuses_unknown_or_deleted_versions_and_bad_names(fake: FakeKube) -> None:
    code, _, err = run("models", "alias", "iris", "champion", "7")
    assert code == 1 and "Model iris has no version 7" in err
    code, _, err = run("models", "alias", "iris", "Champ!", "1")
    assert code == 1 and "DNS label" in err
    code, _, err = run("models", "alias", "iris", "champion", "latest")
    assert code == 1 and "'latest' is not a version number" in err
    fake.objects["ConfigMap"][0]["metadata"]["labels"][api.LABEL_DELETED] = "true"
    code, _, err = run("models", "alias", "iris", "champion", "1")
    assert code == 1 and "was deleted" in err
    assert fake.applied == []


def test_delete_version_labels_the_record(fake: FakeKube) -> None:
    code, text, _ = run("models", "delete-version", "iris", "2")
    assert code == 0 and "tombstone" in text
    assert fake.patched == [("ConfigMap", "iris-v2", {"metadata": {"labels": {api.LABEL_DELETED: "true"}}})]


def test_wrong_argument_counts_say_the_usage(fake: FakeKube) -> None:
    code, _, err = run("models", "compare", "iris", "1")
    assert code == 1 and "usage: mlops models compare MODEL V1 V2" in err
