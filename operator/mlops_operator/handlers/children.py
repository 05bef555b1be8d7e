"""The operator's watch-fed caches, and the routing of child changes to their owners.

At startup one informer per kind (and literal watched namespace; one for all namespaces when
the operator watches all of them or globs) lists and watches:

- the children it makes, by the label ``app.kubernetes.io/managed-by: mlops-operator``: Jobs,
  Pods, Deployments, Services and ConfigMaps;
- the custom resources it reconciles or refers to (Datasets, TrainingJobs, sweeps, Models,
  ModelDeployments), all of them.

Reconcile passes read from these (``k8s.cache.CachedKube``), not from the API. A change to a
child (or to a sweep's trial, a ModelDeployment made by a sweep...) reconciles its owner: the
owner is found from the controller owner reference or, for pods, the ``mlops.dev/<kind>``
label (``framework.on_child_event``). The store is updated before the owner is scheduled, so
the pass sees the change that woke it. The operator starts reconciling once every cache has
synced (controller-runtime's ``WaitForCacheSync``); a cache that is late is read through to
the API until it catches up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import kopf

from mlops_operator.api import common
from mlops_operator.handlers import framework
from mlops_operator.k8s import cache
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import trainingjob_build

SYNC_TIMEOUT_SECONDS = 60.0
CHILD_SELECTOR = f"{rowner.LABEL_MANAGED_BY}={rowner.MANAGED_BY}"


def strip_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod as the reconcilers read it: metadata, status, and of the spec only where it runs
    and its containers' names and resources (no volumes, env or probes); the run's config
    annotation, a copy of its Job's, is dropped."""
    cache.strip_managed_fields(pod)
    annotations = (pod.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(trainingjob_build.CONFIG_ANNOTATION, None)
    spec = pod.get("spec") or {}
    kept = {k: spec[k] for k in ("nodeName", "priorityClassName", "schedulerName") if k in spec}
    kept["containers"] = [
        {k: c[k] for k in ("name", "image", "resources") if k in c} for c in spec.get("containers") or []
    ]
    pod["spec"] = kept
    return pod


def strip_job(job: dict[str, Any]) -> dict[str, Any]:
    """A Job as the reconcilers read it: its status, suspend flag, and its pod template's
    metadata (the run's config annotation), not the template's pod spec."""
    cache.strip_managed_fields(job)
    template = (job.get("spec") or {}).get("template")
    if isinstance(template, dict):
        template.pop("spec", None)
    return job


def _keep(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


@dataclasses.dataclass(frozen=True)
class Cached:
    api_version: str
    kind: str
    children: bool  # only the operator's labelled children; their changes wake the owner
    strip: Callable[[dict[str, Any]], dict[str, Any]] = cache.strip_managed_fields
    route: bool = True  # a change reconciles the owner


CACHED: tuple[Cached, ...] = (
    Cached("batch/v1", "Job", children=True, strip=strip_job),
    Cached("v1", "Pod", children=True, strip=strip_pod),
    Cached("apps/v1", "Deployment", children=True),
    Cached("v1", "Service", children=True),
    Cached("v1", "ConfigMap", children=True, route=False),
    # A Model and a ModelDeployment keep their managedFields: who set a Model's alias, who owns
    # a ModelDeployment's spec (a sweep's promotion) are read from them.
    Cached(common.API_VERSION, "Dataset", children=False, route=False),
    Cached(common.API_VERSION, "TrainingJob", children=False),
    Cached(common.API_VERSION, "HyperparameterSweep", children=False, route=False),
    Cached(common.API_VERSION, "Model", children=False, strip=_keep, route=False),
    Cached(common.API_VERSION, "ModelDeployment", children=False, strip=_keep),
)


def _router(loop: asyncio.AbstractEventLoop, memo: Any, logger: Any, *, labelled_only: bool) -> cache.EventFn:
    """Schedule the owner's pass on kopf's loop when a child changes (from an informer's thread)."""

    def route(_type: str, obj: dict[str, Any]) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labelled_only and labels.get(rowner.LABEL_MANAGED_BY) != rowner.MANAGED_BY:
            return  # a user's own TrainingJob or ModelDeployment: kopf's watch of it reconciles it
        body = kopf.Body(typing.cast(kopf.RawBody, obj))
        coro = framework.on_child_event(body=body, memo=memo, logger=logger)
        asyncio.run_coroutine_threadsafe(coro, loop).add_done_callback(_log_failure)

    def _log_failure(future: concurrent.futures.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            # The owner's next event or resync tries again, as for a failed kopf handler.
            logger.warning("pass after a child's change failed: %s", future.exception())

    return route


def informers(
    kube: cache.CachedKube,
    namespaces: tuple[str, ...],
    *,
    on_event: Callable[[Cached], cache.EventFn | None] = lambda _c: None,
) -> list[cache.Informer]:
    """Add the informers of ``CACHED`` for an operator watching ``namespaces`` (patterns) to ``kube``."""
    literal = cache.NamespaceFilter(namespaces).literal
    scopes: list[str | None] = list(dict.fromkeys(namespaces)) if literal else [None]
    keep = cache.NamespaceFilter(() if literal else namespaces)
    made = []
    for spec in CACHED:
        for namespace in scopes:
            made.append(
                kube.add(
                    cache.Informer(
                        kube=kube,
                        api_version=spec.api_version,
                        kind=spec.kind,
                        namespace=namespace,
                        label_selector=CHILD_SELECTOR if spec.children else None,
                        keep=keep,
                        strip=spec.strip,
                        on_event=on_event(spec) if spec.route else None,
                    )
                )
            )
    return made


async def start(memo: Any, logger: Any, namespaces: tuple[str, ...]) -> None:
    """Start the caches on ``memo.kube`` and wait (off the loop) until they have synced."""
    kube = memo.kube
    if not isinstance(kube, cache.CachedKube):
        return
    loop = asyncio.get_running_loop()
    informers(
        kube,
        namespaces,
        on_event=lambda spec: _router(loop, memo, logger, labelled_only=not spec.children),
    )
    kube.start()
    synced = await loop.run_in_executor(None, kube.wait_synced, SYNC_TIMEOUT_SECONDS)
    sizes = {kind: sum(len(i.store) for i in group) for (_api, kind), group in sorted(kube.informers.items())}
    if synced:
        refused = sorted({i.kind for g in kube.informers.values() for i in g if not i.synced.is_set()})
        logger.info(
            "caches synced: %s%s",
            ", ".join(f"{k} {n}" for k, n in sizes.items()),
            f" (refused, read through: {', '.join(refused)})" if refused else "",
        )
    else:
        logger.warning("caches not synced after %s s; reading through to the API", SYNC_TIMEOUT_SECONDS)
