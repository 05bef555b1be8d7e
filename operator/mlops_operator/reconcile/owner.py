"""The owner of every child: its reference, labels and deterministic names, and the spec hash.

Each reconciler builds its children from one ``Owner`` so that owner references, the
``mlops.dev/<kind>: <name>`` labels and ``<parent>-<role>[-<n>]`` names are the same for all
kinds. Pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from mlops_operator.api import common

MANAGED_BY = "mlops-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_SPEC_HASH = "mlops.dev/spec-hash"


@dataclasses.dataclass(frozen=True)
class Owner:
    """The custom resource whose children are being built."""

    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 0
    api_version: str = common.API_VERSION

    @classmethod
    def of(cls, resource: common.Resource) -> Owner:
        meta = resource.metadata
        return cls(
            kind=resource.crd.kind,
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            generation=meta.generation,
        )

    def reference(self, *, controller: bool = True) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": True,
        }

    def labels(self, component: str) -> dict[str, str]:
        """Labels of every child: managed-by, part-of, component and ``mlops.dev/<kind>: <name>``."""
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_PART_OF: "mlops",
            LABEL_COMPONENT: component,
            f"mlops.dev/{self.kind.lower()}": self.name,
        }

    def child_name(self, role: str, index: int | None = None) -> str:
        """Deterministic child name ``<parent>-<role>[-<n>]``, cut to 63 characters with a hash suffix."""
        base = f"{self.name}-{role}" if role else self.name
        if index is not None:
            base = f"{base}-{index}"
        if len(base) <= 63:
            return base
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        return f"{base[:54].rstrip('-')}-{digest}"


def spec_hash(spec: Any) -> str:
    """A stable short hash of a spec (or any JSON-able value), for change detection in annotations."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
