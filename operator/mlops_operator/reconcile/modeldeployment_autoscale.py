"""The KPA-style replica decision: pure, so it is unit-tested on recorded load and its state
fits in the ModelDeployment's status (a restart of the operator forgets nothing).

Semantics follow Knative's KPA (pkg/autoscaler/scaling/autoscaler.go):
- the load (total in-flight requests or requests/s across ready pods) is averaged over a
  stable window (60 s) and a panic window (6 s); each average divided by the per-pod
  target (times the target utilisation) gives a desired pod count;
- each count is clamped to what one decision may do: at most ``max_scale_up_rate`` x the
  ready pods, at least ready / ``max_scale_down_rate``;
- panic mode starts when the panic-window count is at least ``panic_threshold`` x the ready
  pods; in panic the count never goes down, and panic ends one stable window after the
  last time the threshold was crossed;
- outside panic, a scale-down only happens when every recommendation in the last
  ``scale_down_delay`` was at most the new count (the max over that window is used, like
  the HPA's stabilisation window), so a dip or a flapping load does not remove pods;
- finally the count is clamped to [minReplicas, maxReplicas];
- with minReplicas 0 the count reaches 0 only after ``scale_to_zero_after`` seconds without a
  sample with load (``last_active``; creation counts as activity), like Knative's
  scale-to-zero grace: until then one pod stays (reason ``IdleWait``).
With no samples in the stable window the current count is kept (reason ``NoMetrics``).
"""

from __future__ import annotations

import dataclasses
import math

from mlops_operator.api import modeldeployment as md_api

MAX_SAMPLES = 120
MAX_RECOMMENDATIONS = 120


@dataclasses.dataclass(frozen=True)
class Policy:
    """The knobs of one deployment, in the units the decision uses."""

    min_replicas: int = 1
    max_replicas: int = 10
    target: float = 10.0
    target_utilization: float = 0.7
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    scale_down_delay: float = 120.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_to_zero_after: float = 300.0

    @classmethod
    def of(cls, spec: md_api.Autoscaling) -> Policy:
        return cls(
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            target=spec.target,
            target_utilization=spec.target_utilization_percent / 100,
            stable_window=float(spec.stable_window_seconds),
            panic_window=float(spec.panic_window_seconds),
            panic_threshold=spec.panic_threshold_percent / 100,
            scale_down_delay=float(spec.scale_down_delay_seconds),
            max_scale_up_rate=spec.max_scale_up_rate,
            max_scale_down_rate=spec.max_scale_down_rate,
            scale_to_zero_after=float(spec.scale_to_zero_after_seconds),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    message: str
    state: md_api.AutoscalerState
    panic: bool


def _average(samples: list[md_api.AutoscalerSample], *, since: float) -> float | None:
    values = [s.v for s in samples if s.t > since]
    return sum(values) / len(values) if values else None


def decide(
    *,
    current: int,
    ready: int,
    policy: Policy,
    state: md_api.AutoscalerState | None,
    new_samples: list[md_api.AutoscalerSample],
    now: float,
) -> Decision:
    """Desired replicas from the load window; ``state`` is the previous decision's."""
    prev = state or md_api.AutoscalerState()
    # Merge, order and trim the window (bounded, so the status stays small).
    merged = {s.t: s for s in prev.samples}
    for s in new_samples:
        if s.t <= now:
            merged[s.t] = s
    samples = sorted((s for s in merged.values() if s.t > now - policy.stable_window), key=lambda s: s.t)
    samples = samples[-MAX_SAMPLES:]
    recommendations = [r for r in prev.recommendations if r.t > now - policy.scale_down_delay]
    last_active = prev.last_active if state is not None and prev.last_active is not None else now
    if any(s.v > 0 for s in new_samples if s.t <= now):
        last_active = now

    def finish(
        desired: int,
        reason: str,
        message: str,
        *,
        panic_since: float | None,
        max_panic: int,
        recommend: int | None,
    ) -> Decision:
        recs = list(recommendations)
        if recommend is not None:
            recs.append(md_api.AutoscalerRecommendation(t=now, n=recommend))
        new_state = md_api.AutoscalerState(
            samples=samples,
            recommendations=recs[-MAX_RECOMMENDATIONS:],
            panic_since=panic_since,
            max_panic_replicas=max_panic,
            last_active=last_active,
        )
        if desired == 0 and current > 0:
            idle = now - last_active
            if idle < policy.scale_to_zero_after:
                desired, reason = 1, "IdleWait"
                message = f"idle {idle:.0f} s of {policy.scale_to_zero_after:.0f} s before zero; {message}"
            else:
                reason, message = "ScaleToZero", f"no request for {idle:.0f} s; {message}"
        return Decision(
            desired=desired, reason=reason, message=message, state=new_state, panic=panic_since is not None
        )

    def clamp(n: int) -> tuple[int, str | None]:
        if n < policy.min_replicas:
            return policy.min_replicas, "ClampedToMin"
        if n > policy.max_replicas:
            return policy.max_replicas, "ClampedToMax"
        return n, None

    stable_load = _average(samples, since=now - policy.stable_window)
    panic_load = _average(samples, since=now - policy.panic_window)
    if stable_load is None:
        kept, clamp_reason = clamp(current)
        return finish(
            kept,
            clamp_reason or "NoMetrics",
            "no load samples in the stable window; keeping the count",
            panic_since=prev.panic_since,
            max_panic=prev.max_panic_replicas,
            recommend=None,
        )
    if panic_load is None:
        panic_load = stable_load
    per_pod = policy.target * policy.target_utilization
    ready_pods = max(1, ready)
    max_up = math.ceil(policy.max_scale_up_rate * ready_pods)
    max_down = math.floor(ready_pods / policy.max_scale_down_rate)
    desired_stable = min(max(math.ceil(stable_load / per_pod), max_down), max_up)
    desired_panic = min(max(math.ceil(panic_load / per_pod), max_down), max_up)
    numbers = (
        f"stable load {stable_load:.2f}, panic load {panic_load:.2f}, target {per_pod:.2f}/pod, "
        f"ready {ready}, current {current}"
    )

    over_threshold = desired_panic / ready_pods >= policy.panic_threshold
    panic_since = prev.panic_since
    if over_threshold:
        panic_since = now  # Enter or extend panic.
    elif panic_since is not None and panic_since + policy.stable_window <= now:
        panic_since = None  # Calm for a whole stable window: leave panic.

    if panic_since is not None:
        desired = max(desired_panic, prev.max_panic_replicas if prev.panic_since is not None else 0, current)
        clamped, clamp_reason = clamp(desired)
        reason = "PanicScaleUp" if clamped > current else "Panic"
        return finish(
            clamped,
            clamp_reason or reason,
            f"panic mode: {numbers}",
            panic_since=panic_since,
            max_panic=clamped,
            recommend=clamped,
        )

    recommended = desired_stable
    if recommended < current:
        held = max([r.n for r in recommendations] + [recommended])
        if held > recommended:
            desired = min(held, current)
            clamped, clamp_reason = clamp(desired)
            return finish(
                clamped,
                clamp_reason or "ScaleDownDelayed",
                f"wants {recommended}, holding {desired} for the scale-down delay: {numbers}",
                panic_since=None,
                max_panic=0,
                recommend=recommended,
            )
    clamped, clamp_reason = clamp(recommended)
    if clamp_reason:
        reason = clamp_reason
    elif clamped > current:
        reason = "ScaleUp"
    elif clamped < current:
        reason = "ScaleDown"
    else:
        reason = "Stable"
    return finish(clamped, reason, numbers, panic_since=None, max_panic=0, recommend=recommended)


def sample_from_scrapes(
    *,
    previous: dict[str, tuple[float, float, float]],
    current: dict[str, tuple[float, float, float]],
    metric: str,
) -> tuple[float | None, dict[str, tuple[float, float, float]]]:
    """Total load across pods from two scrapes of cumulative counters.

    Each pod maps to (time, busy seconds, requests): the sum of prediction latencies and
    the count of prediction requests, both cumulative. Concurrency is the busy seconds
    gained per second (Little's law), rps the requests gained per second. A pod seen for
    the first time, or whose counters went back (a restart), contributes nothing this
    round. Returns (total load or None when no pod had two scrapes, the new baseline).
    """
    total = 0.0
    seen = False
    for pod, (t, busy, count) in current.items():
        old = previous.get(pod)
        if old is None:
            continue
        dt = t - old[0]
        if dt <= 0 or busy < old[1] or count < old[2]:
            continue
        seen = True
        total += (busy - old[1]) / dt if metric == "concurrency" else (count - old[2]) / dt
    return (total if seen else None), dict(current)
