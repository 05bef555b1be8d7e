"""The Dataset handler's two wake-ups: a one-shot timer for a refresh that falls due before the
next resync, and the refresh annotation (which kopf's update diff does not see)."""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_operator.api import dataset as api
from mlops_operator.handlers import dataset as hds
from mlops_operator.handlers import framework
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def resource(uid: str = "uid-1") -> api.Dataset:
    return api.Dataset.from_body(
        {
            "metadata": {"name": "sales", "namespace": "ml", "uid": uid},
            "spec": {"sources": [{"sklearn": {"name": "iris"}}], "storage": "file:///data/v"},
        }
    )


def context(now: datetime.datetime = NOW) -> framework.Context:
    return framework.Context(
        kube=object(),  # type: ignore[arg-type]
        settings=rworkload.WorkloadSettings(),
        now=now,
        logger=logging.getLogger("test"),
    )


@pytest.fixture(autouse=True)
def no_timers() -> Iterator[None]:
    yield
    hds.cancel_wakes()


def test_unanswered_request() -> None:
    def body(value: str | None, answered: str | None) -> dict[str, Any]:
        annotations = {} if value is None else {api.REFRESH_ANNOTATION: value}
        return {"metadata": {"annotations": annotations}, "status": {"lastRefreshRequest": answered}}

    assert hds.unanswered_request(body(None, None)) is None
    assert hds.unanswered_request(body("now", "now")) is None
    assert hds.unanswered_request(body("now", None)) == "now"
    assert hds.unanswered_request(body("2025-01-02", "now")) == "2025-01-02"
    long = "x" * (api.REFRESH_REQUEST_MAX + 10)
    assert hds.unanswered_request(body(long, long[: api.REFRESH_REQUEST_MAX])) is None


def test_a_time_before_the_next_resync_gets_one_timer_replaced_when_it_moves() -> None:
    ds = resource()
    hds.schedule_wake(context(), ds, NOW + datetime.timedelta(seconds=30))
    first = hds._TIMERS[ds.metadata.uid][1]
    hds.schedule_wake(context(), ds, NOW + datetime.timedelta(seconds=30))
    assert hds._TIMERS[ds.metadata.uid][1] is first  # the same time: kept
    hds.schedule_wake(context(), ds, NOW + datetime.timedelta(seconds=40))
    assert hds._TIMERS[ds.metadata.uid][1] is not first
    first.join(timeout=1)  # cancelled: its thread ends without calling anything
    assert not first.is_alive()
    hds.schedule_wake(context(), ds, None)  # nothing due any more
    assert ds.metadata.uid not in hds._TIMERS


def test_a_time_after_the_next_resync_needs_no_timer() -> None:
    ds = resource()
    hds.schedule_wake(context(), ds, NOW + datetime.timedelta(seconds=hds.RESYNC_SECONDS + 5))
    assert ds.metadata.uid not in hds._TIMERS


def test_forgetting_a_deleted_dataset_cancels_its_timer() -> None:
    ds = resource()
    hds.schedule_wake(context(), ds, NOW + datetime.timedelta(seconds=30))
    timer = hds._TIMERS[ds.metadata.uid][1]
    hds.forget(ds.metadata.uid)
    assert ds.metadata.uid not in hds._TIMERS
    timer.join(timeout=1)
    assert not timer.is_alive()


def test_the_timer_reconciles_the_dataset_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    called = threading.Event()
    seen: list[tuple[str, str, str, datetime.datetime]] = []

    def fake(plural: str, ctx: framework.Context, name: str, namespace: str) -> None:
        seen.append((plural, name, namespace, ctx.now))
        called.set()

    monkeypatch.setattr(framework, "reconcile_by_name", fake)
    now = datetime.datetime.now(datetime.UTC)
    hds.schedule_wake(context(now), resource(), now + datetime.timedelta(seconds=0.1))
    assert called.wait(timeout=5)
    plural, name, namespace, when = seen[0]
    assert (plural, name, namespace) == ("datasets", "sales", "ml")
    assert when >= now + datetime.timedelta(seconds=0.1)  # a fresh clock: the pass finds it due
