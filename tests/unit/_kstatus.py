"""The kstatus rules Flux (and ``kubectl``-side tools built on cli-utils) apply to a custom resource.

A faithful Python port of ``sigs.k8s.io/cli-utils/pkg/kstatus/status`` ``Compute`` for a kind
with no built-in rules (every CRD): ``checkGenericProperties`` in ``generic.go`` decides, and
when it cannot, ``Compute`` in ``status.go`` falls back to Current. In order:

1. ``metadata.deletionTimestamp`` set → Terminating.
2. ``checkGeneration``: when ``metadata.generation`` and ``status.observedGeneration`` are both
   present and differ → InProgress (``LatestGenerationNotObserved``). An absent
   ``observedGeneration`` skips the check.
3. The conditions in list order: the first of ``Reconciling`` True (→ InProgress) or
   ``Stalled`` True (→ Failed) decides.
4. Otherwise → Current ("Resource is current"). ``Ready`` is not read at all: without
   Reconciling and Stalled an object reads Current, which is why a kind must set them.

Kept as a test helper (not operator code): it is the reference the statuses are checked against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

KStatus = Literal["InProgress", "Failed", "Current", "Terminating"]


@dataclasses.dataclass(frozen=True)
class Result:
    status: KStatus
    message: str
    reason: str = ""


def _int(value: Any) -> int | None:
    # unstructured.NestedInt64: only a JSON integer counts as found.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def compute(obj: Mapping[str, Any]) -> Result:
    """kstatus ``Compute`` of a custom resource given as its JSON (``kubectl get -o json``)."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Result("Terminating", "Resource scheduled for deletion")
    status = obj.get("status") or {}
    generation = _int(meta.get("generation"))
    observed = _int(status.get("observedGeneration"))
    if generation is not None and observed is not None and observed != generation:
        message = (
            f"{obj.get('kind')} generation is {generation}, but latest observed generation is {observed}"
        )
        return Result("InProgress", message, "LatestGenerationNotObserved")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return Result("InProgress", str(cond.get("message") or ""), str(cond.get("reason") or ""))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return Result("Failed", str(cond.get("message") or ""), str(cond.get("reason") or ""))
    return Result("Current", "Resource is current")


def of_status(
    kind: str, status: Mapping[str, Any], *, generation: int = 1, name: str = "x"
) -> dict[str, Any]:
    """A resource body around a status, as a GitOps tool reads it from the API."""
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "status": dict(status),
    }
