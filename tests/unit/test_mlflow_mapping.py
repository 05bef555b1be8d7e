"""The pure MLflow mapping: a version record as a run, a registered version and aliases; what is
left to export; the MLflowExported condition and its Events."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from mlops_operator.api import model as api
from mlops_operator.mlflow_export import mapping
from mlops_operator.reconcile import model_build, trainingjob_build

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
DIGEST = "ab" * 32


def model(**spec: Any) -> api.Model:
    return api.Model.from_body(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "iris", "namespace": "team-a", "uid": "uid-1", "generation": 3},
            "spec": spec,
        }
    )


def record(version: int = 1, **extra: Any) -> mapping.Version:
    data: dict[str, Any] = {
        "version": version,
        "model": "iris",
        "sourceKey": "k",
        "created": "2026-02-01T10:00:00Z",
        "modelUri": f"pvc://models/team-a/run-{version}/0123456789abcdef",
        "source": {"kind": "TrainingJob", "name": f"run-{version}", "uid": "tj", "runHash": "h1"},
        "dataset": {"name": "iris", "digest": DIGEST},
        "objective": {"metric": "accuracy", "value": 0.93},
        "metrics": {"accuracy": {"validation": 0.93, "test": 0.91, "cvMean": 0.92}, "f1": {"test": 0.9}},
        "params": {"n_estimators": 100, "max_depth": None, "criterion": "gini", "class_weight": {"a": 1}},
        "estimator": "RandomForestClassifier",
        "codeVersion": "git-abc123",
        "imageId": "sha256:beef",
        "device": "cpu",
        "durationSeconds": 4.25,
    }
    data.update(extra)
    return mapping.Version(version=version, deleted=False, data=data)


TARGET = mapping.target(model(description="iris classifiers"), prefix="mlops/")


def test_names_one_experiment_and_one_registered_model_per_model() -> None:
    assert TARGET.experiment == "mlops/team-a/iris"
    assert TARGET.registered_model == "team-a.iris"  # MLflow refuses '/' and ':' in names
    assert TARGET.description == "iris classifiers"
    assert mapping.target(model(), prefix="").experiment == "team-a/iris"
    assert mapping.run_name(TARGET, 7) == "iris-v7"


def test_filters_find_a_run_by_the_model_uid_and_version() -> None:
    assert (
        mapping.run_filter("uid-1", 3)
        == "tags.`mlops.dev/model-uid` = 'uid-1' and tags.`mlops.dev/model-version` = '3'"
    )
    assert mapping.run_filter("it's", 1).startswith("tags.`mlops.dev/model-uid` = 'it\\'s'")
    assert mapping.version_filter("team-a.iris", "r1") == "name = 'team-a.iris' and run_id = 'r1'"


def test_params_are_strings_as_mlflow_logs_them() -> None:
    assert mapping.params(record()) == [
        {"key": "class_weight", "value": '{"a":1}'},
        {"key": "criterion", "value": "gini"},
        {"key": "max_depth", "value": "None"},
        {"key": "n_estimators", "value": "100"},
    ]
    odd = mapping.params(record(params={"a$b": 1, "x" * 300: "v" * 7000}))
    assert odd[0] == {"key": "a_b", "value": "1"}
    assert len(odd[1]["key"]) == 250 and len(odd[1]["value"]) == 6000
    assert mapping.params(record(params=None)) == []
    assert [mapping.key(k) for k in ("a/./b", "a/", "..", "x/y", "a..b")] == [
        "a_._b",
        "a_",
        "__",
        "x/y",
        "a..b",
    ]


def test_metrics_per_split_and_the_objective_by_its_name() -> None:
    got = {m["key"]: m["value"] for m in mapping.metrics(record(), timestamp=5)}
    assert got == {
        "accuracy_validation": 0.93,
        "accuracy_test": 0.91,
        "accuracy_cvMean": 0.92,
        "f1_test": 0.9,
        "accuracy": 0.93,
    }
    assert {(m["timestamp"], m["step"]) for m in mapping.metrics(record(), timestamp=5)} == {(5, 0)}
    # Values that are no finite numbers are left out (MLflow's JSON has no NaN).
    bad = record(metrics={"a": {"test": float("nan"), "train": "x", "v": True, "ok": 1}}, objective={})
    assert [m["key"] for m in mapping.metrics(bad, timestamp=0)] == ["a_ok"]


def test_run_times_span_the_training_before_registration() -> None:
    created = int(datetime.datetime(2026, 2, 1, 10, tzinfo=datetime.UTC).timestamp() * 1000)
    assert mapping.times(record(), now=NOW) == (created - 4250, created)
    assert mapping.times(record(durationSeconds=None), now=NOW) == (created, created)
    assert mapping.times(record(created=None), now=NOW)[1] == int(NOW.timestamp() * 1000)


def test_run_tags_carry_identity_lineage_and_the_card() -> None:
    tags = mapping.run_tags(TARGET, record())
    assert {k: v for k, v in tags.items() if k != "mlflow.note.content"} == {
        "mlops.dev/model-uid": "uid-1",
        "mlops.dev/model-version": "1",
        "mlops.dev/namespace": "team-a",
        "mlops.dev/model": "iris",
        "mlops.dev/source-kind": "TrainingJob",
        "mlops.dev/source-name": "run-1",
        "mlops.dev/run-hash": "h1",
        "mlops.dev/dataset": "iris",
        "mlops.dev/dataset-digest": DIGEST,
        "mlops.dev/model-uri": "pvc://models/team-a/run-1/0123456789abcdef",
        "mlops.dev/code-version": "git-abc123",
        "mlops.dev/estimator": "RandomForestClassifier",
        "mlops.dev/image": "sha256:beef",
        "mlops.dev/device": "cpu",
        "mlops.dev/objective": "accuracy",
        "mlflow.user": "mlops-operator",
        "mlflow.source.type": "JOB",
        "mlflow.source.name": "team-a/TrainingJob/run-1",
    }
    note = tags["mlflow.note.content"]
    assert note.startswith("**iris v1**") and "| Dataset | iris @ " + DIGEST in note
    assert "| Objective | accuracy = 0.93 |" in note and "| Code version | git-abc123 |" in note
    sweep = record(source={"kind": "HyperparameterSweep", "name": "search", "trial": "search-t3"})
    swept = mapping.run_tags(TARGET, sweep)
    assert swept["mlops.dev/trial"] == "search-t3" and "(trial search-t3)" in swept["mlflow.note.content"]
    # Tag keys and values MLflow accepts, and nothing empty.
    assert all(len(k) <= 250 and v for k, v in tags.items())


def test_model_card_is_the_record_and_where_it_lives() -> None:
    card = json.loads(mapping.card_bytes(TARGET, record()))
    assert card["configMap"] == "iris-v1" and card["modelUid"] == "uid-1" and card["version"] == 1
    assert card["params"]["n_estimators"] == 100 and card["codeVersion"] == "git-abc123"
    assert "sourceKey" not in card and "promote" not in card


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("pvc://models/a/b", "pvc://models/a/b"),
        ("s3://bucket/m/1", "s3://bucket/m/1"),
        # MLflow takes a local path only inside the run's artifacts: the run is linked instead.
        ("file:///models/a", "runs:/r1"),
        ("/models/a", "runs:/r1"),
        ("s3://bucket/../x", "runs:/r1"),
        ("s3://b/" + "x" * 600, "runs:/r1"),  # model_versions.source is 500 characters
        (None, "runs:/r1"),
    ],
)
def test_version_source_links_the_model_directory_when_mlflow_takes_it(uri: str | None, source: str) -> None:
    assert mapping.version_source(uri, "r1") == source


@pytest.mark.parametrize(
    ("alias", "allowed"),
    [
        ("champion", True),
        ("challenger-2", True),
        ("latest", False),
        ("v1", False),
        ("V12", False),
        ("v1a", True),
    ],
)
def test_aliases_mlflow_can_hold(alias: str, allowed: bool) -> None:
    assert mapping.alias_allowed(alias) is allowed


def state(**kw: Any) -> api.MLflowExport:
    base = {
        "tracking_uri": "http://m",
        "experiment": TARGET.experiment,
        "registered_model": TARGET.registered_model,
    }
    return api.MLflowExport(**(base | kw))


def entry(version: int) -> api.MLflowVersion:
    return api.MLflowVersion(version=version, run_id=f"r{version}", model_version=str(version))


def test_state_starts_over_for_another_server_or_name() -> None:
    old = state(exported_through=4, versions=[entry(4)])
    assert mapping.state_for(old, TARGET, tracking_uri="http://m") is old
    assert mapping.state_for(old, TARGET, tracking_uri="http://other").exported_through == 0
    renamed = mapping.target(model(), prefix="ml/")
    fresh = mapping.state_for(old, renamed, tracking_uri="http://m")
    assert (fresh.experiment, fresh.versions) == ("ml/team-a/iris", [])
    assert mapping.state_for(None, TARGET, tracking_uri="http://m").registered_model == "team-a.iris"


def test_pending_skips_the_exported_and_the_deleted_oldest_first() -> None:
    versions = [record(3), record(1), mapping.Version(version=2, deleted=True, data={}), record(4), record(5)]
    s = state(exported_through=1, versions=[entry(4)])
    assert [v.version for v in mapping.pending(versions, s)] == [3, 5]


def test_advance_moves_exported_through_below_the_oldest_left() -> None:
    versions = [record(1), record(2), mapping.Version(version=3, deleted=True, data={}), record(4)]
    s = mapping.advance(state(), versions=versions, exported=[entry(1)], experiment_id="7")
    assert (s.exported_through, [e.version for e in s.versions], s.experiment_id) == (1, [1], "7")
    s = mapping.advance(s, versions=versions, exported=[entry(2), entry(4)], experiment_id=None)
    assert (s.exported_through, [e.version for e in s.versions], s.experiment_id) == (4, [4, 2, 1], "7")


def test_advance_keeps_the_versions_aliases_name_within_the_bound() -> None:
    many = [record(n) for n in range(1, 131)]
    aliases = [api.Alias(name="champion", version=2)]
    s = mapping.advance(
        state(), versions=many, exported=[entry(n) for n in range(1, 131)], experiment_id="1", aliases=aliases
    )
    listed = [e.version for e in s.versions]
    assert len(listed) == api.MAX_STATUS_VERSIONS and 2 in listed and listed[:2] == [130, 129]
    assert s.exported_through == 130


def test_alias_targets_split_known_unknown_and_refused() -> None:
    aliases = [
        api.Alias(name="champion", version=2),
        api.Alias(name="challenger", version=5),
        api.Alias(name="latest", version=2),
    ]
    wanted, unknown, refused = mapping.alias_targets(aliases, state(versions=[entry(2)]))
    assert wanted == {"champion": "2"}
    assert [a.name for a in unknown] == ["challenger"] and refused == ["latest"]


def test_a_pass_that_exported_is_true_with_one_normal_event() -> None:
    s = state(versions=[entry(1)], exported_through=1, experiment_id="1")
    status, events = mapping.with_outcome(
        api.ModelStatus(), mapping.Outcome(state=s, exported=[entry(1)]), now=NOW, generation=3
    )
    cond = status.condition(api.CONDITION_MLFLOW)
    assert cond is not None and (cond.status, cond.reason, cond.observed_generation) == (
        "True",
        "Exported",
        3,
    )
    assert "mlops/team-a/iris" in cond.message and "team-a.iris" in cond.message
    assert status.mlflow == s
    assert events == [
        ("Normal", "MLflowExported", "team-a.iris in mlops/team-a/iris: v1 -> run r1, version 1")
    ]
    quiet, none = mapping.with_outcome(status, mapping.Outcome(state=s), now=NOW, generation=3)
    assert none == [] and quiet.condition(api.CONDITION_MLFLOW) == cond


def test_a_failure_warns_once_per_reason_and_never_touches_readiness() -> None:
    s = state()
    failing = mapping.Outcome(state=s, error_reason="MLflowUnreachable", error_message="GET x: refused")
    ready = api.ModelStatus(phase="Ready").with_condition("Ready", "True", reason="Ready", now=NOW)
    first, events = mapping.with_outcome(ready, failing, now=NOW, generation=1)
    cond = first.condition(api.CONDITION_MLFLOW)
    assert cond is not None and (cond.status, cond.reason) == ("False", "MLflowUnreachable")
    assert "GET x: refused" in cond.message and "retried" in cond.message
    assert [e.reason for e in events] == ["MLflowExportFailed"] and events[0].type == "Warning"
    assert first.phase == "Ready" and first.is_true("Ready")
    again, events = mapping.with_outcome(first, failing, now=NOW, generation=1)
    assert events == []
    other = mapping.Outcome(state=s, error_reason="MLflowAuthFailed", error_message="HTTP 401")
    assert [e.reason for e in mapping.with_outcome(again, other, now=NOW, generation=1)[1]] == [
        "MLflowExportFailed"
    ]
    # Backing off: nothing tried, the condition stays as it was.
    skipped, events = mapping.with_outcome(
        again, mapping.Outcome(state=s, skipped=True), now=NOW, generation=1
    )
    assert events == [] and skipped.condition(api.CONDITION_MLFLOW) == again.condition(api.CONDITION_MLFLOW)


def test_a_pass_cut_short_is_in_progress_not_failed() -> None:
    status, events = mapping.with_outcome(
        api.ModelStatus(),
        mapping.Outcome(state=state(versions=[entry(1)]), exported=[entry(1)], left=4),
        now=NOW,
        generation=1,
    )
    cond = status.condition(api.CONDITION_MLFLOW)
    assert (
        cond is not None
        and (cond.status, cond.reason) == ("False", "Exporting")
        and "4 version(s) to go" in cond.message
    )
    assert [e.type for e in events] == ["Normal"]


def test_refused_aliases_are_named_in_a_true_condition() -> None:
    status, _ = mapping.with_outcome(
        api.ModelStatus(), mapping.Outcome(state=state(), refused_aliases=["latest"]), now=NOW, generation=1
    )
    cond = status.condition(api.CONDITION_MLFLOW)
    assert (
        cond is not None
        and cond.status == "True"
        and "cannot hold" in cond.message
        and "latest" in cond.message
    )


def test_without_export_drops_only_the_condition() -> None:
    s = state(versions=[entry(1)])
    status = api.ModelStatus(mlflow=s).with_condition(
        api.CONDITION_MLFLOW, "True", reason="Exported", now=NOW
    )
    status = status.with_condition("Ready", "True", reason="Ready", now=NOW)
    stripped = mapping.without_export(status)
    assert [c.type for c in stripped.conditions] == ["Ready"] and stripped.mlflow == s
    bare = api.ModelStatus()
    assert mapping.without_export(bare) is bare


def test_the_record_carries_the_code_version_the_trainingjob_names() -> None:
    assert model_build.CODE_VERSION_ANNOTATION == trainingjob_build.CODE_VERSION_ANNOTATION
    tj = {
        "metadata": {"name": "run", "uid": "t", "annotations": {"mlops.dev/code-version": "git-1"}},
        "spec": {"registerAs": "iris", "model": {"estimator": "SVC"}},
        "status": {"phase": "Succeeded", "modelUri": "pvc://m/run", "specHash": "h"},
    }
    candidate = model_build.from_trainingjob(tj, "iris")
    assert candidate is not None and candidate.record["codeVersion"] == "git-1"
    tj["metadata"]["annotations"] = {}
    candidate = model_build.from_trainingjob(tj, "iris")
    assert candidate is not None and "codeVersion" not in candidate.record
