"""Watch-fed caches of the objects the operator reads, as client-go's informers keep them.

Each ``Informer`` lists one set of objects (a kind, in one namespace or all, optionally by
label selector), then watches it from the list's resourceVersion, keeping a ``Store`` that a
reconcile pass reads instead of the API. A watch that ends is resumed from the last version
seen (bookmarks keep it fresh); one that expired (410 Gone) is replaced by a new LIST, and the
objects that disappeared meanwhile are reported as deleted, so nothing stale survives a gap.

``CachedKube`` is a ``client.Kube`` whose ``get`` and ``list`` answer from a synced informer
when one covers the request (an equality label selector, no field selector), and otherwise
from the API. Its writes pass the API's answer into the store at once (write-through, newer
resourceVersions only), so the pass after a write sees what it wrote even before the watch
brings it: a Job just created is not created again, a status just written is not re-read.

Objects are stored stripped (``kubectl``'s last-applied copy, and what an informer's
``strip`` drops: children's ``managedFields``, most of a pod's spec), and handed out as
copies: a caller may change what it gets.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
import kubernetes

from mlops_operator import metrics
from mlops_operator.k8s import client

LOG = logging.getLogger("mlops_operator.cache")

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WATCH_SECONDS = 300
BACKOFF_SECONDS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)

Key = tuple[str, str]  # (namespace, name)
EventFn = Callable[[str, dict[str, Any]], None]  # (ADDED | MODIFIED | DELETED, stripped object)


def version_of(obj: Mapping[str, Any] | None) -> int | None:
    """The resourceVersion as a number (etcd's revision), None when absent or not a number."""
    raw = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` should replace ``current``: a higher resourceVersion, or one of the
    two not comparable (then the later arrival wins, as in client-go)."""
    a, b = version_of(candidate), version_of(current)
    return current is None or a is None or b is None or a >= b


def strip_common(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop what no reconcile pass reads and any object may carry: kubectl's last-applied copy
    of the spec."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        annotations.pop(LAST_APPLIED)
    return obj


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields (often the largest part of a small object), for the kinds whose
    field managers no pass reads (children; a Model's alias history and a sweep's promotion
    target do read theirs)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def parse_selector(selector: str | None) -> dict[str, str] | None:
    """An equality-only label selector (``a=b,c==d``) as a dict; None when it uses anything
    else (``!=``, ``in``, existence), which the store does not answer."""
    wanted: dict[str, str] = {}
    for raw in (selector or "").split(","):
        part = raw.strip()
        if not part:
            continue
        if "!=" in part or " " in part or "(" in part:
            return None
        key, sep, value = part.replace("==", "=").partition("=")
        if not sep:
            return None
        wanted[key.strip()] = value.strip()
    return wanted


class Store:
    """Objects of one informer by (namespace, name), indexed by each label pair; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_label: dict[tuple[str, str, str], set[str]] = {}
        self._by_namespace: dict[str, set[str]] = {}
        # resourceVersion an object had when this process deleted it: a late event of an older
        # version must not bring it back before the watch says DELETED.
        self._tombstones: dict[Key, int | None] = {}
        # resourceVersion of this process's last write of each child (apply or patch by its
        # owner's pass): the watch's echo of that version wakes nobody.
        self._echoes: dict[Key, int] = {}

    def __len__(self) -> int:
        return len(self._objects)

    @staticmethod
    def key(obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _index(self, key: Key, obj: Mapping[str, Any], *, add: bool) -> None:
        namespace, name = key
        labels = (obj.get("metadata") or {}).get("labels") or {}
        entries = [self._by_label.setdefault((namespace, k, str(v)), set()) for k, v in labels.items()]
        names = self._by_namespace.setdefault(namespace, set())
        if add:
            names.add(name)
            for entry in entries:
                entry.add(name)
            return
        names.discard(name)
        for (k, v), entry in zip(labels.items(), entries, strict=True):
            entry.discard(name)
            if not entry:
                self._by_label.pop((namespace, k, str(v)), None)
        if not names:
            self._by_namespace.pop(namespace, None)

    def _put(self, key: Key, obj: dict[str, Any]) -> None:
        old = self._objects.get(key)
        if old is not None:
            self._index(key, old, add=False)
        self._objects[key] = obj
        self._index(key, obj, add=True)

    def _drop(self, key: Key) -> dict[str, Any] | None:
        old = self._objects.pop(key, None)
        if old is not None:
            self._index(key, old, add=False)
        return old

    def upsert(self, obj: dict[str, Any]) -> bool:
        """Store ``obj`` unless what is stored is newer; True when it was stored."""
        key = self.key(obj)
        with self._lock:
            if key in self._tombstones:
                dead, version = self._tombstones[key], version_of(obj)
                if dead is None or version is None or version <= dead:
                    return False
                del self._tombstones[key]
            if not newer(obj, self._objects.get(key)):
                return False
            self._put(key, obj)
            return True

    def expect_echo(self, obj: Mapping[str, Any]) -> None:
        version = version_of(obj)
        if version is not None:
            with self._lock:
                self._echoes[self.key(obj)] = version

    def is_echo(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is the watch's copy of a version this process wrote (then forgotten)."""
        key, version = self.key(obj), version_of(obj)
        with self._lock:
            if version is None or self._echoes.get(key) != version:
                return False
            del self._echoes[key]
            return True

    def remove(self, namespace: str, name: str, *, tombstone: bool = False) -> dict[str, Any] | None:
        """Forget an object: the watch said DELETED, or (``tombstone``) this process deleted it,
        when events of the versions before the delete are ignored until a newer one comes."""
        with self._lock:
            old = self._drop((namespace, name))
            if tombstone and old is not None:
                self._tombstones[(namespace, name)] = version_of(old)
            elif not tombstone:
                self._tombstones.pop((namespace, name), None)
            return old

    def replace(self, items: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Make the store exactly ``items`` (a fresh LIST); returns (changed, removed)."""
        fresh = {self.key(obj): obj for obj in items}
        changed: list[dict[str, Any]] = []
        with self._lock:
            self._tombstones.clear()
            self._echoes.clear()
            removed = [self._drop(key) for key in list(self._objects) if key not in fresh]
            for key, obj in fresh.items():
                old = self._objects.get(key)
                if old is None or version_of(old) != version_of(obj):
                    changed.append(obj)
                self._put(key, obj)
        return changed, [obj for obj in removed if obj is not None]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def select(self, namespace: str | None, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Copies of the objects in ``namespace`` (None: all) whose labels include ``labels``."""
        with self._lock:
            if namespace is None:
                keys = [k for k, obj in self._objects.items() if _matches(obj, labels)]
            else:
                candidates: set[str] | None = None
                for k, v in labels.items():
                    names = self._by_label.get((namespace, k, v), set())
                    candidates = set(names) if candidates is None else candidates & names
                    if not candidates:
                        return []
                if candidates is None:
                    candidates = set(self._by_namespace.get(namespace, set()))
                keys = [(namespace, name) for name in candidates]
            return [copy.deepcopy(self._objects[k]) for k in sorted(keys)]


def _matches(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


@dataclasses.dataclass(frozen=True)
class NamespaceFilter:
    """The namespaces an operator watching ``patterns`` reconciles (globs as kopf reads them;
    none: all of them)."""

    patterns: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not self.patterns

    @property
    def literal(self) -> bool:
        """Names only, no globs: a namespaced operator, one LIST or watch per namespace."""
        return bool(self.patterns) and not any(c in p for p in self.patterns for c in "*?[")

    def __call__(self, namespace: str | None) -> bool:
        return self.everything or any(fnmatch.fnmatchcase(namespace or "", p) for p in self.patterns)


@dataclasses.dataclass
class Informer:
    """LIST then WATCH one set of objects into a ``Store``, in a daemon thread, for ever."""

    kube: client.Kube
    api_version: str
    kind: str
    namespace: str | None = None  # None: every namespace
    label_selector: str | None = None
    keep: NamespaceFilter = NamespaceFilter()  # which namespaces to store (globs)
    strip: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj
    on_event: EventFn | None = None

    def __post_init__(self) -> None:
        self.store = Store()
        self.synced = threading.Event()
        # Synced, or refused (403: no RBAC for the kind; 404: its CRD is not installed): the
        # start-up wait is over either way, and a refused kind is read through to the API
        # (whose refusal then reaches the pass that needs it) while the informer keeps trying.
        self.settled = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version = ""
        self._gauge = metrics.CACHE_OBJECTS.labels(kind=self.kind, namespace=self.namespace or "")
        self.wanted = parse_selector(self.label_selector) or {}

    # -- what a pass reads ------------------------------------------------------------------------
    def covers(self, namespace: str | None) -> bool:
        """Whether this informer answers for ``namespace`` (None: all). A label-filtered one
        answers for its kind as a client-go lister does: with the objects that have its labels,
        which every child of the operator carries, so a request's own selector needs no check."""
        if not self.synced.is_set():
            return False
        if self.namespace is not None and namespace != self.namespace:
            return False
        if namespace is not None and not self.keep(namespace):
            return False
        return not (namespace is None and self.namespace is None and not self.keep.everything)

    def admit(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` belongs to this informer's set (for write-through)."""
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        if self.namespace is not None and namespace != self.namespace:
            return False
        if not self.keep(namespace):
            return False
        return _matches(obj, self.wanted)

    def prepare(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        return self.strip(strip_common(obj))

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            name = f"mlops-informer-{self.kind.lower()}-{self.namespace or 'all'}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _emit(self, type_: str, obj: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(type_, obj)
        except Exception as exc:  # a handler's failure never stops the watch
            LOG.warning("%s informer handler failed: %s", self.kind, exc)

    def relist(self) -> None:
        items, version = self.kube.list_versioned(
            self.api_version, self.kind, self.namespace, label_selector=self.label_selector
        )
        kept = [self.prepare(obj) for obj in items if self.keep(str(obj["metadata"].get("namespace") or ""))]
        changed, removed = self.store.replace(kept)
        self._version = version
        self._gauge.set(len(self.store))
        first = not self.synced.is_set()
        self.synced.set()
        self.settled.set()
        if first:
            return  # the owners' own listing at start-up reconciles everything once already
        for obj in removed:
            self._emit("DELETED", obj)
        for obj in changed:
            self._emit("MODIFIED", obj)

    def _run(self) -> None:
        attempt = 0
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.relist()
                    need_list = False
                need_list = self._watch()
                attempt = 0
            except (client.ApiError, kopf.TemporaryError, OSError, ValueError) as exc:
                reason = "error"
                if isinstance(exc, client.ApiError) and exc.status == 410:
                    need_list, reason = True, "expired"
                if isinstance(exc, client.ApiError) and exc.status in (403, 404):
                    if not self.settled.is_set():
                        LOG.warning("cannot cache %s (%s); reading it through to the API", self.kind, exc)
                    self.settled.set()
                    attempt = len(BACKOFF_SECONDS) - 1  # RBAC or a CRD may come later: retry slowly
                metrics.WATCH_RESTARTS.labels(kind=self.kind, reason=reason).inc()
                delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                attempt += 1
                LOG.info("%s watch restarts in %s s: %s", self.kind, delay, exc)
                self._stop.wait(delay)
            except Exception as exc:  # the informer must outlive any surprise
                metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="error").inc()
                LOG.warning("%s informer failed, relisting: %s", self.kind, exc)
                need_list = True
                self._stop.wait(BACKOFF_SECONDS[-1] if attempt > 3 else 1)
                attempt += 1

    def _watch(self) -> bool:
        """One watch from the last version; True when a relist is needed (410 Gone)."""
        try:
            events = self.kube.watch(
                self.api_version,
                self.kind,
                self.namespace,
                resource_version=self._version,
                label_selector=self.label_selector,
                timeout_seconds=WATCH_SECONDS,
            )
            for event in events:
                if self._stop.is_set():
                    return False
                if self._handle(event):
                    metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="expired").inc()
                    return True
        except kubernetes.client.exceptions.ApiException as exc:  # raised while streaming
            if exc.status == 410:
                metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="expired").inc()
                return True
            raise
        metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="timeout").inc()
        return False

    def _handle(self, event: Mapping[str, Any]) -> bool:
        type_ = str(event.get("type") or "")
        obj: dict[str, Any] = dict(event.get("object") or {})
        if type_ == "ERROR":
            if int(obj.get("code") or 0) == 410:
                return True
            raise client.ApiError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message")))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = str(version)
        if type_ == "BOOKMARK":
            return False
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        if not self.keep(namespace):
            return False
        obj = self.prepare(obj)
        if type_ == "DELETED":
            key = Store.key(obj)
            self.store.remove(*key)
        else:
            # An event older than what a write of ours stored is not stored, but still wakes the
            # owner (it reads the newest): the change it reports may be one the write came after.
            self.store.upsert(obj)
            if self.store.is_echo(obj):
                return False  # the owner's own write coming back: it knows, nothing else changed
        self._gauge.set(len(self.store))
        self._emit(type_, obj)
        return False


class CachedKube(client.Kube):
    """``client.Kube`` that reads from synced informers and writes through to them."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout: float = 30.0) -> None:
        super().__init__(api_client, request_timeout=request_timeout)
        self.informers: dict[tuple[str, str], list[Informer]] = {}

    def add(self, informer: Informer) -> Informer:
        self.informers.setdefault((informer.api_version, informer.kind), []).append(informer)
        return informer

    def start(self) -> None:
        for group in self.informers.values():
            for informer in group:
                informer.start()

    def stop(self) -> None:
        for group in self.informers.values():
            for informer in group:
                informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for group in self.informers.values():
            for informer in group:
                if not informer.settled.wait(max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def _for(self, api_version: str, kind: str, namespace: str | None) -> Informer | None:
        for informer in self.informers.get((api_version, kind), []):
            if informer.covers(namespace):
                return informer
        return None

    def list_watched(self, api_version: str, kind: str) -> list[dict[str, Any]] | None:
        """Every unfiltered ``kind`` object of the watched namespaces, or None when no synced
        informer holds them all."""
        group = [i for i in self.informers.get((api_version, kind), []) if not i.wanted]
        if not group or not all(i.synced.is_set() for i in group):
            return None
        metrics.CACHE_READS.labels(kind=kind, result="list").inc()
        return [obj for informer in group for obj in informer.store.select(None, {})]

    # -- reads ------------------------------------------------------------------------------------
    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        informer = self._for(api_version, kind, namespace)
        if informer is None or not namespace:
            return super().get(api_version, kind, name, namespace)
        # Authoritative, as a client-go lister is: a filtered informer answers for the objects
        # with its labels (every child carries managed-by), and absent means not made yet.
        found = informer.store.get(namespace, name)
        metrics.CACHE_READS.labels(kind=kind, result="hit" if found is not None else "absent").inc()
        return found

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        labels = None if field_selector else parse_selector(label_selector)
        informer = self._for(api_version, kind, namespace) if labels is not None else None
        if informer is None or labels is None:
            return super().list(
                api_version, kind, namespace, label_selector=label_selector, field_selector=field_selector
            )
        metrics.CACHE_READS.labels(kind=kind, result="list").inc()
        return informer.store.select(namespace, labels)

    # -- writes pass what the API answered into the store -----------------------------------------
    def _through(self, obj: Mapping[str, Any] | None, *, echo: bool) -> None:
        """Store what a write returned. ``echo``: a pass wrote its own child (apply, patch), so
        the watch's copy of this version need not wake the owner; a status write (the object's
        own pass) must still wake the object's owner (a sweep learns of its trial's end)."""
        if not obj or not obj.get("kind"):
            return
        for informer in self.informers.get((str(obj.get("apiVersion")), str(obj.get("kind"))), []):
            if informer.admit(obj):
                informer.store.upsert(informer.prepare(copy.deepcopy(dict(obj))))
                if echo:
                    informer.store.expect_echo(obj)

    def apply(self, obj: dict[str, Any], *, field_manager: str = client.FIELD_MANAGER) -> dict[str, Any]:
        result = super().apply(obj, field_manager=field_manager)
        self._through(result, echo=True)
        return result

    def apply_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        result = super().apply_status(api_version, kind, name, namespace, status)
        self._through(result, echo=False)
        return result

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        result = super().patch(api_version, kind, name, namespace, patch, subresource=subresource)
        self._through(result, echo=subresource is None)
        return result

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool:
        gone = super().delete(api_version, kind, name, namespace, propagation=propagation)
        # Deleted or being deleted: a pass reads it as gone (a finalizer's wait shows in the
        # next watch event, which stores it again with its deletionTimestamp).
        for informer in self.informers.get((api_version, kind), []):
            if namespace is not None:
                informer.store.remove(namespace, name, tombstone=True)
        return gone
