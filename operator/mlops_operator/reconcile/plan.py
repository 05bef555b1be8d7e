"""The shapes every kind's pure reconciler returns, and that the framework carries out.

One reconcile pass of any kind is ``observe`` (the handler reads the cluster), a pure ``plan``
(this package) and the framework's ``carry_out``: delete, create what must be made only once,
apply (server-side apply, so a spec change reaches existing children), patch, then the status
and the Events. Sharing these types means a new kind writes only its decisions; the order of the
writes, retries, error handling and Event posting live in one place (kueue's ``jobframework``
is the model: one generic reconciler, one small interface per kind).

Pure: no kopf, no client, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Generic, NamedTuple, TypeVar

StatusT = TypeVar("StatusT")


@dataclasses.dataclass(frozen=True)
class ChildRef:
    """A child object by type and name, in the owner's namespace."""

    api_version: str
    kind: str
    name: str


class EventNote(NamedTuple):
    """An Event to post on the owner once its status is stored (``type`` is Normal or Warning).

    A tuple, so a reconciler's tests may compare with ``("Normal", "Ready", "...")``.
    """

    type: str
    reason: str
    message: str

    @classmethod
    def normal(cls, reason: str, message: str) -> EventNote:
        return cls("Normal", reason, message)

    @classmethod
    def warning(cls, reason: str, message: str) -> EventNote:
        return cls("Warning", reason, message)


@dataclasses.dataclass
class Plan(Generic[StatusT]):
    """One pass's decisions, in the order the framework carries them out.

    - ``delete``: children to remove (a missing one is no error);
    - ``create_once``: children made once and never rewritten (a sweep's trials): created
      with server-side apply only when the observed children do not have them yet;
    - ``apply``: children whose whole desired state is applied every pass;
    - ``patch``: merge patches of fields of existing children (a Job's ``suspend``);
    - ``apply_as``: objects server-side applied under a field manager of their own, after the
      patches (a retraining run moving a Model's alias as ``mlops-retrain``: the Model's alias
      history then says what moved it);
    - ``status``: the full new status (None: keep what is stored);
    - ``events``: posted after the status is written;
    - ``wake_at``: when time alone makes the next pass due (a refresh schedule, a deadline);
      the framework reconciles again then if that comes before the next resync.
    """

    status: StatusT
    apply: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    patch: list[tuple[ChildRef, dict[str, Any]]] = dataclasses.field(default_factory=list)
    delete: list[ChildRef] = dataclasses.field(default_factory=list)
    events: list[EventNote] = dataclasses.field(default_factory=list)
    create_once: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    apply_as: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    wake_at: datetime.datetime | None = None
