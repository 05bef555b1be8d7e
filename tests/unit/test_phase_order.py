"""A TrainingJob's phase never goes back, whatever order the caches show the Job and its pods in.

The operator reads the Job and its pods from two watch-fed caches that lag independently, and
the Job controller itself records a pod's end a moment after the kubelet does. ``make demo``
once printed Running, then Pending, then Succeeded. This test builds the life of one run as
the Job controller and kubelet move it (pods created, scheduled or unschedulable, running,
finished; the Job's active / ready / uncounted / FailureTarget / SuccessCriteriaMet /
Complete / Failed steps; retries up to backoffLimit), then observes it as the operator does:
each pass sees the Job at one point of that history and the pods at another, both moving
forward only. Every pass goes through ``reconcile.trainingjob.plan`` with the status of the
previous one stored, and the phase's rank (``PHASE_RANK``) must never fall.

hypothesis is not a declared dependency, so the generator is a seeded ``random.Random``:
the same sequences run every time, and a failure names its seed.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
from typing import Any

from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
DATASET = {"status": {"phase": "Ready", "digest": "sha256:abc", "storageUri": "pvc://data/iris/abc"}}
SEQUENCES = 1000
RESULT = json.dumps({"ok": True, "metrics": {"validation": {"accuracy": 0.9}}, "modelUri": "pvc://m/x"})

World = list[tuple[dict[str, Any], list[dict[str, Any]]]]  # (Job status, pods) after each step


def _pod(index: int, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"iris-rf-train-{index}",
            "uid": f"pod-{index}",
            "creationTimestamp": f"2025-01-01T12:00:{index:02d}Z",
        },
        "status": status,
    }


def _container(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "train", "state": state}]


def life_of_a_run(rng: random.Random) -> World:
    """What the Job controller and the kubelet do to one run's Job and pods, step by step."""
    backoff_limit = rng.randint(0, 2)
    job: dict[str, Any] = {}
    pods: list[dict[str, Any]] = []
    world: World = [(copy.deepcopy(job), [])]

    def step() -> None:
        world.append((copy.deepcopy(job), copy.deepcopy(pods)))

    def set_pod(index: int, status: dict[str, Any]) -> None:
        pods[index] = _pod(index, status)
        step()

    failed = 0
    started = "2025-01-01T12:00:00Z"
    while True:
        index = len(pods)
        pods.append(_pod(index, {"phase": "Pending"}))
        step()
        job = {"startTime": started, "active": 1, "ready": 0, "failed": failed}
        step()
        if rng.random() < 0.3:
            unschedulable = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "no node",
                    }
                ],
            }
            set_pod(index, unschedulable)
        begun = f"2025-01-01T12:01:{index:02d}Z"
        creating = {"waiting": {"reason": "ContainerCreating"}}
        set_pod(index, {"phase": "Pending", "startTime": begun, "containerStatuses": _container(creating)})
        running = {"running": {"startedAt": begun}}
        set_pod(index, {"phase": "Running", "startTime": begun, "containerStatuses": _container(running)})
        if rng.random() < 0.7:  # the Job controller may count the ready pod, or skip straight on
            job = {**job, "ready": 1}
            step()
        ok = rng.random() < 0.5
        term = (
            {"exitCode": 0, "reason": "Completed", "message": RESULT}
            if ok
            else {"exitCode": 1, "reason": "Error", "message": "Traceback ..."}
        )
        set_pod(
            index,
            {
                "phase": "Succeeded" if ok else "Failed",
                "startTime": begun,
                "containerStatuses": _container({"terminated": term}),
            },
        )
        if rng.random() < 0.7:  # ready drops before the pod is counted: the lag make demo showed
            job = {**job, "ready": 0}
            step()
        uncounted = {"succeeded": [f"pod-{index}"]} if ok else {"failed": [f"pod-{index}"]}
        job = {**job, "active": 0, "ready": 0, "uncountedTerminatedPods": uncounted}
        step()
        if ok:
            done = "2025-01-01T12:05:00Z"
            job = {**job, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}
            step()
            job = {
                **job,
                "succeeded": 1,
                "uncountedTerminatedPods": {},
                "completionTime": done,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True"},
                ],
            }
            step()
            return world
        failed += 1
        job = {**job, "failed": failed, "uncountedTerminatedPods": {}}
        step()
        if failed > backoff_limit:
            target = {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}
            job = {**job, "conditions": [target]}
            step()
            final = {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2025-01-01T12:05:00Z",
            }
            job = {**job, "conditions": [target, final]}
            step()
            return world


def observations(rng: random.Random, world: World) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """What successive passes see: the Job from one cache, the pods from another, each moving
    forward by its own random lag, both caught up at the end."""
    last = len(world) - 1
    job_at = pods_at = 0
    seen = []
    while (job_at, pods_at) != (last, last):
        job_at = min(last, job_at + rng.choice((0, 0, 1, 1, 2, 3)))
        pods_at = min(last, pods_at + rng.choice((0, 0, 1, 1, 2, 3)))
        seen.append((world[job_at][0], world[pods_at][1]))
    return seen


def _stored(tj: api.TrainingJob, plan: rtj.Plan) -> api.TrainingJob:
    return tj.model_copy(update={"status": api.TrainingJobStatus.model_validate(plan.status.to_api())})


def phases_of(seed: int) -> list[str]:
    """The phase after each pass over one generated run (the first pass creates the Job)."""
    rng = random.Random(seed)
    world = life_of_a_run(rng)
    tj = api.TrainingJob.from_body(
        {
            "metadata": {"name": "iris-rf", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"datasetRef": {"name": "iris"}, "model": {"estimator": "RandomForestClassifier"}},
            "status": {},
        }
    )
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=DATASET), now=NOW, settings=SETTINGS)
    created = next(o for o in plan.apply if o["kind"] == "Job")
    tj = _stored(tj, plan)
    phases = [str(plan.status.phase)]
    for job_status, pods in observations(rng, world):
        job = {**created, "status": job_status}
        plan = rtj.plan(
            tj,
            observed=rtj.Observed(dataset=DATASET, job=job, pods=pods, configmap={}),
            now=NOW,
            settings=SETTINGS,
        )
        tj = _stored(tj, plan)
        phases.append(str(plan.status.phase))
    return phases


def test_phases_never_go_back() -> None:
    for seed in range(SEQUENCES):
        phases = phases_of(seed)
        ranks = [rtj.PHASE_RANK[p] for p in phases]
        back = next((i for i in range(1, len(ranks)) if ranks[i] < ranks[i - 1]), None)
        assert back is None, f"seed {seed}: {phases[back - 1]} → {phases[back]} in {phases}"
        assert phases[-1] in api.FINISHED_PHASES, f"seed {seed}: ended {phases[-1]}"


def test_the_generator_reaches_the_states_that_matter() -> None:
    """The sequences include what broke: a finished pod before the Job says so, retries, both ends."""
    finished_pod_unfinished_job = retry = succeeded = failed = 0
    for seed in range(200):
        rng = random.Random(seed)
        world = life_of_a_run(rng)
        for job_status, pods in world:
            if not job_status.get("conditions") and any(
                p["status"]["phase"] in {"Succeeded", "Failed"} for p in pods
            ):
                finished_pod_unfinished_job += 1
        retry += len(world[-1][1]) > 1
        end = {c["type"] for c in world[-1][0].get("conditions", [])}
        succeeded += "Complete" in end
        failed += "Failed" in end
    assert finished_pod_unfinished_job and retry and succeeded and failed


def test_a_pause_and_a_new_run_may_lower_the_phase() -> None:
    """The documented ways back: Kueue suspending a running Job (Queued) and an edited spec."""
    old = api.TrainingJobStatus(phase="Running", spec_hash="a")
    assert rtj.forward_only(old, api.TrainingJobStatus(phase="Queued", spec_hash="a")).phase == "Queued"
    assert rtj.forward_only(old, api.TrainingJobStatus(phase="Pending", spec_hash="b")).phase == "Pending"
    assert rtj.forward_only(old, api.TrainingJobStatus(phase="Pending", spec_hash="a")).phase == "Running"
    done = api.TrainingJobStatus(phase="Succeeded", spec_hash="a")
    assert rtj.forward_only(done, api.TrainingJobStatus(phase="Running", spec_hash="a")).phase == "Succeeded"
