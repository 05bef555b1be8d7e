"""One level-triggered reconcile loop per kind, wired to kopf.

Each kind module calls ``register(kind=..., plural=..., reconcile=fn)``. The same ``fn`` runs
on every watch event of the object (the listing at start-up, any change but this process's own
status write), on a periodic resync, and whenever a labelled child (Job, Pod, Deployment,
TrainingJob...) changes: whichever event arrives, the whole state is recomputed from the
cluster, so a missed event heals on the next pass and a restart loses nothing.

``fn(ctx, body)`` returns an ``Outcome``: the full new status and the Events to post. The
framework writes the status only when it differs from what is stored (no churn for GitOps
tools), posts the Events after the status is written, keeps the metrics, serialises passes
of one object within this process, and turns errors into what kopf and the user need:
``PermanentFailure`` → ``Failed`` and ``Stalled`` conditions with the reason (never a crash), API
throttling or outages → ``kopf.TemporaryError`` (kopf retries).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime
import functools
import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf
import pydantic

from mlops_operator import metrics
from mlops_operator.api import common
from mlops_operator.k8s import cache, client
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

LOG = logging.getLogger("mlops_operator")


@dataclasses.dataclass
class Context:
    """What a reconcile pass may use: the API, the settings, the time of this pass and a logger."""

    kube: client.Kube
    settings: rworkload.WorkloadSettings
    now: datetime.datetime
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclasses.dataclass
class Outcome:
    """The result of one pass: the status to store and the Events to post once it is stored."""

    status: common.StatusBase | dict[str, Any] | None
    events: list[rplan.EventNote] = dataclasses.field(default_factory=list)
    wake_at: datetime.datetime | None = None


class PermanentFailure(Exception):
    """The spec cannot work as written; ``reason`` is one CamelCase word, ``message`` says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


ReconcileFn = Callable[[Context, Mapping[str, Any]], Outcome]


@dataclasses.dataclass(frozen=True)
class Registration:
    kind: str
    plural: str
    reconcile: ReconcileFn
    interval: float
    forget: Callable[[str], None] | None = None  # drops per-object memory when the object is deleted
    flat_failure: bool = True  # the kind's status has top-level reason and message for a failure


REGISTRY: dict[str, Registration] = {}
_LOCKS: collections.defaultdict[str, threading.Lock] = collections.defaultdict(threading.Lock)
# resourceVersion of each object right after this process last wrote its status: a pass handed
# an older snapshot (kopf queues events while another pass runs) re-reads the object first,
# so it never computes transitions, Events or children from a status it already replaced.
_WRITTEN_RV: dict[str, str] = {}


def memo_context(memo: Any, logger: Any) -> Context:
    return Context(
        kube=memo.kube, settings=memo.settings, now=datetime.datetime.now(datetime.UTC), logger=logger
    )


def _status_dict(status: common.StatusBase | dict[str, Any] | None) -> dict[str, Any] | None:
    if status is None or isinstance(status, dict):
        return status
    return status.to_api()


def failed_status(
    body: Mapping[str, Any], reason: str, message: str, now: datetime.datetime, *, flat: bool = True
) -> dict[str, Any]:
    """The stored status with phase Failed, a Failed condition and Stalled (Ready and
    Reconciling False, so GitOps tools report the failure at once), other fields kept.

    ``flat``: also ``reason`` and ``message`` at the top of the status, for the kinds whose
    schema has them (the API server refuses a status with fields its schema lacks)."""
    stored = dict(body.get("status") or {})
    generation = (body.get("metadata") or {}).get("generation")
    base = common.StatusBase.model_validate(
        {k: v for k, v in stored.items() if k in {"observedGeneration", "phase", "conditions"}}
    )
    base = base.with_condition(
        "Failed", "True", reason=reason, message=message, now=now, generation=generation
    )
    if base.condition("Running") is not None:
        base = base.with_condition(
            "Running", "False", reason=reason, message=message, now=now, generation=generation
        )
    base = base.with_progress(
        "Stalled", ready=False, reason=reason, message=message, now=now, generation=generation
    )
    stored.update(base.to_api())
    stored["phase"] = "Failed"
    stored["observedGeneration"] = generation
    if flat:
        stored["reason"] = reason
        stored["message"] = message[:1024]
    return stored


def _failure(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """(phase, the Failed condition's reason and message): what says a failure is the same one."""
    failed: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Failed"), {}
    )
    return status.get("phase"), failed.get("reason"), failed.get("message")


def run(reg: Registration, ctx: Context, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """One reconcile pass of one object; returns the status that is now stored."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    uid = str(meta.get("uid", ""))
    started = time.perf_counter()
    result = "ok"
    new_status: dict[str, Any] | None = None
    events: list[rplan.EventNote] = []
    wake_at: datetime.datetime | None = None
    with _LOCKS[uid]:
        written = _WRITTEN_RV.get(uid)
        if written is not None and written != meta.get("resourceVersion"):
            fresh = ctx.kube.get(common.API_VERSION, reg.kind, str(meta.get("name")), meta.get("namespace"))
            if fresh is None or (fresh.get("metadata") or {}).get("deletionTimestamp"):
                return None
            if cache.newer(fresh, body):  # a cache a moment behind kopf's event never wins
                body, meta = fresh, fresh.get("metadata") or {}
        try:
            try:
                outcome = reg.reconcile(ctx, body)
                new_status = _status_dict(outcome.status)
                events = outcome.events
                wake_at = outcome.wake_at
            except pydantic.ValidationError as exc:
                raise PermanentFailure("InvalidSpec", _validation_message(exc)) from exc
        except PermanentFailure as exc:
            result = "failed"
            metrics.ERRORS.labels(kind=reg.kind, reason="PermanentFailure").inc()
            new_status = failed_status(body, exc.reason, exc.message, ctx.now, flat=reg.flat_failure)
            old_phase = (body.get("status") or {}).get("phase")
            if old_phase != "Failed" or (body.get("status") or {}).get("reason") != exc.reason:
                events = [rplan.EventNote.warning(exc.reason, exc.message)]
        except kopf.TemporaryError:
            metrics.ERRORS.labels(kind=reg.kind, reason="TemporaryError").inc()
            metrics.RECONCILES.labels(kind=reg.kind, result="error").inc()
            raise
        except client.ApiError as exc:
            metrics.ERRORS.labels(kind=reg.kind, reason="ApiError").inc()
            metrics.RECONCILES.labels(kind=reg.kind, result="error").inc()
            if exc.status in {400, 403, 422}:
                # The API refused what we built: a bug or missing RBAC; report it on the object.
                new_status = failed_status(body, "ChildRejected", str(exc), ctx.now, flat=reg.flat_failure)
                # The API refuses again on every pass: warn once per distinct refusal, not per pass.
                stored = body.get("status") or {}
                if _failure(stored) != _failure(new_status):
                    events = [rplan.EventNote.warning("ChildRejected", str(exc))]
                _write(reg, ctx, body, new_status, events)
                return new_status
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        except Exception:
            metrics.ERRORS.labels(kind=reg.kind, reason="Exception").inc()
            metrics.RECONCILES.labels(kind=reg.kind, result="error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(kind=reg.kind).observe(time.perf_counter() - started)
        _write(reg, ctx, body, new_status, events)
    schedule_wake(reg, ctx, body, wake_at)
    metrics.RECONCILES.labels(kind=reg.kind, result=result).inc()
    if new_status is not None:
        metrics.PHASES.observe(reg.kind, uid, new_status.get("phase"))
    return new_status


def _write(
    reg: Registration,
    ctx: Context,
    body: Mapping[str, Any],
    status: dict[str, Any] | None,
    events: list[rplan.EventNote],
) -> None:
    meta = body.get("metadata") or {}
    if status is not None and status != (body.get("status") or {}):
        stored = ctx.kube.apply_status(
            common.API_VERSION, reg.kind, meta["name"], meta.get("namespace"), status
        )
        version = ((stored or {}).get("metadata") or {}).get("resourceVersion")
        if version:
            _WRITTEN_RV[str(meta.get("uid", ""))] = str(version)
    regarding = {"apiVersion": common.API_VERSION, "kind": reg.kind, "metadata": dict(meta)}
    for note in events:
        ctx.kube.event(regarding, reason=note.reason, message=note.message, type_=note.type, now=ctx.now)


def _validation_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def reconcile_by_name(plural: str, ctx: Context, name: str, namespace: str) -> dict[str, Any] | None:
    """Reconcile an object of a registered kind by name (used when one of its children changed)."""
    reg = REGISTRY.get(plural)
    if reg is None:
        return None
    body = ctx.kube.get(common.API_VERSION, reg.kind, name, namespace)
    if body is None:
        return None
    return run(reg, ctx, body)


WAKE_MARGIN_SECONDS = 0.5  # wake just after the time, so the pass finds it due


class _Wakes:
    """One thread that holds every pending wake-up in a heap (not a thread per object: 5,000
    runs with a short TTL would be 5,000 threads), and hands a due one to a small pool."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self.pending: dict[tuple[str, str], tuple[datetime.datetime, int, Callable[[], None]]] = {}
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def put(
        self, key: tuple[str, str], at: datetime.datetime, delay: float, call: Callable[[], None]
    ) -> None:
        with self._cond:
            current = self.pending.get(key)
            if current is not None and current[0] == at:
                return
            self._seq += 1
            self.pending[key] = (at, self._seq, call)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, key))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="mlops-wakes", daemon=True)
                self._thread.start()
            self._cond.notify()

    def drop(self, key: tuple[str, str]) -> None:
        with self._cond:
            self.pending.pop(key, None)  # its heap entry is skipped when it comes up

    def clear(self) -> None:
        with self._cond:
            self.pending.clear()
            self._heap.clear()
            pool, self._pool = self._pool, None
            self._cond.notify()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, seq, key = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                current = self.pending.get(key)
                if current is None or current[1] != seq:
                    continue  # replaced or dropped meanwhile
                del self.pending[key]
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="mlops-wake")
                pool = self._pool
            pool.submit(current[2])


_WAKES = _Wakes()


def _wake(reg: Registration, ctx: Context, name: str, namespace: str) -> None:
    fresh = dataclasses.replace(ctx, now=datetime.datetime.now(datetime.UTC))
    try:
        reconcile_by_name(reg.plural, fresh, name, namespace)
    except Exception as exc:  # the resync retries; a wake-up never raises into a thread
        ctx.logger.warning("scheduled pass of %s %s/%s failed: %s", reg.kind, namespace, name, exc)


def schedule_wake(
    reg: Registration, ctx: Context, body: Mapping[str, Any], at: datetime.datetime | None
) -> None:
    """Reconcile the object again at ``at`` (``Plan.wake_at``: a refresh schedule, a deadline,
    a TTL) when that comes before its kind's next resync, like controller-runtime's
    RequeueAfter. One pending wake-up per object, replaced when the time moves. It is only a
    wake-up call: what is due is decided from the status and the clock, so one lost to a
    restart costs at most one resync, and no per-object kopf timer (which would put a
    finalizer on the object) is needed."""
    meta = body.get("metadata") or {}
    key = (reg.plural, str(meta.get("uid", "")))
    delay = None if at is None else (at - ctx.now).total_seconds() + WAKE_MARGIN_SECONDS
    if at is None or delay is None or delay > reg.interval:
        _WAKES.drop(key)  # nothing due, or the resync comes round first (and plans again)
        return
    name, namespace = str(meta.get("name")), str(meta.get("namespace"))
    _WAKES.put(key, at, delay, functools.partial(_wake, reg, ctx, name, namespace))


def cancel_wake(reg: Registration, uid: str) -> None:
    """The object is gone: drop its wake-up."""
    _WAKES.drop((reg.plural, uid))


def cancel_wakes() -> None:
    """The operator stops: no wake-up may call a closed client."""
    _WAKES.clear()


def register(
    *,
    kind: str,
    plural: str,
    reconcile: ReconcileFn,
    interval: float = 60.0,
    forget: Callable[[str], None] | None = None,
    status_model: type[common.StatusBase] | None = None,
) -> Registration:
    """Wire ``reconcile`` to kopf for ``plural`` of mlops.dev/v1alpha1; ``forget(uid)`` runs when
    an object is deleted, for handlers that keep something in memory per object.
    ``status_model``: the kind's status, when it lacks the top-level reason and message a
    failure otherwise writes."""
    flat = status_model is None or {"reason", "message"} <= set(status_model.model_fields)
    reg = Registration(
        kind=kind, plural=plural, reconcile=reconcile, interval=interval, forget=forget, flat_failure=flat
    )
    REGISTRY[plural] = reg

    async def on_event(event: kopf.RawEvent, memo: kopf.Memo, logger: Any, **_: Any) -> None:
        await handle_event(reg, event, memo, logger)

    group, version = common.GROUP, common.VERSION
    kopf.on.event(group, version, plural, id="reconcile")(on_event)
    return reg


async def handle_event(reg: Registration, event: Mapping[str, Any], memo: Any, logger: Any) -> None:
    """One watch event of a registered kind: DELETED forgets the object's memory; the event of
    this process's own status write is skipped; anything else reconciles."""
    body: dict[str, Any] = dict(event.get("object") or {})
    meta: dict[str, Any] = dict(body.get("metadata") or {})
    uid = str(meta.get("uid", ""))
    if event.get("type") == "DELETED":
        metrics.PHASES.forget(reg.kind, uid)
        _LOCKS.pop(uid, None)
        _WRITTEN_RV.pop(uid, None)
        _ATTEMPTS.pop(uid, None)
        cancel_wake(reg, uid)
        if reg.forget is not None:
            reg.forget(uid)
        return
    if meta.get("resourceVersion") is not None and _WRITTEN_RV.get(uid) == meta.get("resourceVersion"):
        return  # the event of this process's own status write: nothing else changed
    await _reconcile_event(reg, memo, logger, body)


# Failed passes of an object in a row (for the retry delay); reset by a pass that succeeds.
_ATTEMPTS: dict[str, int] = {}
RETRY_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 30, 60)


async def _reconcile_event(reg: Registration, memo: Any, logger: Any, body: dict[str, Any]) -> None:
    """Reconcile the object of a watch event (every event: the initial listing at start-up, a
    change by anyone but this process's own status write). kopf's change handlers are not used:
    they keep a copy of the spec in an annotation (the diff base) and patch it after every
    change, which a level-triggered reconciler does not need. A failed pass is retried with
    backoff (``RETRY_DELAYS``; a ``kopf.TemporaryError``'s own delay first) by re-reading the
    object, as kopf would; the resync loop stays the safety net."""
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid", ""))
    try:
        await in_pool(reg.kind, memo, run, reg, memo_context(memo, logger), body)
    except Exception as exc:  # retried below, never lost
        attempt = _ATTEMPTS.get(uid, 0)
        _ATTEMPTS[uid] = attempt + 1
        delay = getattr(exc, "delay", None) or RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        logger.warning(
            "reconcile of %s %s/%s failed (retry in %s s): %s",
            reg.kind,
            meta.get("namespace"),
            meta.get("name"),
            delay,
            exc,
        )
        task = asyncio.create_task(
            _retry(
                reg,
                memo,
                logger,
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace")),
                delay=delay,
            )
        )
        _RETRIES.add(task)
        task.add_done_callback(_RETRIES.discard)
        return
    _ATTEMPTS.pop(uid, None)


_RETRIES: set[asyncio.Task[None]] = set()


async def in_pool(kind: str, memo: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a pass in the worker pool, counted in the kind's queue depth while it waits or runs."""
    gauge = metrics.QUEUE_DEPTH.labels(kind=kind)
    gauge.inc()
    try:
        return await asyncio.get_running_loop().run_in_executor(getattr(memo, "executor", None), fn, *args)
    finally:
        gauge.dec()


async def _retry(
    reg: Registration, memo: Any, logger: Any, *, name: str, namespace: str, delay: float
) -> None:
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    try:
        fresh = await loop.run_in_executor(
            getattr(memo, "executor", None), memo.kube.get, common.API_VERSION, reg.kind, name, namespace
        )
    except Exception as exc:  # the resync loop tries again
        logger.warning("retry of %s %s/%s could not read it: %s", reg.kind, namespace, name, exc)
        return
    if fresh is not None:
        await _reconcile_event(reg, memo, logger, fresh)


def _list_watched(kube: client.Kube, kind: str, patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every object of ``kind`` in the watched namespaces, listed the way the RBAC allows: one
    cluster-wide LIST when all namespaces are watched, else one LIST per namespace (literal
    names as given; globs resolved against the namespace list, which kopf needs too); or, once
    the caches have synced, from them, which hold exactly the watched namespaces."""
    if isinstance(kube, cache.CachedKube):
        cached = kube.list_watched(common.API_VERSION, kind)
        if cached is not None:
            return cached
    if not patterns:
        return kube.list(common.API_VERSION, kind)
    literal = [p for p in patterns if cache.NamespaceFilter((p,)).literal]
    names = set(literal)
    if len(literal) < len(patterns):
        names |= {
            str(ns["metadata"]["name"])
            for ns in kube.list("v1", "Namespace")
            if cache.NamespaceFilter(patterns)(ns["metadata"]["name"])
        }
    items: list[dict[str, Any]] = []
    for namespace in sorted(names):
        items += kube.list(common.API_VERSION, kind, namespace)
    return items


def _resync_one(reg: Registration, memo: Any, logger: Any, body: dict[str, Any]) -> None:
    try:
        run(reg, memo_context(memo, logger), body)
    except Exception as exc:  # the next resync retries; one object never stops the loop
        logger.warning(
            "resync of %s %s/%s failed: %s",
            reg.kind,
            body.get("metadata", {}).get("namespace"),
            body.get("metadata", {}).get("name"),
            exc,
        )


async def resync_forever(
    memo: Any, logger: Any, namespaces: tuple[str, ...], *, concurrency: int = 8
) -> None:
    """Re-reconcile every object of every kind on its kind's interval (like controller-runtime's
    SyncPeriod): TTL expiry, autoscaling samples and missed events are handled here.

    One LIST per kind (and watched namespace) per interval, instead of a kopf timer per object:
    kopf puts a finalizer on every object that has a timer, so a stopped operator would block
    deletions (and namespace deletions) until it came back. This loop needs none. Each kind
    has its own loop, so a kind with many objects never delays another's cadence (the
    autoscaler's 5 s samples).
    """
    await asyncio.gather(
        *(_resync_kind(reg, memo, logger, namespaces, concurrency) for reg in list(REGISTRY.values()))
    )


async def _resync_kind(
    reg: Registration, memo: Any, logger: Any, namespaces: tuple[str, ...], concurrency: int
) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    executor = getattr(memo, "executor", None)

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            await in_pool(reg.kind, memo, _resync_one, reg, memo, logger, body)

    while True:
        await asyncio.sleep(reg.interval)
        try:
            mine = await loop.run_in_executor(executor, _list_watched, memo.kube, reg.kind, namespaces)
        except Exception as exc:  # try again on the next interval
            logger.warning("resync list of %s failed: %s", reg.kind, exc)
            continue
        await asyncio.gather(*(one(body) for body in mine))


def _owner_from_labels(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """(plural, name) of the registered owner named by a child's ``mlops.dev/<kind>`` label."""
    for reg in REGISTRY.values():
        name = labels.get(f"mlops.dev/{reg.kind.lower()}")
        if name:
            return reg.plural, name
    return None


def _owner_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(plural, name) of the registered kind that owns a child.

    The controller owner reference decides when it is one of ours (Jobs, ConfigMaps,
    Deployments, trial TrainingJobs); pods are owned by Jobs or ReplicaSets, so for them the
    ``mlops.dev/<kind>`` label that the pod template carries decides, the component label
    breaking ties (a trial's pods also carry their sweep's label).
    """
    meta = body.get("metadata") or {}
    by_kind = {reg.kind: reg for reg in REGISTRY.values()}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and str(ref.get("apiVersion", "")).startswith(common.GROUP + "/"):
            reg = by_kind.get(str(ref.get("kind")))
            if reg is not None:
                return reg.plural, str(ref.get("name"))
    labels = dict(meta.get("labels") or {})
    preferred = {
        "prepare": "datasets",
        "train": "trainingjobs",
        "trial": "hyperparametersweeps",
        "serving": "modeldeployments",
    }.get(labels.get(rowner.LABEL_COMPONENT, ""))
    if preferred in REGISTRY:
        name = labels.get(f"mlops.dev/{REGISTRY[preferred].kind.lower()}")
        if name:
            return preferred, name
    return _owner_from_labels(labels)


CHILD_DEBOUNCE_SECONDS = 0.3
_PENDING: set[tuple[str, str, str]] = set()


async def on_child_event(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A labelled child changed: reconcile its owner, once per burst.

    A Job's pod goes Pending, Running and Succeeded within a second, and its Job changes with
    it: those events are coalesced into one pass per owner. The key leaves the pending set
    before the pass reads the cluster, so an event that arrives during the pass schedules
    another one and nothing is missed.
    """
    owner = _owner_of(body)
    if owner is None:
        return
    namespace = str(body.get("metadata", {}).get("namespace", "default"))
    key = (owner[0], namespace, owner[1])
    if key in _PENDING:
        return
    _PENDING.add(key)
    try:
        await asyncio.sleep(CHILD_DEBOUNCE_SECONDS)
    finally:
        _PENDING.discard(key)
    ctx = memo_context(memo, logger)
    kind = REGISTRY[owner[0]].kind if owner[0] in REGISTRY else owner[0]
    await in_pool(kind, memo, reconcile_by_name, owner[0], ctx, owner[1], namespace)


_CHILD_SELECTOR = {rowner.LABEL_MANAGED_BY: rowner.MANAGED_BY}


def watch_children(group: str, version: str, plural: str) -> None:
    """Re-reconcile owners when children of this type (labelled managed-by mlops-operator) change."""
    kopf.on.event(group, version, plural, labels=_CHILD_SELECTOR, id=f"child-{plural}")(on_child_event)


def carry_out(ctx: Context, namespace: str, plan: rplan.Plan[Any]) -> Outcome:
    """Do what a pure plan decided, in one order for every kind: delete, create once, apply,
    patch, apply under another field manager; then hand the status and Events to ``run``, which writes them.

    ``create_once`` children (a sweep's trials) are applied in order, one after the other, so a
    crash mid-batch leaves a prefix, never a gap; the plan lists only those not made yet.
    """
    for ref in plan.delete:
        ctx.kube.delete(ref.api_version, ref.kind, ref.name, namespace)
    for manifest in [*plan.create_once, *plan.apply]:
        ctx.kube.apply(manifest)
    for ref, patch in plan.patch:
        ctx.kube.patch(ref.api_version, ref.kind, ref.name, namespace, patch)
    for manager, manifest in plan.apply_as:
        ctx.kube.apply(manifest, field_manager=manager)
    return Outcome(status=plan.status, events=list(plan.events), wake_at=plan.wake_at)
