"""The only code that talks to the Kubernetes API.

One ``ApiClient`` is made at startup (kept in kopf's memo, closed at cleanup) and wrapped in
``Kube``, which speaks plain dicts: get, list, server-side apply (field manager
``mlops-operator``, conflicts forced, so a spec change reaches existing children), status
apply, delete and events. A 404 is an answer (``None`` / ``False``), not an error; throttling,
conflicts and server errors become ``kopf.TemporaryError`` so kopf retries the handler, and
other API errors (403, 422, ...) stay ``ApiException`` for the caller to report.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes
from kubernetes.client import exceptions as k8s_exceptions

from mlops_operator import metrics

FIELD_MANAGER = "mlops-operator"
STATUS_FIELD_MANAGER = "mlops-operator-status"
TRANSIENT_STATUSES = {409, 429, 500, 502, 503, 504}

# Kinds whose plural is not lower(kind) + "s", and kinds that are cluster-scoped.
_PLURALS = {
    "Endpoints": "endpoints",
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
    "PriorityClass": "priorityclasses",
    "StorageClass": "storageclasses",
    "HyperparameterSweep": "hyperparametersweeps",
}
_CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PriorityClass",
    "CustomResourceDefinition",
    "ClusterKopfPeering",
}


def plural(kind: str) -> str:
    if kind in _PLURALS:
        return _PLURALS[kind]
    if kind.endswith("y"):
        return kind[:-1].lower() + "ies"
    if kind.endswith("s"):
        return kind.lower() + "es"
    return kind.lower() + "s"


def resource_path(
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace and kind not in _CLUSTER_SCOPED:
        base = f"{base}/namespaces/{namespace}"
    path = f"{base}/{plural(kind)}"
    if name:
        path = f"{path}/{name}"
    if subresource:
        path = f"{path}/{subresource}"
    return path


@dataclasses.dataclass
class ApiError(Exception):
    """An API answer the caller must handle (validation, forbidden, ...), with the server's message."""

    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def connect(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """One ApiClient: in-cluster when a service account is mounted, else the kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            raise kubernetes.config.ConfigException("kubeconfig given")
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    configuration.retries = 2
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Plain-dict access to the API over one shared ApiClient; safe to share between threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self._lock = threading.Lock()
        self.calls = 0  # API requests made; read by tests and benchmarks.

    def close(self) -> None:
        self.api_client.close()

    # -- transport ------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str | None = None,
        counted_as: str | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """One request, counted (as ``counted_as``, default its method); the raw response."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        with self._lock:
            self.calls += 1
        metrics.API_REQUESTS.labels(method=counted_as or method).inc()
        try:
            return self.api_client.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout or self.request_timeout,
            )
        except k8s_exceptions.ApiException as exc:
            raise _translate(exc) from exc
        except (OSError, kubernetes.client.exceptions.ApiValueError) as exc:
            raise kopf.TemporaryError(f"API unreachable: {exc}", delay=5) from exc

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str | None = None,
    ) -> Any:
        data = self._send(method, path, body=body, query=query, content_type=content_type).data
        return json.loads(data) if data else None

    # -- reads ----------------------------------------------------------------------------------
    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call("GET", resource_path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.iter(
                api_version, kind, namespace, label_selector=label_selector, field_selector=field_selector
            )
        )

    def list_versioned(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every object, and the list's resourceVersion (where a watch of the same set starts)."""
        versions: builtins.list[str] = []
        items = list(
            self.iter(
                api_version,
                kind,
                namespace,
                label_selector=label_selector,
                page_size=page_size,
                versions=versions,
            )
        )
        return items, versions[-1] if versions else ""

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[dict[str, Any]]:
        """The watch events (``{"type", "object"}``) of a set from ``resource_version`` on, with
        bookmarks, until the server ends the watch (``timeout_seconds``). A 410 (the version is
        too old) comes back as an ``ERROR`` event, as the API sends it."""
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", timeout_seconds),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        response = self._send(
            "GET",
            resource_path(api_version, kind, namespace),
            query=query,
            counted_as="WATCH",
            timeout=(self.request_timeout, timeout_seconds + 30),
        )
        try:
            for line in kubernetes.watch.watch.iter_resp_lines(response):
                if line:
                    event: dict[str, Any] = json.loads(line)
                    yield event
        finally:
            response.release_conn()

    def iter(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        versions: builtins.list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if token:
                query.append(("continue", token))
            page = self._call("GET", resource_path(api_version, kind, namespace), query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                yield item
            if versions is not None:
                versions.append(str((page.get("metadata") or {}).get("resourceVersion") or ""))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    # -- writes ---------------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any], *, field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply ``obj`` (it must carry apiVersion, kind, metadata.name[, namespace])."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        result: dict[str, Any] = self._call(
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", field_manager), ("force", "true")],
        )
        return result

    def apply_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Server-side apply of the status subresource; fields this manager stops setting are removed."""
        body = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        try:
            result: dict[str, Any] = self._call(
                "PATCH",
                resource_path(api_version, kind, namespace, name, "status"),
                body=body,
                content_type="application/apply-patch+yaml",
                query=[("fieldManager", STATUS_FIELD_MANAGER), ("force", "true")],
            )
        except ApiError as exc:
            if exc.status == 404:
                return None  # Deleted meanwhile: nothing to report on.
            raise
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
        """JSON merge patch; used where apply would take ownership of fields users own."""
        try:
            result: dict[str, Any] = self._call(
                "PATCH",
                resource_path(api_version, kind, namespace, name, subresource),
                body=patch,
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
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
        try:
            self._call(
                "DELETE",
                resource_path(api_version, kind, namespace, name),
                body={"propagationPolicy": propagation},
                content_type="application/json",
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def event(
        self,
        regarding: dict[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        now: datetime.datetime | None = None,
    ) -> None:
        """Post a core/v1 Event about ``regarding`` (an object body), as ``kubectl describe`` shows."""
        meta = regarding.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason[:128],
            "message": message[:1024],
            "type": type_,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._call(
                "POST", resource_path("v1", "Event", namespace), body=event, content_type="application/json"
            )
        except (ApiError, kopf.TemporaryError):
            pass  # Events are best effort; never fail a reconcile for one.


def _translate(exc: k8s_exceptions.ApiException) -> Exception:
    status = int(exc.status or 0)
    message = exc.reason or ""
    reason = ""
    try:
        payload = json.loads(exc.body or "{}")
        message = payload.get("message") or message
        reason = payload.get("reason") or ""
    except (ValueError, TypeError):
        pass
    if status in TRANSIENT_STATUSES or status == 0:
        retry_after = 1.0 if status == 409 else 5.0
        return kopf.TemporaryError(f"API {status} {reason}: {message}", delay=retry_after)
    return ApiError(status=status, reason=reason or str(exc.reason), message=message)
