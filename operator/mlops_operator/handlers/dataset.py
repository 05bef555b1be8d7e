"""Dataset handler: read the prepare Jobs, ConfigMaps and pods, let the pure reconciler decide,
carry it out.

Thin on purpose: names, the Job, the status and the Events are all decided in
``reconcile.dataset``. This module lists the children by label, deletes those of an older
spec hash or refresh round (a Job's pod template is immutable, so a spec change or a re-read
means a new Job), applies what the plan asks with server-side apply, and hands the status and
Events to the framework. It runs on every change of the Dataset (a new ``mlops.dev/refresh``
annotation included), at start-up, every ``RESYNC_SECONDS`` and whenever a prepare Job or pod changes;
deleting the Dataset removes its children through their owner references. A Dataset with
feedback sources also reads the ModelDeployments they name (one GET each per pass); one that
waits for its deployment (or for the deployment's spec.logging) is prepared on the first
resync after it appears.

The ``mlops.dev/refresh`` annotation needs a handler of its own: kopf leaves the annotations
under its own storage prefix (``mlops.dev/``) out of what it compares for ``on.update``, so
``on_refresh_request`` watches the raw events and reconciles a Dataset whose annotation holds
a value its status has not answered yet (``status.lastRefreshRequest``).

A refresh schedule finer than the resync (``* * * * *``) would otherwise wait up to a resync
for its time: when the plan says the next round falls due before the next resync
(``Plan.wake_at``), a one-shot timer reconciles the Dataset then. The timer is only a wake-up
call; whether a round is due is decided from the status and the clock alone, so a timer lost
to a restart costs at most one resync, and the resync loop needs no per-object kopf timer
(which would put a finalizer on every Dataset).
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_operator.handlers import framework
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build

RESYNC_SECONDS = 60.0
WAKE_MARGIN_SECONDS = 0.5  # wake just after the scheduled time, so the pass finds it due

_TIMERS: dict[str, tuple[datetime.datetime, threading.Timer]] = {}
_TIMERS_LOCK = threading.Lock()


def _wake(ctx: framework.Context, name: str, namespace: str) -> None:
    fresh = dataclasses.replace(ctx, now=datetime.datetime.now(datetime.UTC))
    try:
        framework.reconcile_by_name(api.Dataset.crd.plural, fresh, name, namespace)
    except Exception as exc:  # the resync retries; a wake-up never raises into a thread
        ctx.logger.warning("scheduled refresh of Dataset %s/%s failed: %s", namespace, name, exc)


def schedule_wake(ctx: framework.Context, resource: api.Dataset, at: datetime.datetime | None) -> None:
    """Reconcile ``resource`` again at ``at`` when that comes before the next resync; one timer
    per Dataset, replaced when the time changes."""
    uid = resource.metadata.uid
    delay = None if at is None else (at - ctx.now).total_seconds() + WAKE_MARGIN_SECONDS
    with _TIMERS_LOCK:
        current = _TIMERS.get(uid)
        if current is not None and current[0] == at and current[1].is_alive():
            return
        if current is not None:
            current[1].cancel()
            _TIMERS.pop(uid, None)
        if at is None or delay is None or delay > RESYNC_SECONDS:
            return  # nothing due, or the resync comes round first (and plans again)
        timer = threading.Timer(
            max(0.0, delay), _wake, args=(ctx, resource.metadata.name, resource.metadata.namespace)
        )
        timer.daemon = True
        timer.name = f"dataset-wake-{resource.metadata.namespace}-{resource.metadata.name}"
        _TIMERS[uid] = (at, timer)
        timer.start()


def forget(uid: str) -> None:
    """The Dataset is gone: drop its wake-up timer."""
    with _TIMERS_LOCK:
        current = _TIMERS.pop(uid, None)
    if current is not None:
        current[1].cancel()


@kopf.on.cleanup()
def cancel_wakes(**_: Any) -> None:
    """The operator stops: no wake-up may call a closed client."""
    with _TIMERS_LOCK:
        timers = list(_TIMERS.values())
        _TIMERS.clear()
    for _at, timer in timers:
        timer.cancel()


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    resource = api.Dataset.from_body(body)
    namespace = resource.metadata.namespace
    selector = rds_build.selector(resource)
    observed = rds.Observed(
        jobs=ctx.kube.list("batch/v1", "Job", namespace, label_selector=selector),
        configmaps=ctx.kube.list("v1", "ConfigMap", namespace, label_selector=selector),
        pods=ctx.kube.list("v1", "Pod", namespace, label_selector=selector),
        deployments={
            name: ctx.kube.get(common.API_VERSION, "ModelDeployment", name, namespace)
            for name in rds_build.feedback_deployments(resource)
        },
    )
    plan = rds.plan(resource, observed=observed, settings=ctx.settings, now=ctx.now)
    if plan.delete:
        stale = ", ".join(f"{r.kind}/{r.name}" for r in plan.delete)
        ctx.logger.info("deleting %s of an earlier spec or refresh round", stale)
    outcome = framework.carry_out(ctx, namespace, plan)
    schedule_wake(ctx, resource, plan.wake_at)
    return outcome


def unanswered_request(body: Mapping[str, Any]) -> str | None:
    """The refresh annotation's value when the status has not answered it yet, else None."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(api.REFRESH_ANNOTATION)
    if value is None:
        return None
    value = str(value)[: api.REFRESH_REQUEST_MAX]
    return None if value == (body.get("status") or {}).get("lastRefreshRequest") else value


REGISTRATION = framework.register(
    kind=api.Dataset.crd.kind,
    plural=api.Dataset.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
    forget=forget,
)


@kopf.on.event(common.GROUP, common.VERSION, api.Dataset.crd.plural, id="refresh-request")
def on_refresh_request(event: kopf.RawEvent, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A new mlops.dev/refresh value: reconcile now (a round starts once the current Job ended;
    until then each change of the Dataset brings it back here, and the resync heals the rest)."""
    body = event.get("object") or {}
    if event.get("type") == "DELETED" or unanswered_request(body) is None:
        return
    framework.run(REGISTRATION, framework.memo_context(memo, logger), body)
