"""One test namespace's mlops.dev objects, driven the way the registry tests drive them.

The tests that run the operator with only the Model handler (the registry, the MLflow export)
play both the user and the missing TrainingJob controller: they server-side apply their objects
as a "GitOps" field manager, so managedFields say exactly who owns what, and they write a
TrainingJob's outcome through the status subresource as its controller would.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from kubernetes import client as k8s

from conftest import Cluster

GROUP, VERSION = "mlops.dev", "v1alpha1"
GITOPS = "gitops-user"


@dataclasses.dataclass
class NamespaceApi:
    cluster: Cluster
    namespace: str
    dataset_digest: str  # the dataset digest a finished TrainingJob reports

    def __post_init__(self) -> None:
        self.custom = k8s.CustomObjectsApi(self.cluster.api_client())
        self.core = k8s.CoreV1Api(self.cluster.api_client())

    def gitops_apply(
        self, kind: str, name: str, spec: dict[str, Any], *, annotations: dict[str, str] | None = None
    ) -> None:
        """Server-side apply ``kind/name`` with ``spec`` as the GitOps field manager."""
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if annotations is not None:
            metadata["annotations"] = annotations
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": metadata, "spec": spec}
        self.cluster.kubectl(
            "apply", "--server-side", f"--field-manager={GITOPS}", "-f", "-", input=json.dumps(manifest)
        )

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return obj

    def finish(self, name: str, value: float, *, spec_hash: str | None = None, **extra: Any) -> None:
        """TrainingJob ``name`` Succeeded with a model and its lineage (``extra``: more status
        fields), as the TrainingJob controller reports it."""
        status = {
            "phase": "Succeeded",
            "objectiveMetric": "accuracy",
            "objectiveValue": value,
            "metrics": {"accuracy": {"validation": value, "test": value - 0.01}},
            "modelUri": f"pvc://models/{self.namespace}/{name}/0123456789abcdef",
            "datasetDigest": self.dataset_digest,
            "specHash": spec_hash or f"hash-{name}",
            **extra,
            "completionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "trainingjobs", name, {"status": status}
        )
