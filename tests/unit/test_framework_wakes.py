"""The framework's one-shot wake-ups (``Plan.wake_at``): a pass that time alone makes due (a
Dataset's refresh schedule, a run's scheduling deadline) before the kind's next resync."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_operator.handlers import framework
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
BODY = {"metadata": {"name": "sales", "namespace": "ml", "uid": "uid-1", "resourceVersion": "7"}}
REG = framework.Registration(
    kind="Toy",
    plural="toywakes",
    reconcile=lambda ctx, body: framework.Outcome(status=None),
    interval=60.0,
    forget=None,
    flat_failure=True,
)


NO_API: Any = object()  # never called: the passes under test write nothing


def context(now: datetime.datetime = NOW) -> framework.Context:
    return framework.Context(
        kube=NO_API,
        settings=rworkload.WorkloadSettings(),
        now=now,
        logger=logging.getLogger("test"),
    )


def key() -> tuple[str, str]:
    return (REG.plural, "uid-1")


@pytest.fixture(autouse=True)
def no_timers() -> Iterator[None]:
    yield
    framework.cancel_wakes()


def test_a_time_before_the_next_resync_is_one_wake_replaced_when_it_moves() -> None:
    framework.schedule_wake(REG, context(), BODY, NOW + datetime.timedelta(seconds=30))
    first = framework._WAKES.pending[key()]
    framework.schedule_wake(REG, context(), BODY, NOW + datetime.timedelta(seconds=30))
    assert framework._WAKES.pending[key()] is first  # the same time: kept
    framework.schedule_wake(REG, context(), BODY, NOW + datetime.timedelta(seconds=40))
    assert framework._WAKES.pending[key()][0] == NOW + datetime.timedelta(seconds=40)
    framework.schedule_wake(REG, context(), BODY, None)  # nothing due any more
    assert key() not in framework._WAKES.pending


def test_a_time_after_the_next_resync_needs_no_wake() -> None:
    framework.schedule_wake(REG, context(), BODY, NOW + datetime.timedelta(seconds=REG.interval + 5))
    assert key() not in framework._WAKES.pending


def test_a_deleted_object_loses_its_wake() -> None:
    framework.schedule_wake(REG, context(), BODY, NOW + datetime.timedelta(seconds=30))
    framework.cancel_wake(REG, "uid-1")
    assert key() not in framework._WAKES.pending


def test_a_replaced_or_dropped_wake_never_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    done = threading.Event()

    def fake(plural: str, ctx: framework.Context, name: str, namespace: str) -> None:
        seen.append(name)
        done.set()

    monkeypatch.setattr(framework, "reconcile_by_name", fake)
    now = datetime.datetime.now(datetime.UTC)
    other = {"metadata": {**BODY["metadata"], "uid": "uid-2", "name": "other"}}
    framework.schedule_wake(REG, context(now), BODY, now + datetime.timedelta(seconds=0.1))
    framework.cancel_wake(REG, "uid-1")  # dropped before it is due
    framework.schedule_wake(REG, context(now), other, now + datetime.timedelta(seconds=0.05))
    framework.schedule_wake(REG, context(now), other, now + datetime.timedelta(seconds=0.3))  # moved
    assert done.wait(timeout=5)
    time.sleep(0.4)
    assert seen == ["other"]  # once, at the later time, and nothing for the dropped one


def test_many_wakes_share_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def fake(plural: str, ctx: framework.Context, name: str, namespace: str) -> None:
        with lock:
            calls.append(name)

    monkeypatch.setattr(framework, "reconcile_by_name", fake)
    before = threading.active_count()
    now = datetime.datetime.now(datetime.UTC)
    for i in range(500):
        body = {"metadata": {"name": f"r{i}", "namespace": "ml", "uid": f"u{i}"}}
        framework.schedule_wake(REG, context(now), body, now + datetime.timedelta(seconds=0.2))
    assert threading.active_count() - before <= 1  # the wake thread, not one per object
    deadline = time.monotonic() + 10
    while len(calls) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(calls) == sorted(f"r{i}" for i in range(500))


def test_the_timer_reconciles_the_object_by_name_with_a_fresh_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    called = threading.Event()
    seen: list[tuple[str, str, str, datetime.datetime]] = []

    def fake(plural: str, ctx: framework.Context, name: str, namespace: str) -> None:
        seen.append((plural, name, namespace, ctx.now))
        called.set()

    monkeypatch.setattr(framework, "reconcile_by_name", fake)
    now = datetime.datetime.now(datetime.UTC)
    framework.schedule_wake(REG, context(now), BODY, now + datetime.timedelta(seconds=0.1))
    assert called.wait(timeout=5)
    plural, name, namespace, when = seen[0]
    assert (plural, name, namespace) == ("toywakes", "sales", "ml")
    assert when >= now + datetime.timedelta(seconds=0.1)  # a fresh clock: the pass finds it due


def test_a_pass_whose_plan_names_a_time_schedules_the_wake() -> None:
    at = NOW + datetime.timedelta(seconds=20)

    def reconcile(ctx: framework.Context, body: Any) -> framework.Outcome:
        return framework.carry_out(ctx, "ml", rplan.Plan(status=None, wake_at=at))

    reg = framework.Registration(
        kind="Toy", plural="toywakes", reconcile=reconcile, interval=60.0, forget=None, flat_failure=True
    )
    framework.run(reg, context(), BODY)
    assert framework._WAKES.pending[key()][0] == at
    # The next pass plans no time: the wake is dropped.
    framework.run(dataclasses.replace(reg, reconcile=REG.reconcile), context(), BODY)
    assert key() not in framework._WAKES.pending
