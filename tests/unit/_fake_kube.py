"""A read-only stand-in for ``mlops_operator.k8s.client`` in CLI unit tests: objects by kind."""

from __future__ import annotations

from typing import Any


class FakeKube:
    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.closed = False

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects.get(kind, [])
            if namespace is None or o["metadata"]["namespace"] == namespace
        ]

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return next(
            (o for o in self.list(api_version, kind, namespace) if o["metadata"]["name"] == name), None
        )

    def close(self) -> None:
        self.closed = True
