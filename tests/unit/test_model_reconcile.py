"""The Model registry's pure reconciler: versions from TrainingJobs and sweeps, numbering,
idempotence across passes and crashes, aliases moved by sweeps, the promotion rule and the
annotation, deleted versions."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from typing import Any

from mlops_operator.api import model as api
from mlops_operator.reconcile import model as rmodel
from mlops_operator.reconcile import model_build

NS = "team"
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def model_body(
    *, spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, status: Any = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "iris",
            "namespace": NS,
            "uid": "model-uid",
            "generation": 1,
            "annotations": dict(annotations or {}),
        },
        "spec": dict(spec or {}),
        "status": status or {},
    }


def tj(
    name: str,
    *,
    value: float = 0.9,
    register_as: str | None = "iris",
    phase: str = "Succeeded",
    done: str = "2026-03-01T10:00:00Z",
    spec_hash: str | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{name}"}
    if owner_uid:
        meta["ownerReferences"] = [{"kind": "HyperparameterSweep", "uid": owner_uid, "controller": True}]
    spec: dict[str, Any] = {
        "datasetRef": {"name": "iris-data"},
        "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
    }
    if register_as:
        spec["registerAs"] = register_as
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": phase,
            "modelUri": f"pvc://models/{NS}/{name}/abc",
            "modelVersion": "abc0123456789def",
            "specHash": spec_hash or f"hash-{name}",
            "datasetDigest": "d" * 64,
            "objectiveMetric": "accuracy",
            "objectiveValue": value,
            "metrics": {"accuracy": {"validation": value, "test": value - 0.01}},
            "completionTime": done,
            "imageId": "sha256:feed",
            "device": "cpu",
            "durationSeconds": 12.0,
            "modelS3": {"endpoint": "http://10.0.0.5:9000", "secretRef": {"name": "s3-creds"}},
        },
    }


def sweep_body(
    name: str = "search",
    *,
    value: float = 0.97,
    trial: str = "search-trial-3",
    alias: str | None = None,
    threshold: float | None = None,
    phase: str = "Succeeded",
) -> dict[str, Any]:
    promote: dict[str, Any] = {"model": "iris"}
    if alias:
        promote["alias"] = alias
    if threshold is not None:
        promote["threshold"] = threshold
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "HyperparameterSweep",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {"objective": {"metric": "accuracy", "direction": "maximize"}, "promote": promote},
        "status": {
            "phase": phase,
            "completionTime": "2026-03-01T11:00:00Z",
            "bestTrial": {
                "name": trial,
                "index": 3,
                "params": {"max_depth": 5},
                "objectiveValue": value,
                "modelUri": f"pvc://models/{NS}/{trial}/xyz",
            },
        },
    }


@dataclasses.dataclass
class World:
    """A Model, its version ConfigMaps (what ``create_once`` wrote) and the sources, pass after pass."""

    body: dict[str, Any]
    trainingjobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sweeps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config_maps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    managed_fields: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def plan(self, now: datetime.datetime = NOW) -> Any:
        resource = api.Model.from_body(self.body)
        return rmodel.plan(
            resource,
            observed=rmodel.Observed(
                config_maps=copy.deepcopy(self.config_maps),
                trainingjobs=self.trainingjobs,
                sweeps=self.sweeps,
                managed_fields=self.managed_fields,
            ),
            now=now,
        )

    def step(self, now: datetime.datetime = NOW, *, write_status: bool = True) -> dict[str, Any]:
        plan = self.plan(now)
        names = {c["metadata"]["name"] for c in self.config_maps}
        for manifest in plan.create_once:
            assert manifest["metadata"]["name"] not in names, "a record written twice"
            self.config_maps.append(copy.deepcopy(manifest))
        status: dict[str, Any] = plan.status.to_api()
        if write_status:
            self.body["status"] = status
        self.events += [tuple(e) for e in plan.events]
        return status

    def record(self, version: int) -> dict[str, Any]:
        cm = next(c for c in self.config_maps if c["metadata"]["labels"][api.LABEL_VERSION] == str(version))
        data: dict[str, Any] = json.loads(cm["data"][api.RECORD_KEY])
        return data


def reasons(world: World) -> list[str]:
    return [e[1] for e in world.events]


def test_a_succeeded_trainingjob_becomes_version_1_with_its_lineage() -> None:
    world = World(model_body(), trainingjobs=[tj("run-a")])
    status = world.step()
    assert status["versions"][0]["version"] == 1 and status["versionCount"] == 1
    assert status["latestVersion"] == 1 and status["versionsAssigned"] == 1
    entry = status["versions"][0]
    assert entry["modelUri"] == f"pvc://models/{NS}/run-a/abc"
    assert entry["source"] == {"kind": "TrainingJob", "name": "run-a"}
    assert entry["datasetDigest"] == "d" * 64 and entry["objectiveValue"] == 0.9
    assert entry["modelS3"] == {
        "endpoint": "http://10.0.0.5:9000",
        "secretRef": {"name": "s3-creds"},
        "virtualAddressing": False,
    }
    cm = world.config_maps[0]
    assert cm["metadata"]["name"] == "iris-v1" and cm["immutable"] is True
    assert cm["metadata"]["labels"][api.LABEL_MODEL] == "iris"
    assert cm["metadata"]["labels"][api.LABEL_VERSION] == "1"
    ref = cm["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"]) == ("Model", "model-uid"), "owned by the Model, not the TrainingJob"
    record = world.record(1)
    assert record["source"] == {
        "kind": "TrainingJob",
        "name": "run-a",
        "uid": "uid-run-a",
        "runHash": "hash-run-a",
    }
    assert record["dataset"] == {"name": "iris-data", "digest": "d" * 64}
    assert record["params"] == {"n_estimators": 10} and record["modelVersion"] == "abc0123456789def"
    assert record["imageId"] == "sha256:feed" and record["created"] == "2026-03-01T12:00:00Z"
    assert "AWS" not in json.dumps(record)
    assert reasons(world) == ["VersionRegistered"]
    assert status["phase"] == "Ready"


def test_only_succeeded_jobs_with_a_model_that_name_this_model_register() -> None:
    world = World(
        model_body(),
        trainingjobs=[
            tj("running", phase="Running"),
            tj("other", register_as="wine"),
            tj("plain", register_as=None),
        ],
    )
    status = world.step()
    assert status["versionCount"] == 0 and world.config_maps == []


def test_registration_is_idempotent_across_passes_and_after_a_crash_before_the_status() -> None:
    world = World(model_body(), trainingjobs=[tj("run-a")])
    world.step(write_status=False)  # the record is written, then the operator dies
    assert len(world.config_maps) == 1
    status = world.step()
    assert len(world.config_maps) == 1 and status["versionCount"] == 1
    for _ in range(3):
        again = world.step()
    assert again["versions"] == status["versions"] and len(world.config_maps) == 1
    assert reasons(world).count("VersionRegistered") == 1


def test_versions_are_numbered_in_completion_order_and_never_reused() -> None:
    world = World(
        model_body(),
        trainingjobs=[tj("late", done="2026-03-01T10:05:00Z"), tj("early", done="2026-03-01T10:01:00Z")],
    )
    status = world.step()
    assert [(v["version"], v["source"]["name"]) for v in status["versions"]] == [(2, "late"), (1, "early")]
    # A new run of the same TrainingJob (its spec changed: a new specHash) is a new version.
    world.trainingjobs[1] = tj("early", done="2026-03-01T11:00:00Z", spec_hash="hash-2")
    status = world.step()
    assert status["latestVersion"] == 3 and status["versions"][0]["source"]["name"] == "early"
    # Retiring v3 (its label) keeps its number taken: the next version is 4.
    world.config_maps[-1]["metadata"]["labels"][api.LABEL_DELETED] = "true"
    world.trainingjobs.append(tj("next", done="2026-03-01T11:30:00Z"))
    status = world.step()
    assert [v["version"] for v in status["versions"]] == [4, 2, 1]
    assert status["versionsAssigned"] == 4 and status["versionCount"] == 3


def test_deleting_a_trainingjob_changes_nothing() -> None:
    world = World(model_body(), trainingjobs=[tj("run-a")])
    before = world.step()
    world.trainingjobs = []
    assert world.step() == before and len(world.config_maps) == 1


def test_a_deleted_version_leaves_the_status_and_its_source_is_not_registered_again() -> None:
    world = World(model_body(annotations={"alias.mlops.dev/champion": "1"}), trainingjobs=[tj("run-a")])
    status = world.step()
    assert status["aliases"] == [{"name": "champion", "version": 1, "since": "2026-03-01T12:00:00Z"}]
    world.config_maps[0]["metadata"]["labels"][api.LABEL_DELETED] = "true"
    status = world.step()
    assert status["versions"] == [] and status["versionCount"] == 0 and len(world.config_maps) == 1
    cond = next(c for c in status["conditions"] if c["type"] == rmodel.CONDITION_ALIASES)
    assert cond["status"] == "False" and cond["reason"] == "AliasOnDeletedVersion"
    assert "champion names v1, which was deleted" in cond["message"]
    assert reasons(world).count("AliasOnDeletedVersion") == 1
    world.step()
    assert reasons(world).count("AliasOnDeletedVersion") == 1, "warned once, not every pass"
    # A ConfigMap removed outright disappears from the status too.
    world.config_maps = []
    world.trainingjobs = []
    assert world.step()["versions"] == []


def test_versions_are_bounded_newest_first() -> None:
    jobs = [tj(f"run-{i}", done=f"2026-03-01T10:{i:02d}:00Z") for i in range(7)]
    world = World(model_body(spec={"statusVersions": 3}), trainingjobs=jobs)
    status = world.step()
    assert [v["version"] for v in status["versions"]] == [7, 6, 5]
    assert status["versionCount"] == 7 and len(world.config_maps) == 7


def test_a_sweep_promotion_registers_the_best_trial_and_moves_the_alias() -> None:
    trial = tj("search-trial-3", register_as=None, value=0.97, owner_uid="uid-search")
    world = World(model_body(), trainingjobs=[trial], sweeps=[sweep_body()])
    status = world.step()
    assert status["versions"][0]["source"] == {
        "kind": "HyperparameterSweep",
        "name": "search",
        "trial": "search-trial-3",
    }
    assert status["champion"] == 1
    move = status["aliasHistory"][0]
    assert (move["alias"], move["to"], move["by"]) == ("champion", 1, "sweep/search")
    assert move["reason"] == "sweep search promoted trial search-trial-3, accuracy 0.97"
    assert "from" not in move
    record = world.record(1)
    assert record["dataset"]["digest"] == "d" * 64, "lineage read from the trial while it exists"
    assert record["params"] == {"max_depth": 5} and record["source"]["trialUid"] == "uid-search-trial-3"
    # Delete the sweep and its trials: the version and its lineage remain.
    world.sweeps, world.trainingjobs = [], []
    again = world.step()
    assert again["versions"] == status["versions"] and again["champion"] == 1
    assert world.record(1)["dataset"]["digest"] == "d" * 64


def test_a_sweep_whose_trials_are_gone_registers_from_its_best_trial_once() -> None:
    world = World(model_body(), sweeps=[sweep_body(alias="challenger")])
    status = world.step()
    assert status["aliases"][0]["name"] == "challenger" and "champion" not in status
    assert world.record(1)["modelUri"] == f"pvc://models/{NS}/search-trial-3/xyz"
    # The trial's TrainingJob turning up later is the same version, not a second one.
    world.trainingjobs = [tj("search-trial-3", register_as=None, owner_uid="uid-search")]
    assert world.step()["versionCount"] == 1


def test_a_sweep_below_its_threshold_or_unfinished_registers_nothing() -> None:
    world = World(model_body(), sweeps=[sweep_body(threshold=0.99), sweep_body("other", phase="Running")])
    assert world.step()["versionCount"] == 0


def test_the_alias_move_of_a_new_version_survives_a_crash_before_the_status() -> None:
    world = World(model_body(), sweeps=[sweep_body()])
    world.step(write_status=False)
    status = world.step()
    assert status["champion"] == 1 and len(status["aliasHistory"]) == 1
    assert world.step()["aliasHistory"] == status["aliasHistory"]


def test_the_promotion_rule_moves_the_alias_only_when_the_new_version_is_better() -> None:
    rule = {"alias": "champion", "metric": "accuracy", "direction": "maximize", "minImprovement": 0.01}
    world = World(model_body(spec={"promotion": rule}), trainingjobs=[tj("a", value=0.90)])
    status = world.step()
    assert status["champion"] == 1 and status["aliasHistory"][0]["by"] == "promotion-rule"
    world.trainingjobs.append(tj("b", value=0.905, done="2026-03-01T10:10:00Z"))  # not 0.01 better
    status = world.step()
    assert status["latestVersion"] == 2 and status["champion"] == 1
    world.trainingjobs.append(tj("c", value=0.95, done="2026-03-01T10:20:00Z"))
    status = world.step()
    assert status["champion"] == 3
    move = status["aliasHistory"][0]
    assert (move["from"], move["to"]) == (1, 3) and "beats v1" in move["reason"]
    world.trainingjobs.append(tj("d", value=0.50, done="2026-03-01T10:30:00Z"))
    assert world.step()["champion"] == 3


def test_the_rule_gates_a_sweep_promotion_to_its_own_alias() -> None:
    rule = {"alias": "champion", "metric": "accuracy", "minImprovement": 0.0}
    world = World(model_body(spec={"promotion": rule}), trainingjobs=[tj("a", value=0.99)])
    world.step()
    world.sweeps = [sweep_body(value=0.97)]
    status = world.step()
    assert status["latestVersion"] == 2 and status["champion"] == 1


def test_minimize_rules_prefer_lower_values() -> None:
    rule = {"alias": "best", "metric": "rmse", "direction": "minimize"}
    a, b = tj("a"), tj("b", done="2026-03-01T10:10:00Z")
    a["status"]["metrics"] = {"rmse": {"validation": 3.0}}
    b["status"]["metrics"] = {"rmse": {"validation": 2.5}}
    world = World(model_body(spec={"promotion": rule}), trainingjobs=[a, b])
    status = world.step()
    assert status["aliases"] == [{"name": "best", "version": 2, "since": "2026-03-01T12:00:00Z"}]


def test_the_annotation_moves_an_alias_once_and_never_undoes_a_later_promotion() -> None:
    world = World(model_body(annotations={"alias.mlops.dev/champion": "1"}), trainingjobs=[tj("a")])
    world.managed_fields = [
        {
            "manager": "mlops-cli",
            "operation": "Apply",
            "time": "2026-03-01T11:59:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:alias.mlops.dev/champion": {}}}},
        }
    ]
    status = world.step()
    assert status["champion"] == 1 and status["aliasAnnotations"] == {"champion": "1"}
    assert status["aliasHistory"][0]["by"] == "annotation (mlops-cli)"
    world.sweeps = [sweep_body()]
    status = world.step()
    assert status["champion"] == 2, "the sweep moved it; the old annotation does not move it back"
    for _ in range(2):
        status = world.step()
    assert status["champion"] == 2
    # Asking again (v1 is accepted as 1) moves it back.
    world.body["metadata"]["annotations"]["alias.mlops.dev/champion"] = "v1"
    status = world.step()
    assert status["champion"] == 1 and [m["to"] for m in status["aliasHistory"]] == [1, 2, 1]


def test_an_annotation_naming_no_version_is_refused_with_one_warning_then_honoured_when_it_exists() -> None:
    world = World(model_body(annotations={"alias.mlops.dev/challenger": "2"}), trainingjobs=[tj("a")])
    status = world.step()
    assert status["aliases"] == []
    cond = next(c for c in status["conditions"] if c["type"] == rmodel.CONDITION_ALIASES)
    assert cond["status"] == "False" and "version 2 does not exist" in cond["message"]
    # Flux reads what Argo CD reads: the annotation asks for the impossible (Stalled), the
    # registry still works (Ready).
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Stalled"]["status"] == "True" and conditions["Stalled"]["reason"] == "AliasRefused"
    assert conditions["Ready"]["status"] == "True"
    world.step()
    assert reasons(world).count("AliasRefused") == 1
    world.trainingjobs.append(tj("b", done="2026-03-01T10:30:00Z"))
    status = world.step()
    assert status["aliases"][0] == {"name": "challenger", "version": 2, "since": "2026-03-01T12:00:00Z"}
    cond = next(c for c in status["conditions"] if c["type"] == rmodel.CONDITION_ALIASES)
    assert cond["status"] == "True"
    assert next(c for c in status["conditions"] if c["type"] == "Stalled")["status"] == "False"


def test_a_failure_of_an_earlier_pass_is_cleared_by_a_good_one() -> None:
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "ChildRejected",
        "message": "configmaps is forbidden",
        "lastTransitionTime": "2026-03-01T11:00:00Z",
    }
    world = World(model_body(), trainingjobs=[tj("a")])
    world.body["status"] = {"phase": "Failed", "conditions": [failed]}
    status = world.step()
    cond = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert status["phase"] == "Ready" and cond["status"] == "False"


def test_bad_annotation_values_are_refused() -> None:
    world = World(
        model_body(annotations={"alias.mlops.dev/champion": "latest", "alias.mlops.dev/Bad_Name": "1"}),
        trainingjobs=[tj("a")],
    )
    status = world.step()
    assert status["aliases"] == []
    cond = next(c for c in status["conditions"] if c["type"] == rmodel.CONDITION_ALIASES)
    assert "'latest' is not a version number" in cond["message"] and "DNS label" in cond["message"]


def test_alias_history_is_bounded_newest_first() -> None:
    jobs = [tj(f"r{i}", value=0.5 + i / 100, done=f"2026-03-01T10:{i:02d}:00Z") for i in range(25)]
    rule = {"alias": "champion", "metric": "accuracy"}
    world = World(model_body(spec={"promotion": rule}))
    for job in jobs:
        world.trainingjobs.append(job)
        status = world.step()
    assert status["champion"] == 25 and len(status["aliasHistory"]) == api.MAX_ALIAS_HISTORY
    assert status["aliasHistory"][0]["to"] == 25 and status["aliasHistory"][-1]["to"] == 6


def test_records_of_an_older_model_of_the_same_name_are_not_listed_but_keep_their_numbers() -> None:
    world = World(model_body(), trainingjobs=[tj("a")])
    stale = model_build.manifest(
        api.Model.from_body(model_body() | {"metadata": {"name": "iris", "namespace": NS, "uid": "old"}}),
        {"version": 1, "sourceKey": "x", "modelUri": "pvc://old"},
    )
    world.config_maps = [stale]
    status = world.step()
    assert [v["version"] for v in status["versions"]] == [2]


def test_annotation_manager_reads_managed_fields() -> None:
    fields = [
        {
            "manager": "kubectl",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {}}},
        },
        {
            "manager": "argocd-controller",
            "time": "2026-01-02T00:00:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:alias.mlops.dev/champion": {}}}},
        },
    ]
    assert model_build.annotation_manager(fields, "alias.mlops.dev/champion") == "argocd-controller"
    assert model_build.annotation_manager(fields, "alias.mlops.dev/other") is None
