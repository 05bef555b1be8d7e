"""The KPA decision on recorded load sequences: ramp, spike → panic, drop → delayed scale-down,
flapping suppressed, clamps, and a state that survives a JSON round trip (an operator restart)."""

from __future__ import annotations

import json

import pytest

from mlops_operator.api import modeldeployment as md_api
from mlops_operator.reconcile import modeldeployment_autoscale as autoscale

POLICY = autoscale.Policy(
    min_replicas=1,
    max_replicas=20,
    target=10,
    target_utilization=1.0,
    stable_window=60,
    panic_window=6,
    panic_threshold=2.0,
    scale_down_delay=120,
    max_scale_up_rate=1000,
    max_scale_down_rate=2,
)


class Sim:
    """Feeds one load sample every ``step`` seconds and applies each decision at once."""

    def __init__(
        self, policy: autoscale.Policy = POLICY, replicas: int = 1, *, roundtrip: bool = True
    ) -> None:
        self.policy = policy
        self.replicas = replicas
        self.state: md_api.AutoscalerState | None = None
        self.now = 1_000_000.0
        self.decisions: list[autoscale.Decision] = []
        self.roundtrip = roundtrip

    def run(self, load: float, seconds: float, step: float = 2.0) -> autoscale.Decision:
        end = self.now + seconds
        decision = None
        while self.now < end:
            self.now += step
            decision = autoscale.decide(
                current=self.replicas,
                ready=self.replicas,
                policy=self.policy,
                state=self.state,
                new_samples=[md_api.AutoscalerSample(t=self.now, v=load)],
                now=self.now,
            )
            state = decision.state
            if self.roundtrip:  # What the status stores and a restarted operator reads back.
                state = md_api.AutoscalerState.model_validate(json.loads(json.dumps(state.to_api())))
            self.state = state
            self.replicas = decision.desired
            self.decisions.append(decision)
        assert decision is not None
        return decision


def test_ramp_up_follows_the_stable_average() -> None:
    sim = Sim(replicas=4)
    sim.run(35, 60)
    for load in range(36, 76):  # +1 per sample: a gradual ramp never doubles within the panic window.
        sim.run(load, 2)
    sim.run(75, 60)
    assert sim.replicas == 8
    assert all(d.desired >= prev.desired for prev, d in zip(sim.decisions, sim.decisions[1:], strict=False))
    assert not any(d.panic for d in sim.decisions)
    assert {d.reason for d in sim.decisions} <= {"Stable", "ScaleUp"}


def test_spike_enters_panic_and_scales_at_once() -> None:
    sim = Sim(replicas=2)
    sim.run(15, 60)
    assert sim.replicas == 2
    decision = sim.run(150, 2)  # One sample of a 10x burst.
    assert decision.panic and decision.reason == "PanicScaleUp"
    # The panic window (3 samples: 15, 15, 150) asks for 6; the stable average only for 2.
    assert decision.desired == 6
    assert decision.state.panic_since == sim.now
    decision = sim.run(150, 6)
    assert decision.desired == 15 and decision.panic


def test_panic_never_scales_down_and_ends_after_a_calm_stable_window() -> None:
    sim = Sim(replicas=2)
    sim.run(15, 60)
    sim.run(150, 4)
    peak = sim.replicas
    panic_since = sim.state.panic_since if sim.state else None
    assert panic_since is not None
    sim.run(10, panic_since + 60 - sim.now - 2)
    assert sim.replicas == peak and all(d.panic for d in sim.decisions[-27:])
    sim.run(10, 2)
    assert not sim.decisions[-1].panic
    # Out of panic, the scale-down delay still holds the panic recommendations.
    assert sim.replicas == peak and sim.decisions[-1].reason == "ScaleDownDelayed"


def test_sustained_drop_scales_down_only_after_the_delay() -> None:
    sim = Sim(replicas=1)
    sim.run(80, 120)
    assert sim.replicas == 8
    sim.run(20, 100)
    assert sim.replicas == 8
    assert sim.decisions[-1].reason == "ScaleDownDelayed"
    sim.run(20, 90)
    assert sim.replicas < 8
    sim.run(20, 200)
    assert sim.replicas == 2


def test_scale_down_rate_limits_each_step() -> None:
    policy = autoscale.Policy(**{**POLICY.__dict__, "scale_down_delay": 0.0, "max_scale_down_rate": 2.0})
    sim = Sim(policy, replicas=16)
    decision = sim.run(1, 2)
    assert decision.desired == 8  # Not 1: at most half the ready pods go per decision.


def test_scale_up_rate_limits_each_step() -> None:
    policy = autoscale.Policy(**{**POLICY.__dict__, "max_scale_up_rate": 2.0, "max_replicas": 100})
    sim = Sim(policy, replicas=2)
    decision = sim.run(500, 2)
    assert decision.desired == 4


def test_flapping_load_does_not_flap_replicas() -> None:
    sim = Sim(replicas=1)
    sim.run(50, 60)
    start = sim.replicas
    changes = 0
    for _ in range(10):
        sim.run(60, 10)
        sim.run(35, 10)
    for prev, d in zip(sim.decisions, sim.decisions[1:], strict=False):
        changes += prev.desired != d.desired
    assert start == 5
    assert changes <= 2, [d.desired for d in sim.decisions]
    assert min(d.desired for d in sim.decisions[-100:]) >= 5


def test_min_and_max_clamps() -> None:
    policy = autoscale.Policy(**{**POLICY.__dict__, "min_replicas": 2, "max_replicas": 5})
    sim = Sim(policy, replicas=2)
    decision = sim.run(0, 10)
    assert decision.desired == 2 and decision.reason == "ClampedToMin"
    decision = sim.run(1000, 10)
    assert decision.desired == 5 and decision.reason == "ClampedToMax"


def test_no_metrics_keeps_the_count() -> None:
    decision = autoscale.decide(current=3, ready=3, policy=POLICY, state=None, new_samples=[], now=100.0)
    assert decision.desired == 3 and decision.reason == "NoMetrics"


def test_state_is_small_and_bounded() -> None:
    sim = Sim(replicas=1)
    sim.run(40, 600, step=0.5)
    blob = json.dumps(sim.state.to_api() if sim.state else {})
    assert len(sim.state.samples) <= autoscale.MAX_SAMPLES if sim.state else False
    assert len(blob) < 12_000


def test_restart_without_state_would_scale_down_early_but_stored_state_does_not() -> None:
    sim = Sim(replicas=1)
    sim.run(80, 120)
    sim.run(20, 30)
    assert sim.replicas == 8
    fresh = autoscale.decide(
        current=8,
        ready=8,
        policy=POLICY,
        state=None,
        new_samples=[md_api.AutoscalerSample(t=sim.now + 2, v=20)],
        now=sim.now + 2,
    )
    kept = autoscale.decide(
        current=8,
        ready=8,
        policy=POLICY,
        state=sim.state,
        new_samples=[md_api.AutoscalerSample(t=sim.now + 2, v=20)],
        now=sim.now + 2,
    )
    assert fresh.desired < 8
    assert kept.desired == 8


def test_policy_from_spec() -> None:
    spec = md_api.Autoscaling(
        min_replicas=2, max_replicas=9, target=5, target_utilization_percent=50, panic_threshold_percent=300
    )
    policy = autoscale.Policy.of(spec)
    assert (
        policy.min_replicas,
        policy.max_replicas,
        policy.target,
        policy.target_utilization,
        policy.panic_threshold,
        policy.stable_window,
    ) == (2, 9, 5, 0.5, 3.0, 60.0)


@pytest.mark.parametrize(("metric", "expected"), [("concurrency", 3.0), ("rps", 30.0)])
def test_sample_from_scrapes(metric: str, expected: float) -> None:
    first = {"a": (100.0, 10.0, 100.0), "b": (100.0, 5.0, 50.0)}
    second = {"a": (110.0, 30.0, 300.0), "b": (110.0, 15.0, 150.0), "c": (110.0, 1.0, 1.0)}
    total, baseline = autoscale.sample_from_scrapes(previous=first, current=second, metric=metric)
    assert total == pytest.approx(expected)
    assert baseline == second
    restarted = {"a": (120.0, 1.0, 1.0)}
    assert autoscale.sample_from_scrapes(previous=second, current=restarted, metric=metric)[0] is None
