"""The CLI's view of the cluster: one ``Kube`` client (the operator's k8s layer) and the four kinds.

The CLI reads with the user's kubeconfig and context (never in-cluster credentials unless it runs
in a pod), and lists objects as plain dicts, tolerant of fields it does not know: a newer
operator's status must not break an older CLI.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import kubernetes

from mlops_operator.api import common
from mlops_operator.k8s import client


class CliError(Exception):
    """Something the user must fix or know; printed without a traceback."""


@dataclasses.dataclass
class Session:
    kube: client.Kube
    namespace: str | None  # None: all namespaces

    def list(self, kind: str) -> list[dict[str, Any]]:
        try:
            items = self.kube.list(common.API_VERSION, kind, self.namespace)
        except client.ApiError as exc:
            raise CliError(f"cannot list {kind}s: {exc}") from exc
        return sorted(items, key=lambda o: (namespace_of(o), name_of(o)))

    def get(self, kind: str, name: str, api_version: str = common.API_VERSION) -> dict[str, Any]:
        namespace = self.namespace or "default"
        try:
            obj = self.kube.get(api_version, kind, name, namespace)
        except client.ApiError as exc:
            raise CliError(f"cannot read {kind} {namespace}/{name}: {exc}") from exc
        if obj is None:
            raise CliError(f"{kind} {namespace}/{name} not found")
        return obj

    def close(self) -> None:
        self.kube.close()


def name_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def namespace_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def connect(
    *, kubeconfig: str | None, context: str | None, namespace: str | None, all_namespaces: bool
) -> Session:
    """A session with the user's credentials; the namespace defaults to the context's, then ``default``."""
    configuration = kubernetes.client.Configuration()
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (kubeconfig or context)
    try:
        if in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise CliError(f"no usable kubeconfig: {exc}") from exc
    if all_namespaces:
        ns: str | None = None
    elif namespace:
        ns = namespace
    else:
        ns = _context_namespace(kubeconfig, context, in_cluster=in_cluster)
    return Session(kube=client.Kube(kubernetes.client.ApiClient(configuration)), namespace=ns)


def _context_namespace(kubeconfig: str | None, context: str | None, *, in_cluster: bool) -> str:
    if in_cluster:
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")
