"""The reconcile loop's contract: status written only on change, failures become Failed, events follow."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic
import pytest

from mlops_operator.api import common
from mlops_operator.handlers import framework
from mlops_operator.k8s import client
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class RecordingKube:
    """Records what the loop asks of the client layer (the API itself is exercised in integration tests)."""

    def __init__(self, fail_status_with: Exception | None = None) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.fail_status_with = fail_status_with

    def apply_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        if self.fail_status_with:
            raise self.fail_status_with
        self.statuses.append(status)
        return {}

    def event(
        self,
        regarding: dict[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        now: datetime.datetime | None = None,
    ) -> None:
        self.events.append((type_, reason, message))


def _ctx(kube: RecordingKube) -> framework.Context:
    return framework.Context(
        kube=kube,
        settings=rworkload.WorkloadSettings(),
        now=NOW,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )


def _body(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": "ns", "uid": "uid-1", "generation": 3},
        "spec": {},
        "status": status or {},
    }


def _reg(fn: framework.ReconcileFn) -> framework.Registration:
    return framework.Registration(kind="Dataset", plural="datasets", reconcile=fn, interval=60)


def test_status_is_written_once_and_events_follow_it() -> None:
    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        status = common.StatusBase(observed_generation=3, phase="Ready")
        return framework.Outcome(status=status, events=[rplan.EventNote.normal("Ready", "done")])

    kube = RecordingKube()
    stored = framework.run(_reg(fn), _ctx(kube), _body())
    assert stored == {"observedGeneration": 3, "phase": "Ready", "conditions": []}
    assert kube.statuses == [stored] and kube.events == [("Normal", "Ready", "done")]
    kube2 = RecordingKube()
    framework.run(_reg(fn), _ctx(kube2), _body(stored))
    assert kube2.statuses == []  # unchanged: no write, no churn


def test_permanent_failure_sets_failed_condition_and_warns_once() -> None:
    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise framework.PermanentFailure("DatasetNotFound", "Dataset 'iris' does not exist")

    kube = RecordingKube()
    stored = framework.run(_reg(fn), _ctx(kube), _body())
    assert stored is not None and stored["phase"] == "Failed" and stored["reason"] == "DatasetNotFound"
    failed = next(c for c in stored["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and "iris" in failed["message"] and failed["observedGeneration"] == 3
    assert kube.events == [("Warning", "DatasetNotFound", "Dataset 'iris' does not exist")]
    again = RecordingKube()
    framework.run(_reg(fn), _ctx(again), _body(stored))
    assert again.events == [] and again.statuses == []


def test_invalid_spec_is_a_permanent_failure_naming_the_field() -> None:
    class Spec(pydantic.BaseModel):
        replicas: int

    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        Spec.model_validate({"replicas": "many"})
        raise AssertionError("unreachable")

    stored = framework.run(_reg(fn), _ctx(RecordingKube()), _body())
    assert stored is not None and stored["reason"] == "InvalidSpec" and "replicas" in stored["message"]


def test_transient_api_errors_are_retried_by_kopf() -> None:
    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise client.ApiError(status=404, reason="NotFound", message="gone")  # unexpected: retry

    with pytest.raises(kopf.TemporaryError):
        framework.run(_reg(fn), _ctx(RecordingKube()), _body())


def test_rejected_child_is_reported_on_the_object() -> None:
    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise client.ApiError(status=422, reason="Invalid", message="spec.template: bad")

    kube = RecordingKube()
    stored = framework.run(_reg(fn), _ctx(kube), _body())
    assert stored is not None and stored["reason"] == "ChildRejected" and kube.events[0][0] == "Warning"


def test_a_rejected_child_warns_once_per_distinct_message() -> None:
    """The API keeps refusing the child on every pass (a resync every few seconds): one Warning
    per cause, not one per pass; a different refusal is a new cause and warns again."""
    message = {"text": "spec.template: bad"}

    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise client.ApiError(status=422, reason="Invalid", message=message["text"])

    first = RecordingKube()
    stored = framework.run(_reg(fn), _ctx(first), _body())
    assert stored is not None and [e[:2] for e in first.events] == [("Warning", "ChildRejected")]
    again = RecordingKube()
    assert framework.run(_reg(fn), _ctx(again), _body(stored)) == stored
    assert again.events == [] and again.statuses == []
    message["text"] = "spec.template.spec.containers[0].image: Required value"
    changed = RecordingKube()
    framework.run(_reg(fn), _ctx(changed), _body(stored))
    assert len(changed.events) == 1 and "Required value" in changed.events[0][2]


def test_deleted_objects_are_left_alone() -> None:
    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise AssertionError("must not run")

    body = _body()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert framework.run(_reg(fn), _ctx(RecordingKube()), body) is None


def test_child_routing_prefers_controller_reference_then_labels() -> None:
    framework.REGISTRY.setdefault("datasets", _reg(lambda c, b: framework.Outcome(status=None)))
    job = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "name": "iris", "controller": True}
            ]
        }
    }
    assert framework._owner_of(job) == ("datasets", "iris")
    pod = {
        "metadata": {
            "labels": {"mlops.dev/dataset": "iris", "app.kubernetes.io/component": "prepare"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "controller": True}],
        }
    }
    assert framework._owner_of(pod) == ("datasets", "iris")
    assert framework._owner_of({"metadata": {"labels": {}}}) is None


def test_a_stale_snapshot_is_re_read_after_our_own_status_write() -> None:
    seen: list[str | None] = []

    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        seen.append((body.get("status") or {}).get("phase"))
        return framework.Outcome(status=common.StatusBase(observed_generation=3, phase="Running"))

    class VersionedKube(RecordingKube):
        def apply_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            super().apply_status(*args, **kwargs)
            return {"metadata": {"resourceVersion": "5"}}

        def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any]:
            fresh = _body({"observedGeneration": 3, "phase": "Running", "conditions": []})
            fresh["metadata"]["resourceVersion"] = "6"
            return fresh

    kube = VersionedKube()
    reg = _reg(fn)
    first = _body({"phase": "Pending"})
    first["metadata"]["uid"] = "uid-stale"
    first["metadata"]["resourceVersion"] = "4"
    framework.run(reg, _ctx(kube), first)
    framework.run(reg, _ctx(kube), first)  # the same (now stale) snapshot, queued by kopf
    assert seen == ["Pending", "Running"]
    assert len(kube.statuses) == 1  # the re-read status already matches: no second write


def test_a_cache_behind_kopfs_event_never_replaces_it() -> None:
    """After our write (rv 5) kopf hands a newer event (rv 7, a user's change); the cache, a
    moment behind, still has rv 5: the pass computes from the event's body."""
    seen: list[str | None] = []

    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        seen.append(body["metadata"]["resourceVersion"])
        return framework.Outcome(status=common.StatusBase(observed_generation=3, phase="Running"))

    class LaggingKube(RecordingKube):
        def apply_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            super().apply_status(*args, **kwargs)
            return {"metadata": {"resourceVersion": "5"}}

        def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any]:
            cached = _body({"observedGeneration": 3, "phase": "Running", "conditions": []})
            cached["metadata"]["resourceVersion"] = "5"
            return cached

    kube, reg = LaggingKube(), _reg(fn)
    first = _body({"phase": "Pending"})
    first["metadata"].update(uid="uid-lag", resourceVersion="4")
    framework.run(reg, _ctx(kube), first)
    newer = _body({"observedGeneration": 3, "phase": "Running", "conditions": []})
    newer["metadata"].update(uid="uid-lag", resourceVersion="7")
    framework.run(reg, _ctx(kube), newer)
    assert seen == ["4", "7"]


def test_passes_are_counted_in_their_kinds_queue_depth() -> None:
    import asyncio

    from mlops_operator import metrics

    gauge = metrics.QUEUE_DEPTH.labels(kind="Toy")
    during: list[float] = []

    def work() -> str:
        during.append(gauge._value.get())
        return "done"

    async def main() -> str:
        return str(await framework.in_pool("Toy", object(), work))

    start = gauge._value.get()
    assert asyncio.run(main()) == "done"
    assert during == [start + 1] and gauge._value.get() == start


def test_resync_reads_a_synced_cache_instead_of_listing() -> None:
    from mlops_operator.k8s import cache

    class NoApi:
        def call_api(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"no API request expected: {args}")

        def close(self) -> None:
            pass

    kube = cache.CachedKube(NoApi())  # type: ignore[arg-type]
    informer = kube.add(
        cache.Informer(
            kube=kube, api_version=common.API_VERSION, kind="Dataset", keep=cache.NamespaceFilter(("t-*",))
        )
    )
    informer.store.upsert({"metadata": {"name": "x", "namespace": "t-1", "resourceVersion": "1"}})
    informer.synced.set()
    items = framework._list_watched(kube, "Dataset", ("t-*",))
    assert [i["metadata"]["name"] for i in items] == ["x"]


def test_resync_lists_only_the_watched_namespaces() -> None:
    class ListingKube:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str | None]] = []

        def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
            self.calls.append((kind, namespace))
            if kind == "Namespace":
                return [{"metadata": {"name": n}} for n in ("t-1", "t-2", "other")]
            return [{"metadata": {"name": "x", "namespace": namespace}}]

    kube = ListingKube()
    assert len(framework._list_watched(kube, "Dataset", ())) == 1  # type: ignore[arg-type]
    assert kube.calls == [("Dataset", None)]  # everything: one cluster-wide LIST
    kube.calls.clear()
    framework._list_watched(kube, "Dataset", ("team-a",))  # type: ignore[arg-type]
    assert kube.calls == [("Dataset", "team-a")]  # a namespaced operator never lists cluster-wide
    kube.calls.clear()
    items = framework._list_watched(kube, "Dataset", ("t-*",))  # type: ignore[arg-type]
    assert kube.calls == [("Namespace", None), ("Dataset", "t-1"), ("Dataset", "t-2")]
    assert {i["metadata"]["namespace"] for i in items} == {"t-1", "t-2"}


def test_a_failure_writes_only_fields_the_kind_s_status_has() -> None:
    """A ModelDeployment's status has no top-level reason or message: a failure stays in the
    conditions (the API server refuses a status with undeclared fields: the failure would never
    be recorded and every pass would fail again), and still warns once per cause."""
    from mlops_operator.api import modeldeployment

    def fn(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
        raise client.ApiError(status=422, reason="Invalid", message="spec.template: bad")

    reg = dataclasses.replace(
        _reg(fn),
        flat_failure={"reason", "message"} <= set(modeldeployment.ModelDeploymentStatus.model_fields),
    )
    assert reg.flat_failure is False
    first = RecordingKube()
    stored = framework.run(reg, _ctx(first), _body())
    assert stored is not None and "reason" not in stored and "message" not in stored
    modeldeployment.ModelDeploymentStatus.model_validate(stored)
    failed = next(c for c in stored["conditions"] if c["type"] == "Failed")
    assert (stored["phase"], failed["reason"]) == ("Failed", "ChildRejected")
    assert [e[:2] for e in first.events] == [("Warning", "ChildRejected")]
    again = RecordingKube()
    framework.run(reg, _ctx(again), _body(stored))
    assert again.events == [] and again.statuses == []


class EventKube(RecordingKube):
    """Also answers GETs (the retry re-reads the object) and hands out resourceVersions."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.gets = 0
        self.version = 10

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        self.gets += 1
        return self.body

    def apply_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        super().apply_status(api_version, kind, name, namespace, status)
        self.version += 1
        self.body = {**self.body, "metadata": {**self.body["metadata"], "resourceVersion": str(self.version)}}
        return self.body


@dataclasses.dataclass
class Memo:
    kube: Any
    settings: rworkload.WorkloadSettings = dataclasses.field(default_factory=rworkload.WorkloadSettings)
    executor: Any = None


def test_watch_events_reconcile_skip_own_writes_and_retry_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event reconciles (no kopf diff base), except the event of this process's own status
    write; a failed pass is retried with backoff after re-reading the object; DELETED forgets."""
    import asyncio

    body = {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u-ev", "resourceVersion": "10", "generation": 1}
    }
    kube = EventKube(body)
    calls: list[str] = []
    failures: list[Exception] = [RuntimeError("the API went away")]

    def reconcile(ctx: framework.Context, seen: Mapping[str, Any]) -> framework.Outcome:
        calls.append(str(seen["metadata"]["resourceVersion"]))
        if failures:
            raise failures.pop()
        return framework.Outcome(status={"phase": "Ready", "observedGeneration": 1})

    forgotten: list[str] = []
    reg = framework.register(kind="Toy", plural="toyevents", reconcile=reconcile, forget=forgotten.append)

    async def handler(*, event: dict[str, Any], memo: Any, logger: Any) -> None:
        await framework.handle_event(reg, event, memo, logger)

    monkeypatch.setattr(framework, "RETRY_DELAYS", (0.01,))
    memo = Memo(kube=kube)
    log = logging.getLogger("test")

    async def scenario() -> None:
        # A change: the pass fails, a retry re-reads the object and succeeds.
        await handler(event={"type": "MODIFIED", "object": body}, memo=memo, logger=log)
        for _ in range(100):
            if kube.statuses:
                break
            await asyncio.sleep(0.01)
        assert (
            calls == ["10", "10"]
            and kube.gets == 1
            and kube.statuses == [{"phase": "Ready", "observedGeneration": 1}]
        )
        # The event of that status write (resourceVersion 11) is this process's own: no pass.
        await handler(event={"type": "MODIFIED", "object": kube.body}, memo=memo, logger=log)
        assert calls == ["10", "10"]
        # Someone else's change (resourceVersion 12) reconciles again.
        other = {**kube.body, "metadata": {**kube.body["metadata"], "resourceVersion": "12"}}
        kube.body = other
        await handler(event={"type": "MODIFIED", "object": other}, memo=memo, logger=log)
        assert calls[-1] == "12"
        await handler(event={"type": "DELETED", "object": other}, memo=memo, logger=log)
        assert forgotten == ["u-ev"]

    asyncio.run(scenario())
    assert reg.kind == "Toy"
