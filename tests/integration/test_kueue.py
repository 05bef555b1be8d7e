"""TrainingJobs, several-worker runs and sweep trials admitted, queued, borrowed and preempted by
real Kueue (the ``kueue`` fixture), with the session's operator running in-process.

Each test gets a pool of two kwok GPU nodes of its own (4 ``nvidia.com/gpu`` each, tainted for
the pool, so only Kueue-placed pods land there) and a ResourceFlavor for it: Kueue injects the
pool's node label and toleration into a Job it admits. kwok completes Job pods only on the
suite's standard nodes, so pods on the pool stay Running until the test writes their outcome
(as a kubelet would, ``finish_pod``): admitted workloads keep their quota as long as a test
needs. The operator creates a queued Job suspended and never un-suspends it; Kueue does, and
suspends it again to preempt it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import localcluster
import pytest
from test_trainingjob import DIGEST, finish_pod, ready_dataset, training_job, unique, wait_status

from conftest import Cluster, Kueue, OperatorHandle, _make_namespace, wait_until

pytestmark = pytest.mark.integration

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
POOL_TAINT = "mlops.dev/kueue-pool"
LOCAL_QUEUE = "gpus"
RESOURCES = {"cpu": "1", "memory": "1Gi"}


# ---------------------------------------------------------------------------------------------
# The pool, the queues
# ---------------------------------------------------------------------------------------------


class Pool:
    """Two kwok GPU nodes and their ResourceFlavor; ClusterQueues and LocalQueues made on it."""

    def __init__(self, kueue: Kueue) -> None:
        self.kueue = kueue
        self.cluster = kueue.cluster
        self.suffix = uuid.uuid4().hex[:6]
        self.label = {"mlops.dev/node-pool": f"kq-{self.suffix}"}
        self.flavor = f"gpu-{self.suffix}"
        self.nodes = [f"kwok-kq-{self.suffix}-{i}" for i in range(2)]
        self.cluster_queues: list[str] = []
        self.namespaces: list[str] = []

    def create(self) -> None:
        capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"}
        for name in self.nodes:
            labels = {"nvidia.com/gpu.present": "true", **self.label}
            taints = [{"key": POOL_TAINT, "value": self.suffix, "effect": "NoSchedule"}]
            node = localcluster.kwok_node(name, labels, taints, capacity)
            self.cluster.kubectl("create", "-f", "-", input=json.dumps(node))
        for name in self.nodes:
            wait_until(
                lambda name=name: any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in ((self.cluster.get("node", name) or {}).get("status") or {}).get("conditions")
                    or []
                ),
                timeout=60,
                what=f"kwok node {name} Ready",
            )
        toleration = {"key": POOL_TAINT, "operator": "Equal", "value": self.suffix, "effect": "NoSchedule"}
        self.kueue.apply(self.kueue.resource_flavor(self.flavor, self.label, tolerations=[toleration]))

    def cluster_queue(
        self, role: str, *, gpus: int, cohort: str | None = None, preemption: dict[str, Any] | None = None
    ) -> str:
        name = f"{role}-{self.suffix}"
        quota = {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)}
        spec: dict[str, Any] = {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": list(quota),
                    "flavors": [
                        {
                            "name": self.flavor,
                            "resources": [{"name": r, "nominalQuota": q} for r, q in quota.items()],
                        }
                    ],
                }
            ],
        }
        if cohort:
            spec["cohortName"] = cohort
        if preemption:
            spec["preemption"] = preemption
        self.kueue.apply(
            {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}
        )
        self.cluster_queues.append(name)
        wait_until(
            lambda: (
                (
                    self.kueue.condition(self.cluster.get("clusterqueues.kueue.x-k8s.io", name), "Active")
                    or {}
                ).get("status")
                == "True"
            ),
            timeout=60,
            what=f"ClusterQueue {name} Active",
        )
        return name

    def team(self, namespace: str, cluster_queue: str) -> None:
        """``namespace`` queues into ``cluster_queue`` through LocalQueue ``gpus`` (and has a Dataset)."""
        self.kueue.manage(namespace)
        self.kueue.apply(self.kueue.local_queue(LOCAL_QUEUE, namespace, cluster_queue))
        self.namespaces.append(namespace)
        ready_dataset(self.cluster, namespace)

    def teardown(self) -> None:
        for ns in self.namespaces:  # while Kueue runs: Workloads hold their ClusterQueue's finalizer
            for kind in ("hyperparametersweeps", "trainingjobs", "jobs"):
                self.cluster.kubectl(
                    "delete",
                    kind,
                    "--all",
                    "-n",
                    ns,
                    "--cascade=foreground",
                    "--timeout=60s",
                    check=False,
                    timeout=90,
                )
            self.kueue.delete("localqueues.kueue.x-k8s.io", LOCAL_QUEUE, ns)
        for name in self.cluster_queues:
            self.kueue.delete("clusterqueues.kueue.x-k8s.io", name)
        self.kueue.delete("resourceflavors.kueue.x-k8s.io", self.flavor)
        for name in self.nodes:
            self.cluster.kubectl("delete", "node", name, "--wait=false", check=False)


@pytest.fixture
def pool(kueue: Kueue, operator: OperatorHandle) -> Iterator[Pool]:
    p = Pool(kueue)
    p.create()
    yield p
    p.teardown()


@pytest.fixture
def second_namespace(pool: Pool) -> Iterator[str]:
    """Another team's namespace, watched by the session's operator (``t-``)."""
    yield from _make_namespace(pool.cluster, "t")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def gpu_job(name: str, gpus: int, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A TrainingJob in LocalQueue ``gpus`` asking for ``gpus`` GPUs per worker."""
    return training_job(
        name,
        estimator=spec.pop("estimator", "XGBClassifier"),
        params=spec.pop("params", {"n_estimators": 5}),
        labels={QUEUE_LABEL: LOCAL_QUEUE, **(labels or {})},
        resources={**RESOURCES, "gpu": gpus},
        **spec,
    )


def phases(cluster: Cluster, ns: str, names: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for name in names:
        status = (cluster.get("trainingjob", name, ns) or {}).get("status") or {}
        out[name] = (str(status.get("phase")), str(status.get("reason")))
    return out


def wait_phases(
    cluster: Cluster,
    ns: str,
    names: list[str],
    check: Callable[[dict[str, tuple[str, str]]], bool],
    what: str,
) -> dict[str, tuple[str, str]]:
    return wait_until(
        lambda: (p := phases(cluster, ns, names)) and check(p) and p,
        timeout=120,
        what=what,
        explain=lambda: phases(cluster, ns, names),
    )


def running_pods(cluster: Cluster, ns: str, job: str | None = None) -> list[dict[str, Any]]:
    selector = f"{JOB_NAME_LABEL}={job}" if job else JOB_NAME_LABEL
    return [
        p
        for p in cluster.list("pods", ns, selector)
        if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def result(ns: str, tj: str, value: float) -> str:
    return json.dumps(
        {
            "ok": True,
            "modelUri": f"file:///tmp/mlops-it/models/{ns}/{tj}/0123456789abcdef",
            "modelVersion": "0123456789abcdef",
            "datasetDigest": DIGEST,
            "metrics": {"validation": {"accuracy": value}, "test": {"accuracy": value}},
            "objectiveValue": value,
            "fitSeconds": 0.1,
            "modelSizeBytes": 10,
        }
    )


def finish(cluster: Cluster, ns: str, tj: str, value: float = 0.9) -> None:
    """Finish the run's Running pod with a result (the kubelet's part), wait for Succeeded."""
    pods = wait_until(
        lambda: running_pods(cluster, ns, f"{tj}-train"), timeout=90, what=f"{tj}'s pod Running"
    )
    finish_pod(cluster, ns, pods[0], exit_code=0, reason="Completed", message=result(ns, tj, value))
    wait_status(cluster, ns, tj, lambda s: s.get("phase") == "Succeeded", f"{tj} Succeeded", timeout=90)


def events(cluster: Cluster, ns: str, name: str) -> list[tuple[str, str, str]]:
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
        for e in cluster.list("events", ns)
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def borrowed_gpus(cluster: Cluster, cq: str) -> str:
    status = (cluster.get("clusterqueues.kueue.x-k8s.io", cq) or {}).get("status") or {}
    for flavor in status.get("flavorsReservation") or []:
        for res in flavor.get("resources") or []:
            if res.get("name") == "nvidia.com/gpu":
                return str(res.get("borrowed", "0"))
    return "0"


def one_job_each(cluster: Cluster, ns: str, names: list[str]) -> None:
    jobs = [
        j["metadata"]["name"] for j in cluster.list("jobs", ns) if j["metadata"]["name"].endswith("-train")
    ]
    assert sorted(jobs) == sorted(f"{n}-train" for n in names), jobs


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_a_busy_team_borrows_the_idle_teams_gpus_until_the_idle_team_reclaims_them(
    cluster: Cluster, pool: Pool, namespace: str, second_namespace: str
) -> None:
    team_a, team_b = namespace, second_namespace
    cohort = f"co-{pool.suffix}"
    reclaim = {"reclaimWithinCohort": "Any", "withinClusterQueue": "Never"}
    cq_a = pool.cluster_queue("team-a", gpus=4, cohort=cohort, preemption=reclaim)
    cq_b = pool.cluster_queue("team-b", gpus=4, cohort=cohort, preemption=reclaim)
    pool.team(team_a, cq_a)
    pool.team(team_b, cq_b)

    # Team A asks for 8 GPUs with a nominal 4: team B is idle, so A borrows B's 4.
    a_jobs = [unique("a") for _ in range(4)]
    for name in a_jobs:
        cluster.apply(gpu_job(name, 2), namespace=team_a)
    wait_phases(
        cluster, team_a, a_jobs, lambda p: all(ph == "Running" for ph, _ in p.values()), "team A all Running"
    )
    wait_until(lambda: borrowed_gpus(cluster, cq_a) == "4", timeout=30, what=f"{cq_a} borrowing 4 GPUs")
    placed = {p["spec"]["nodeName"] for p in running_pods(cluster, team_a)}
    assert placed <= set(pool.nodes), placed  # Kueue's flavor put them on the pool

    # Team B submits within its own quota: Kueue reclaims its GPUs by preempting two of A's runs.
    b_jobs = [unique("b") for _ in range(2)]
    for name in b_jobs:
        cluster.apply(gpu_job(name, 2), namespace=team_b)
    wait_phases(
        cluster, team_b, b_jobs, lambda p: all(ph == "Running" for ph, _ in p.values()), "team B Running"
    )
    seen = wait_phases(
        cluster,
        team_a,
        a_jobs,
        lambda p: (
            list(p.values()).count(("Queued", "Preempted")) == 2
            and [ph for ph, _ in p.values()].count("Running") == 2
        ),
        "two of team A's runs preempted and requeued",
    )
    preempted = [n for n, (ph, _) in seen.items() if ph == "Queued"]
    for name in preempted:
        status = cluster.get("trainingjob", name, team_a)["status"]
        assert "Kueue preempted Workload" in status["message"], status["message"]
        assert cluster.get("job", f"{name}-train", team_a)["spec"]["suspend"] is True
        wait_until(
            lambda name=name: any(
                t == "Warning" and r == "Preempted" for t, r, _ in events(cluster, team_a, name)
            ),
            timeout=30,
            what=f"a Preempted Event on {name}",
        )
    wait_until(
        lambda: not running_pods(cluster, team_a, f"{preempted[0]}-train"), timeout=60, what="its pods gone"
    )
    wait_until(lambda: borrowed_gpus(cluster, cq_a) == "0", timeout=30, what=f"{cq_a} borrowing nothing")
    one_job_each(cluster, team_a, a_jobs)  # requeued, never re-created

    # B finishes: its GPUs are idle again, A's requeued runs are admitted again and finish.
    for name in b_jobs:
        finish(cluster, team_b, name)
    wait_phases(
        cluster, team_a, a_jobs, lambda p: all(ph == "Running" for ph, _ in p.values()), "team A re-admitted"
    )
    for name in a_jobs:
        finish(cluster, team_a, name)
    one_job_each(cluster, team_a, a_jobs)


def test_a_two_worker_run_is_admitted_whole_or_not_at_all(
    cluster: Cluster, pool: Pool, namespace: str
) -> None:
    cq = pool.cluster_queue("workers", gpus=4)
    pool.team(namespace, cq)
    single = unique("one")
    cluster.apply(gpu_job(single, 2), namespace=namespace)
    wait_status(cluster, namespace, single, lambda s: s.get("phase") == "Running", "the single run Running")

    # Two workers of 2 GPUs need 4; 2 are free: Kueue admits neither worker, no pod exists.
    ddp = unique("ddp")
    cluster.apply(
        gpu_job(ddp, 2, estimator="TorchMLPClassifier", params={"epochs": 1}, workers=2), namespace=namespace
    )
    status = wait_status(
        cluster,
        namespace,
        ddp,
        lambda s: s.get("phase") == "Queued" and "insufficient" in (s.get("message") or ""),
        "the two-worker run Queued with Kueue's reason",
        timeout=120,
    )
    assert status["reason"] == "Queued" and "nvidia.com/gpu" in status["message"], status
    assert cluster.list("pods", namespace, f"{JOB_NAME_LABEL}={ddp}-train") == []

    # The single run finishes: both workers are admitted together and start together.
    finish(cluster, namespace, single)
    pods = wait_until(
        lambda: (p := running_pods(cluster, namespace, f"{ddp}-train")) and len(p) == 2 and p,
        timeout=120,
        what="both workers Running",
    )
    assert {p["spec"]["nodeName"] for p in pods} <= set(pool.nodes)
    by_rank = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    chief = {
        "ok": True,
        "rank": 0,
        "worldSize": 2,
        "device": "cuda:0",  # what a GPU worker reports (kwok runs none: the test writes it)
        "modelUri": "file:///tmp/mlops-it/models/x",
        "metrics": {"validation": {"accuracy": 0.9}, "test": {"accuracy": 0.9}},
    }
    finish_pod(cluster, namespace, by_rank["0"], exit_code=0, reason="Completed", message=json.dumps(chief))
    finish_pod(
        cluster,
        namespace,
        by_rank["1"],
        exit_code=0,
        reason="Completed",
        message=json.dumps({"ok": True, "rank": 1, "worldSize": 2}),
    )
    wait_status(
        cluster, namespace, ddp, lambda s: s.get("phase") == "Succeeded", "the two-worker run Succeeded"
    )


def test_a_sweep_under_quota_counts_a_preempted_trial_once(
    cluster: Cluster, pool: Pool, namespace: str
) -> None:
    for name, value in (("low", 100), ("high", 1000)):
        pool.kueue.apply(
            {
                "apiVersion": KUEUE,
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": f"{name}-{pool.suffix}"},
                "value": value,
            }
        )
    cq = pool.cluster_queue("sweep", gpus=4, preemption={"withinClusterQueue": "LowerPriority"})
    pool.team(namespace, cq)
    sweep = unique("hps")
    cluster.apply(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "HyperparameterSweep",
            "metadata": {
                "name": sweep,
                "labels": {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: f"low-{pool.suffix}"},
            },
            "spec": {
                "trialTemplate": {
                    "datasetRef": {"name": "iris"},
                    "model": {"estimator": "XGBClassifier"},
                    "metrics": ["accuracy"],
                    "resources": {**RESOURCES, "gpu": 2},
                },
                "searchSpace": [{"name": "n_estimators", "type": "int", "low": 5, "high": 50}],
                "objective": {"metric": "accuracy", "direction": "maximize"},
                "algorithm": {"name": "random"},
                "seed": 7,
                "maxTrials": 4,
                "parallelism": 3,
            },
        },
        namespace=namespace,
    )

    def trials() -> list[str]:
        return sorted(
            t["metadata"]["name"]
            for t in cluster.list("trainingjobs", namespace, f"mlops.dev/hyperparametersweep={sweep}")
        )

    # 3 trials in flight, 4 GPUs: two are admitted, the third waits in the queue.
    first = wait_until(lambda: (t := trials()) and len(t) == 3 and t, timeout=60, what="3 trials")
    seen = wait_phases(
        cluster,
        namespace,
        first,
        lambda p: (
            [ph for ph, _ in p.values()].count("Running") == 2
            and [ph for ph, _ in p.values()].count("Queued") == 1
        ),
        "two trials Running, one Queued",
    )
    running = [n for n, (ph, _) in seen.items() if ph == "Running"]

    # A higher-priority run in the same queue preempts one of the running trials.
    urgent = unique("urgent")
    cluster.apply(gpu_job(urgent, 2, labels={PRIORITY_LABEL: f"high-{pool.suffix}"}), namespace=namespace)
    wait_status(cluster, namespace, urgent, lambda s: s.get("phase") == "Running", "the urgent run Running")
    seen = wait_phases(
        cluster,
        namespace,
        running,
        lambda p: ("Queued", "Preempted") in p.values(),
        "a running trial preempted",
    )
    victim = next(n for n, v in seen.items() if v == ("Queued", "Preempted"))
    finish(cluster, namespace, urgent)

    # Finish trials as Kueue admits them, until the sweep is done.
    finished: list[str] = []

    def step() -> bool:
        status = (cluster.get("hyperparametersweep", sweep, namespace) or {}).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return True
        for pod in running_pods(cluster, namespace):
            tj = pod["metadata"]["labels"][JOB_NAME_LABEL].removesuffix("-train")
            if tj in trials() and tj not in finished:
                finish_pod(
                    cluster,
                    namespace,
                    pod,
                    exit_code=0,
                    reason="Completed",
                    message=result(namespace, tj, 0.8 + len(finished) / 100),
                )
                finished.append(tj)
        return False

    wait_until(step, timeout=300, what=f"sweep {sweep} done", interval=2)
    status = cluster.get("hyperparametersweep", sweep, namespace)["status"]
    assert status["phase"] == "Succeeded", status
    counts = status["trials"]
    assert (counts["created"], counts["succeeded"], counts.get("failed", 0)) == (4, 4, 0), counts
    assert len(trials()) == 4 and victim in trials()
    victim_status = cluster.get("trainingjob", victim, namespace)["status"]
    assert victim_status["phase"] == "Succeeded"
    one_job_each(cluster, namespace, [*trials(), urgent])
