"""One export pass against an in-memory MLflow (tests/unit/_mlflow_fake.py): the order of the calls,
nothing made twice after a lost status or a failure midway, the alias mirror, backoff, and a
steady Model that costs no call. The real server: tests/integration/test_mlflow_export.py."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import _mlflow_fake
import pytest

from mlops_operator.api import model as api
from mlops_operator.mlflow_export import client as mclient
from mlops_operator.mlflow_export import export, mapping

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake() -> Iterator[_mlflow_fake.FakeMlflow]:
    server = _mlflow_fake.start()
    yield server
    server.server.shutdown()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exporter(fake: _mlflow_fake.FakeMlflow, clock: Clock) -> export.Exporter:
    return export.Exporter(mclient.Config(tracking_uri=fake.url, token="t0ken"), clock=clock)


MODEL = api.Model.from_body(
    {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"description": "iris classifiers"},
    }
)


def version(n: int, *, uri: str | None = None, deleted: bool = False) -> mapping.Version:
    return mapping.Version(
        version=n,
        deleted=deleted,
        data={
            "version": n,
            "modelUri": uri or f"pvc://models/ns/run-{n}/abc",
            "created": "2026-02-01T10:00:00Z",
            "source": {"kind": "TrainingJob", "name": f"run-{n}"},
            "objective": {"metric": "accuracy", "value": 0.9},
            "metrics": {"accuracy": {"validation": 0.9}},
            "params": {"n_estimators": n},
        },
    )


def aliases(**named: int) -> list[api.Alias]:
    return [api.Alias(name=k, version=v) for k, v in sorted(named.items())]


def run_pass(
    exporter: export.Exporter,
    versions: list[mapping.Version],
    status: api.ModelStatus | None = None,
    **named: int,
) -> tuple[mapping.Outcome, api.ModelStatus]:
    status = (status or api.ModelStatus()).model_copy(update={"aliases": aliases(**named)})
    outcome = exporter.sync(MODEL, status, versions, now=NOW)
    new, _ = mapping.with_outcome(status, outcome, now=NOW, generation=1)
    return outcome, new


def runs(fake: _mlflow_fake.FakeMlflow) -> list[dict[str, Any]]:
    return list(fake.store.runs.values())


def test_a_version_becomes_a_finished_run_and_a_registered_version(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter
) -> None:
    outcome, status = run_pass(exporter, [version(1)], champion=1)
    assert outcome.error_reason is None and outcome.left == 0
    assert fake.store.endpoints() == [
        "GET experiments/get-by-name",
        "POST experiments/create",
        "POST registered-models/create",
        "POST runs/search",
        "POST runs/create",
        "POST runs/log-batch",
        "PUT mlflow-artifacts/artifacts",
        "POST runs/update",
        "GET model-versions/search",
        "POST model-versions/create",
        "GET registered-models/get",
        "POST registered-models/alias",
    ]
    (run,) = runs(fake)
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "iris-v1"
    assert run["data"]["params"] == [{"key": "n_estimators", "value": "1"}]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlops.dev/model-uid"] == "uid-1" and tags["mlops.dev/model-version"] == "1"
    rid = run["info"]["run_id"]
    assert f"1/{rid}/artifacts/model_card.json" in fake.store.artifacts
    (registered,) = fake.store.versions["ns.iris"]
    assert (registered["source"], registered["run_id"]) == ("pvc://models/ns/run-1/abc", rid)
    assert fake.aliases("ns.iris") == {"champion": "1"}
    assert status.mlflow is not None
    assert status.mlflow.versions == [api.MLflowVersion(version=1, run_id=rid, model_version="1")]
    assert (status.mlflow.exported_through, status.mlflow.aliases) == (1, {"champion": "1"})
    assert all(c.headers.get("Authorization") == "Bearer t0ken" for c in fake.store.calls)


def test_a_steady_model_costs_no_call(fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter) -> None:
    _, status = run_pass(exporter, [version(1)], champion=1)
    calls = len(fake.store.calls)
    outcome, again = run_pass(exporter, [version(1)], status, champion=1)
    assert len(fake.store.calls) == calls and not outcome.exported
    assert again.condition(api.CONDITION_MLFLOW) == status.condition(api.CONDITION_MLFLOW)


def test_a_lost_status_finds_what_was_made(fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter) -> None:
    """A crash after MLflow answered and before the status was written: nothing made twice."""
    _, status = run_pass(exporter, [version(1), version(2)], champion=2)
    assert status.mlflow is not None
    before = len(fake.store.calls)
    fresh = export.Exporter(exporter.config)
    outcome, rebuilt = run_pass(fresh, [version(1), version(2)], champion=2)
    assert len(runs(fake)) == 2 and len(fake.store.versions["ns.iris"]) == 2
    assert rebuilt.mlflow is not None and rebuilt.mlflow.versions == status.mlflow.versions
    assert rebuilt.mlflow.aliases == {"champion": "2"}
    second = fake.store.endpoints()[before:]
    for made in (
        "POST runs/create",
        "POST runs/log-batch",
        "POST model-versions/create",
        "POST registered-models/alias",
    ):
        assert made not in second, second
    assert [e.version for e in outcome.exported] == [1, 2]


def test_a_failure_midway_leaves_a_run_the_next_pass_finishes(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter, clock: Clock
) -> None:
    fake.store.fail_once["runs/update"] = (503, "TEMPORARILY_UNAVAILABLE")
    outcome, status = run_pass(exporter, [version(1), version(2)])
    assert outcome.error_reason == mclient.REASON_UNREACHABLE and outcome.exported == []
    assert "POST runs/update: HTTP 503" in outcome.error_message and "t0ken" not in outcome.error_message
    assert status.mlflow is not None and status.mlflow.exported_through == 0 and outcome.left == 2
    assert len(runs(fake)) == 1 and runs(fake)[0]["info"]["status"] == "RUNNING"

    # Backing off: the next pass calls nothing.
    calls = len(fake.store.calls)
    skipped, _ = run_pass(exporter, [version(1), version(2)], status)
    assert skipped.skipped and len(fake.store.calls) == calls
    clock.t += export.BACKOFF_SECONDS + 1
    outcome, status = run_pass(exporter, [version(1), version(2)], status)
    assert outcome.error_reason is None and [e.version for e in outcome.exported] == [1, 2]
    assert len(runs(fake)) == 2, "the half-made run was finished, not made again"
    assert all(r["info"]["status"] == "FINISHED" for r in runs(fake))
    assert status.is_true(api.CONDITION_MLFLOW)


def test_backoff_doubles_up_to_its_cap(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter, clock: Clock
) -> None:
    fake.store.fail_always = (500, "INTERNAL_ERROR")
    waits = []
    for _ in range(8):
        outcome, _ = run_pass(exporter, [version(1)])
        assert outcome.error_reason == mclient.REASON_UNREACHABLE
        start = clock.t
        while exporter.backing_off("uid-1"):
            clock.t += 1
        waits.append(clock.t - start)
    assert waits == [10, 20, 40, 80, 160, 320, 600, 600]
    fake.store.fail_always = None
    outcome, _ = run_pass(exporter, [version(1)])
    assert outcome.error_reason is None and not exporter.backing_off("uid-1")
    exporter.forget("uid-1")


def test_an_unexpected_answer_is_a_condition_not_a_crash(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter
) -> None:
    class Broken(mclient.Client):
        def create_run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise KeyError("run")

    broken = export.Exporter(exporter.config, client=Broken(exporter.config))
    outcome, status = run_pass(broken, [version(1)])
    assert outcome.error_reason == export.REASON_UNEXPECTED and "KeyError" in outcome.error_message
    cond = status.condition(api.CONDITION_MLFLOW)
    assert cond is not None and cond.status == "False"


def test_aliases_follow_the_model_and_foreign_ones_go(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter
) -> None:
    _, status = run_pass(exporter, [version(1), version(2)], champion=1, challenger=2)
    assert fake.aliases("ns.iris") == {"champion": "1", "challenger": "2"}
    fake.store.models["ns.iris"]["aliases"].append({"alias": "someones", "version": "1"})
    _, status = run_pass(exporter, [version(1), version(2)], status, champion=2, challenger=2)
    assert fake.aliases("ns.iris") == {"champion": "2", "challenger": "2"}
    assert status.mlflow is not None and status.mlflow.aliases == {"champion": "2", "challenger": "2"}
    # MLflow cannot hold "latest" or "v3": left out, named in the condition.
    outcome, status = run_pass(exporter, [version(1), version(2)], status, champion=2, latest=1, v3=1)
    assert outcome.refused_aliases == ["latest", "v3"] and fake.aliases("ns.iris") == {"champion": "2"}
    cond = status.condition(api.CONDITION_MLFLOW)
    assert cond is not None and cond.status == "True" and "latest, v3" in cond.message


def test_an_alias_on_an_old_version_is_looked_up_once(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter
) -> None:
    versions = [version(1), version(2), version(3, deleted=True)]
    _, status = run_pass(exporter, versions)
    assert status.mlflow is not None
    # The status lost v1's entry (older than what it lists): found again by its run's tags.
    trimmed = status.model_copy(
        update={"mlflow": status.mlflow.model_copy(update={"versions": status.mlflow.versions[:1]})}
    )
    _, status = run_pass(exporter, versions, trimmed, champion=1)
    assert fake.aliases("ns.iris") == {"champion": "1"}
    assert status.mlflow is not None and {e.version for e in status.mlflow.versions} == {1, 2}
    # An alias on a version deleted before its export has nothing to name in MLflow: looked up
    # once, then left alone (no call per pass); the mirror removes a stale MLflow alias.
    _, status = run_pass(exporter, versions, status, champion=1, staging=3)
    calls = len(fake.store.calls)
    run_pass(exporter, versions, status, champion=1, staging=3)
    assert len(fake.store.calls) == calls
    assert fake.aliases("ns.iris") == {"champion": "1"}


def test_a_local_model_uri_links_the_run(fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter) -> None:
    outcome, _ = run_pass(exporter, [version(1, uri="file:///models/iris/1")])
    assert outcome.error_reason is None
    (registered,) = fake.store.versions["ns.iris"]
    assert registered["source"] == f"runs:/{registered['run_id']}"


def test_a_deleted_experiment_is_restored(fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter) -> None:
    run_pass(exporter, [version(1)])
    (exp,) = fake.store.experiments.values()
    exp["lifecycle_stage"] = "deleted"
    outcome, _ = run_pass(exporter, [version(1), version(2)])
    assert outcome.error_reason is None and exp["lifecycle_stage"] == "active"
    assert "POST experiments/restore" in fake.store.endpoints()


def test_a_long_backlog_is_spread_over_passes(
    fake: _mlflow_fake.FakeMlflow, exporter: export.Exporter, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = export._Pass.export

    def slow(self: export._Pass, experiment_id: str, v: mapping.Version) -> api.MLflowVersion:
        clock.t += 8  # each version takes 8 s of the 20 s budget
        return real_export(self, experiment_id, v)

    monkeypatch.setattr(export._Pass, "export", slow)
    versions = [version(n) for n in range(1, 8)]
    outcome, status = run_pass(exporter, versions)
    assert [e.version for e in outcome.exported] == [1, 2, 3] and outcome.left == 4
    cond = status.condition(api.CONDITION_MLFLOW)
    assert cond is not None and (cond.status, cond.reason) == ("False", "Exporting")
    assert status.mlflow is not None and status.mlflow.exported_through == 3
    outcome, status = run_pass(exporter, versions, status)
    outcome, status = run_pass(exporter, versions, status)
    assert status.mlflow is not None and status.mlflow.exported_through == 7
    assert status.is_true(api.CONDITION_MLFLOW) and len(runs(fake)) == 7
