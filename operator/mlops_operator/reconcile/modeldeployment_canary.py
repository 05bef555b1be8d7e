"""Which model each track of a ModelDeployment serves, and the canary's verdict; pure.

Two kinds of canary:
- **explicit** (``spec.canary.model`` set): that model runs beside ``spec.model`` at its share
  until the spec changes, as KServe's ``canaryTrafficPercent``; Healthy keeps its share,
  RolledBack removes it until the canary spec changes.
- **automatic** (``spec.canary`` without a model): each NEW version ``spec.model`` resolves to
  (a Model alias moved, the TrainingJob re-ran, the sweep found a better trial) is the canary
  beside the version served now (``status.servedModelUri``). Healthy promotes it: the stable
  track rolls to it while the canary pods keep answering until that rollout is done (no pass
  leaves fewer pods than before). RolledBack keeps the served version and refuses that one
  (its URI's hash stays in ``status.canary.specHash``): a later move to another version starts
  a new canary, a move back to the served one ends it.

Everything the next pass needs is in the status (served URI, its S3 connection and version, the
canary's state and the hash of what it judged), so a restart resumes the same rollout.
"""

from __future__ import annotations

import dataclasses
import datetime

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment_metrics as mmetrics
from mlops_operator.reconcile import modeldeployment_source as msource
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan

PodHistory = dict[str, list[tuple[mmetrics.PodMetrics, ...]]]
PodMetrics = dict[str, list[mmetrics.PodMetrics]]


@dataclasses.dataclass
class Tracks:
    """The stable track's model (None: nothing to serve yet), the canary's (None: no canary pods)."""

    stable_uri: str | None
    stable_s3: common.S3Connection | None
    stable_version: int | None
    canary_uri: str | None = None
    canary_s3: common.S3Connection | None = None
    canary: api.CanaryStatus | None = None
    events: list[rplan.EventNote] = dataclasses.field(default_factory=list)


def windowed(
    pod_metrics: PodMetrics, pod_history: PodHistory, track: str, *, since: float
) -> list[mmetrics.PodMetrics]:
    """The track's pods' counters over the window that starts at ``since``."""
    histories = pod_history.get(track)
    if histories is None:
        histories = [(m,) for m in pod_metrics.get(track, [])]
    return [mmetrics.window(h, since=since) for h in histories if h]


def _judge(
    policy: api.RollbackPolicy,
    pod_metrics: PodMetrics,
    pod_history: PodHistory,
    now: datetime.datetime,
) -> tuple[str, str]:
    since = now.timestamp() - policy.window_seconds
    stable = mmetrics.track_stats(windowed(pod_metrics, pod_history, "stable", since=since))
    canary = mmetrics.track_stats(windowed(pod_metrics, pod_history, "canary", since=since))
    return mmetrics.canary_verdict(stable, canary, policy)


def _digest(pod_metrics: PodMetrics, previous: api.CanaryStatus | None) -> str | None:
    digests = {p.digest for p in pod_metrics.get("canary", []) if p.digest}
    return digests.pop() if len(digests) == 1 else (previous.model_digest if previous else None)


def auto_hash(uri: str) -> str:
    """What an automatic canary's status is about: the candidate model's URI."""
    return rowner.spec_hash({"automaticCanary": uri})


def decide(
    md: api.ModelDeployment,
    *,
    stable: msource.Resolved,
    canary_source: msource.Resolved | None,
    pod_metrics: PodMetrics,
    pod_history: PodHistory,
    stable_serving: str | None,
    now: datetime.datetime,
) -> Tracks:
    """The tracks for this pass.

    ``stable`` is what ``spec.model`` resolves to, ``canary_source`` what an explicit
    ``spec.canary.model`` does; ``stable_serving`` is the model URI the observed stable
    Deployment has finished rolling out (None while a rollout runs).
    """
    spec, old = md.spec, md.status
    if stable.uri is not None:
        tracks = Tracks(stable.uri, stable.s3 or spec.model.s3, stable.version)
    else:  # the new source is not ready: what is served stays
        tracks = Tracks(old.served_model_uri, old.served_model_s3 or spec.model.s3, old.served_model_version)
    if spec.canary is None or spec.stage == "archived":
        return tracks
    if spec.canary.model is not None:
        assert canary_source is not None
        return _explicit(
            md,
            spec.canary,
            tracks=tracks,
            resolved=canary_source,
            pod_metrics=pod_metrics,
            pod_history=pod_history,
            now=now,
        )
    return _automatic(
        md,
        spec.canary,
        tracks=tracks,
        stable=stable,
        pod_metrics=pod_metrics,
        pod_history=pod_history,
        stable_serving=stable_serving,
        now=now,
    )


def _explicit(
    md: api.ModelDeployment,
    canary: api.Canary,
    *,
    tracks: Tracks,
    resolved: msource.Resolved,
    pod_metrics: PodMetrics,
    pod_history: PodHistory,
    now: datetime.datetime,
) -> Tracks:
    assert canary.model is not None
    canary_hash = rowner.spec_hash(canary.model.to_api())
    old = md.status.canary
    previous = old if old and old.spec_hash == canary_hash else None
    status = api.CanaryStatus(
        spec_hash=canary_hash,
        model_uri=resolved.uri,
        model_version=resolved.version,
        state=previous.state if previous else "Pending",
        message=previous.message if previous else resolved.message,
    )
    if resolved.uri is None:
        status.state = "Pending"
        status.message = resolved.message
    elif status.state != "RolledBack":
        tracks.canary_uri, tracks.canary_s3 = resolved.uri, resolved.s3
        verdict, message = _judge(canary.rollback, pod_metrics, pod_history, now)
        if verdict == "Progressing" and previous is not None and previous.state == "Healthy":
            # Too few requests in the window (a quiet hour) is no new evidence: stay judged.
            verdict, message = "Healthy", f"still Healthy, too few requests to judge again: {message}"
        status.state = verdict  # type: ignore[assignment]
        status.message = message[:1024]
        if verdict == "RolledBack":
            tracks.canary_uri = None
            tracks.events.append(rplan.EventNote("Warning", "CanaryRolledBack", message))
        elif verdict == "Healthy" and (previous is None or previous.state != "Healthy"):
            tracks.events.append(rplan.EventNote("Normal", "CanaryHealthy", message))
    status.model_digest = _digest(pod_metrics, previous)
    tracks.canary = status
    return tracks


def _named(uri: str, version: int | None) -> str:
    return f"version {version} ({uri})" if version is not None else uri


def _automatic(
    md: api.ModelDeployment,
    canary: api.Canary,
    *,
    tracks: Tracks,
    stable: msource.Resolved,
    pod_metrics: PodMetrics,
    pod_history: PodHistory,
    stable_serving: str | None,
    now: datetime.datetime,
) -> Tracks:
    old = md.status
    served = old.served_model_uri
    candidate = stable.uri
    if candidate is None or served is None or candidate == served:
        # Nothing new to judge: the first model, a source not ready yet, or the served one.
        record = old.canary
        if record is not None and record.state == "Promoted" and record.model_uri == served:
            tracks.canary = record
            # The canary pods answer until the stable track has rolled out the promoted version;
            # once they are gone (replicas 0 stored) they stay gone, or the stable track's scaling
            # back up (not rolled out again) would bring them back, and so on.
            if record.replicas > 0 and stable_serving != served:
                tracks.canary_uri, tracks.canary_s3 = served, tracks.stable_s3
        elif record is not None and record.state == "RolledBack" and candidate is None:
            tracks.canary = record  # still refused; the source says nothing new
        return tracks
    # A new version: judge it on the canary track while the served one keeps the stable track.
    candidate_hash = auto_hash(candidate)
    previous = old.canary if old.canary and old.canary.spec_hash == candidate_hash else None
    named = _named(candidate, stable.version)
    tracks.stable_uri = served
    tracks.stable_s3 = old.served_model_s3 or stable.s3 or md.spec.model.s3
    tracks.stable_version = old.served_model_version
    status = api.CanaryStatus(
        spec_hash=candidate_hash, model_uri=candidate, model_version=stable.version, state="Progressing"
    )
    if previous is not None and previous.state == "RolledBack":
        tracks.canary = previous
        return tracks
    tracks.canary_uri, tracks.canary_s3 = candidate, stable.s3 or md.spec.model.s3
    if previous is None:
        tracks.events.append(
            rplan.EventNote(
                "Normal",
                "CanaryStarted",
                f"{named} serves {canary.traffic_percent}% beside {_named(served, old.served_model_version)}",
            )
        )
    verdict, message = _judge(canary.rollback, pod_metrics, pod_history, now)
    status.message = message[:1024]
    status.model_digest = _digest(pod_metrics, previous)
    if verdict == "Healthy":
        status.state = "Promoted"
        status.message = f"promoted: {message}"[:1024]
        tracks.stable_uri, tracks.stable_s3 = candidate, tracks.canary_s3
        tracks.stable_version = stable.version
        tracks.events.append(
            rplan.EventNote("Normal", "CanaryPromoted", f"{named} promoted: {message}"[:1024])
        )
    elif verdict == "RolledBack":
        status.state = "RolledBack"
        tracks.canary_uri = None
        tracks.events.append(
            rplan.EventNote(
                "Warning",
                "CanaryRolledBack",
                f"{named} refused, {_named(served, old.served_model_version)} stays: {message}"[:1024],
            )
        )
    tracks.canary = status
    return tracks
