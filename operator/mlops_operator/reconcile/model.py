"""Model, pure: (model, its version ConfigMaps, the namespace's TrainingJobs and sweeps, now) -> plan.

A pass registers every finished source that names the Model and has no record yet (by its
identity, ``model_build.source_key``), numbering them after the highest number ever given; it
writes each record (``create_once``: an immutable ConfigMap) before the status, so a crash in
between leaves a record the next pass finds and never a second one. The moves a new version
brings (a sweep's ``promote.alias``, the Model's ``promotion`` rule) are read from the records
whose number the status has not acknowledged yet (``status.versionsAssigned``), so they too
survive that crash. Then the ``alias.mlops.dev/<alias>`` annotations whose value the status has
not acted on yet move aliases (or are refused, with a Warning): an annotation set earlier
never undoes a later promotion.

Pure: no kopf, no client, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import model as api
from mlops_operator.reconcile import model_build as build
from mlops_operator.reconcile import plan as rplan

CONDITION_ALIASES = "AliasesResolved"
_VERSION_VALUE = re.compile(r"^v?([0-9]{1,9})$")


@dataclasses.dataclass(frozen=True)
class Observed:
    """What a pass reads: the Model's version ConfigMaps (label ``mlops.dev/model=<name>``), the
    namespace's TrainingJobs and sweeps, and the Model's managedFields (who set an annotation)."""

    config_maps: Sequence[Mapping[str, Any]] = ()
    trainingjobs: Sequence[Mapping[str, Any]] = ()
    sweeps: Sequence[Mapping[str, Any]] = ()
    managed_fields: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass
class _Aliases:
    """The aliases as this pass moves them, with the history and Events of the moves."""

    current: dict[str, api.Alias]
    history: list[api.AliasMove]
    events: list[rplan.EventNote]
    stamp: str

    def move(self, alias: str, to: int, *, by: str, reason: str) -> None:
        old = self.current.get(alias)
        if old is not None and old.version == to:
            return
        self.current[alias] = api.Alias(name=alias, version=to, since=self.stamp)
        self.history.insert(
            0,
            api.AliasMove(
                alias=alias,
                from_=old.version if old else None,
                to=to,
                by=by[:128],
                reason=reason[:512],
                time=self.stamp,
            ),
        )
        before = f" (was v{old.version})" if old else ""
        self.events.append(
            rplan.EventNote.normal("AliasMoved", f"{alias} -> v{to}{before} by {by}: {reason}")
        )


def alias_requests(resource: api.Model) -> dict[str, str]:
    """The ``alias.mlops.dev/<alias>`` annotations: alias -> requested version (as written)."""
    return {
        key[len(api.ALIAS_ANNOTATION_PREFIX) :]: str(value)
        for key, value in resource.metadata.annotations.items()
        if key.startswith(api.ALIAS_ANNOTATION_PREFIX)
    }


def _rule_move(
    resource: api.Model, record: build.Record, live: Mapping[int, build.Record], aliases: _Aliases
) -> None:
    rule = resource.spec.promotion
    if rule is None:
        return
    value = record.metric(rule.metric)
    if value is None:
        return
    current = aliases.current.get(rule.alias)
    held = live.get(current.version) if current is not None else None
    held_value = held.metric(rule.metric) if held is not None else None
    if held is not None and held_value is not None:
        gain = value - held_value if rule.direction == "maximize" else held_value - value
        if gain <= rule.min_improvement or gain <= 0:
            return
        reason = (
            f"v{record.version} {rule.metric} {value:g} beats v{held.version} {held_value:g} "
            f"({rule.direction}, minImprovement {rule.min_improvement:g})"
        )
    elif current is not None and held is not None:
        reason = f"v{record.version} {rule.metric} {value:g}; v{held.version} has no {rule.metric}"
    else:
        reason = f"v{record.version} {rule.metric} {value:g}; {rule.alias} named no version"
    aliases.move(rule.alias, record.version, by="promotion-rule", reason=reason)


def plan(resource: api.Model, *, observed: Observed, now: datetime.datetime) -> rplan.Plan[api.ModelStatus]:
    """Everything one pass decides: the records to write, the status and the Events."""
    meta = resource.metadata
    old = resource.status
    stamp = common.rfc3339(now)
    generation = meta.generation
    records = [r for r in (build.parse_record(cm, meta.uid) for cm in observed.config_maps) if r is not None]
    mine = sorted((r for r in records if r.mine), key=lambda r: r.version)
    known = {r.key for r in mine if r.key}
    highest = max([old.versions_assigned, *[r.version for r in records]])

    # 1. Register what has no record yet, oldest first.
    create: list[dict[str, Any]] = []
    events: list[rplan.EventNote] = []
    fresh: list[build.Record] = []
    for candidate in build.candidates(meta.name, trainingjobs=observed.trainingjobs, sweeps=observed.sweeps):
        if candidate.key in known:
            continue
        highest += 1
        data = build.record_data(resource, candidate, version=highest, created=stamp)
        create.append(build.manifest(resource, data))
        fresh.append(build.Record(version=highest, key=candidate.key, deleted=False, mine=True, data=data))
        known.add(candidate.key)
        source = data.get("source") or {}
        what = f"{source.get('kind')} {source.get('name')}" + (
            f" (trial {source['trial']})" if source.get("trial") else ""
        )
        events.append(
            rplan.EventNote.normal("VersionRegistered", f"v{highest} from {what}: {data.get('modelUri')}")
        )
    everything = [*mine, *fresh]
    live = {r.version: r for r in everything if not r.deleted}

    # 2. Moves that new versions bring, in version order (acknowledged ones are done already).
    aliases = _Aliases(
        current={a.name: a for a in old.aliases}, history=list(old.alias_history), events=events, stamp=stamp
    )
    rule = resource.spec.promotion
    for record in everything:
        if record.version <= old.versions_assigned or record.deleted:
            continue
        promote = record.data.get("promote") or {}
        alias = promote.get("alias")
        if isinstance(alias, str) and alias and (rule is None or rule.alias != alias):
            source = record.data.get("source") or {}
            aliases.move(
                alias,
                record.version,
                by=f"sweep/{source.get('name')}",
                reason=str(promote.get("reason") or ""),
            )
        _rule_move(resource, record, live, aliases)

    # 3. Alias annotations whose value the status has not acted on yet.
    handled: dict[str, str] = {}
    refused: list[str] = []
    old_cond = old.condition(CONDITION_ALIASES)
    old_message = old_cond.message if old_cond is not None and old_cond.status == "False" else ""
    for alias, value in sorted(alias_requests(resource).items()):
        match = _VERSION_VALUE.match(value.strip())
        wanted = int(match.group(1)) if match else None
        problem = None
        if not re.match(api.ALIAS_PATTERN, alias) or len(alias) > 63:
            problem = f"{api.ALIAS_ANNOTATION_PREFIX}{alias}: an alias is a DNS label (a-z, 0-9, -)"
        elif wanted is None:
            problem = f"{api.ALIAS_ANNOTATION_PREFIX}{alias}: {value!r} is not a version number"
        elif wanted not in live:
            problem = f"{api.ALIAS_ANNOTATION_PREFIX}{alias}: version {wanted} does not exist"
        elif alias not in aliases.current and len(aliases.current) >= api.MAX_ALIASES:
            problem = f"{api.ALIAS_ANNOTATION_PREFIX}{alias}: a Model has at most {api.MAX_ALIASES} aliases"
        if problem is not None:
            # Refused, and asked again on every pass (the version may appear later); warned once.
            refused.append(problem + f"; {alias} left unchanged")
            if refused[-1] not in old_message:
                events.append(rplan.EventNote.warning("AliasRefused", refused[-1]))
            if alias in old.alias_annotations:
                handled[alias] = old.alias_annotations[alias]
            continue
        handled[alias] = value
        if old.alias_annotations.get(alias) == value:
            continue
        assert wanted is not None
        manager = build.annotation_manager(observed.managed_fields, api.ALIAS_ANNOTATION_PREFIX + alias)
        aliases.move(
            alias,
            wanted,
            by=f"annotation ({manager})" if manager else "annotation",
            reason=f"{api.ALIAS_ANNOTATION_PREFIX}{alias}: {value}",
        )

    # 4. The status.
    current = sorted(aliases.current.values(), key=lambda a: a.name)
    dangling = [
        f"{a.name} names v{a.version}, which " + ("was deleted" if a.version <= highest else "does not exist")
        for a in current
        if a.version not in live
    ]
    newest = sorted(live.values(), key=lambda r: r.version, reverse=True)
    champion = aliases.current.get("champion")
    status = old.model_copy(
        update={
            "observed_generation": generation,
            "phase": "Ready",
            "versions": [build.status_entry(r) for r in newest[: resource.spec.status_versions]],
            "version_count": len(newest),
            "latest_version": newest[0].version if newest else None,
            "versions_assigned": highest,
            "aliases": current,
            "champion": champion.version if champion is not None else None,
            "alias_history": aliases.history[: api.MAX_ALIAS_HISTORY],
            "alias_annotations": handled,
        }
    )
    problems = dangling + refused
    message = "; ".join(problems)[:1024]
    if dangling and any(d not in old_message for d in dangling):
        events.append(rplan.EventNote.warning("AliasOnDeletedVersion", "; ".join(dangling)[:1024]))
    status = status.with_condition(
        CONDITION_ALIASES,
        "False" if problems else "True",
        reason=("AliasOnDeletedVersion" if dangling else "AliasRefused") if problems else "Resolved",
        message=message or "every alias names a version",
        now=now,
        generation=generation,
    )
    summary = (
        f"{len(newest)} version(s)"
        + (f", latest v{newest[0].version}" if newest else "")
        + (f", champion v{champion.version}" if champion is not None else "")
    )
    # A refused alias annotation asks for what no pass can do until someone changes it: Stalled
    # for kstatus (Flux), as Argo CD's check reads AliasesResolved; the versions still serve.
    if problems:
        status = status.with_progress(
            "Stalled",
            ready=True,
            reason="AliasOnDeletedVersion" if dangling else "AliasRefused",
            message=message,
            now=now,
            generation=generation,
        )
    else:
        status = status.with_progress(
            "Current", ready=True, reason="Ready", message=summary, now=now, generation=generation
        )
    if status.condition("Failed") is not None:  # a failure of an earlier pass is over
        status = status.with_condition(
            "Failed", "False", reason="Ready", message=summary, now=now, generation=generation
        )
    return rplan.Plan(status=status, create_once=create, events=events)
