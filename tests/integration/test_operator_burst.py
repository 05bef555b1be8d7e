"""The operator killed in the middle of a 1,000-TrainingJob burst: after a restart every run has
exactly one Job, owned by it, no Job made before the kill is replaced, and none is lost.

The runs are suspended (``runPolicy.suspend``): their Jobs are made, suspended, and no pod
runs, so the test measures the operator (its caches, its start-up listing, its writes) and
not kwok's pods.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import kubernetes
import pytest
from test_trainingjob import ready_dataset, training_job

from conftest import Cluster, OperatorProcess, wait_until

pytestmark = pytest.mark.integration

COUNT = 1000
KILL_AFTER_JOBS = 250


def _jobs(batch: Any, ns: str) -> list[Any]:
    """The runs' Jobs (not the Dataset's prepare Job)."""
    return list(batch.list_namespaced_job(ns, label_selector="mlops.dev/trainingjob").items)


def test_operator_killed_during_a_burst_loses_and_duplicates_nothing(
    cluster: Cluster, operator_process: OperatorProcess, isolated_namespace: str
) -> None:
    ns = isolated_namespace
    api_client = cluster.api_client()
    custom = kubernetes.client.CustomObjectsApi(api_client)
    batch = kubernetes.client.BatchV1Api(api_client)
    operator_process.start()
    ready_dataset(cluster, ns)
    names = [f"b{i:04d}" for i in range(COUNT)]

    def submit(name: str) -> None:
        body = training_job(name, resources={"cpu": "10m", "memory": "64Mi"}, runPolicy={"suspend": True})
        custom.create_namespaced_custom_object("mlops.dev", "v1alpha1", ns, "trainingjobs", body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(submit, n) for n in names]
        # Kill the operator once it has made some of the Jobs, while the rest are still coming in.
        made_before = wait_until(
            lambda: (jobs := _jobs(batch, ns)) and len(jobs) >= KILL_AFTER_JOBS and jobs,
            timeout=180,
            interval=0.2,
            what=f"{KILL_AFTER_JOBS} Jobs before the kill",
        )
        operator_process.kill()
        for future in futures:
            future.result()
    before = {j.metadata.name: j.metadata.uid for j in _jobs(batch, ns)}
    assert len(before) < COUNT, "the operator was killed before it made every Job"
    operator_process.start()
    started = time.monotonic()

    def converged() -> list[dict[str, Any]] | None:
        items = custom.list_namespaced_custom_object("mlops.dev", "v1alpha1", ns, "trainingjobs")["items"]
        done = [o for o in items if (o.get("status") or {}).get("phase") == "Suspended"]
        return items if len(done) == COUNT and len(_jobs(batch, ns)) >= COUNT else None

    items = wait_until(converged, timeout=300, interval=1.0, what=f"{COUNT} Suspended runs with their Jobs")
    took = time.monotonic() - started
    by_name = {o["metadata"]["name"]: o for o in items}
    assert sorted(by_name) == names, "a TrainingJob was lost"
    jobs = _jobs(batch, ns)
    assert sorted(j.metadata.name for j in jobs) == sorted(f"{n}-train" for n in names)
    for job in jobs:
        owners = [r for r in job.metadata.owner_references or [] if r.controller]
        assert len(owners) == 1, f"Job {job.metadata.name} has {len(owners)} controllers"
        tj = by_name[owners[0].name]
        assert owners[0].uid == tj["metadata"]["uid"] and job.metadata.name == f"{owners[0].name}-train"
        assert job.spec.suspend is True
        if job.metadata.name in before:
            assert job.metadata.uid == before[job.metadata.name], f"Job {job.metadata.name} was replaced"
    print(
        f"burst of {COUNT}: killed after {len(made_before)} Jobs ({len(before)} when it was down); "
        f"restart converged in {took:.1f} s"
    )
