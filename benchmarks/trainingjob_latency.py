"""TrainingJob submission latency on kwok nodes, against plain batch/v1 Jobs submitted directly.

Measures, for N objects submitted at once (default 1,000):
  - TrainingJob created → its batch/v1 Job exists → its pod exists (our operator + the Job controller);
  - the anchor: a batch/v1 Job with the same pod template created directly → its pod exists
    (apiserver + Job controller, no operator);
and prints p50/p99 of each, the ratio of the pod-existence latencies, and the operator's peak
memory (VmHWM of the operator process, run as ``python -m mlops_operator`` for one namespace).

    make cluster-up
    .venv/bin/python benchmarks/trainingjob_latency.py --count 1000

Times are taken on this machine's clock: t0 when the create request is sent, t1 when a watch
first shows the child. Both runs go through the same client, thread pool and watches.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

import kubernetes
from prometheus_client import parser as prom_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import localcluster  # noqa: E402

from mlops_operator.api import trainingjob as api  # noqa: E402
from mlops_operator.reconcile import owner as rowner  # noqa: E402
from mlops_operator.reconcile import trainingjob_build as build  # noqa: E402
from mlops_operator.reconcile import workload as rworkload  # noqa: E402

GROUP, VERSION = "mlops.dev", "v1alpha1"
DIGEST = "sha256:" + "cd" * 32
STORAGE = f"file:///tmp/mlops-bench/datasets/iris/{DIGEST[7:19]}"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Seen:
    """First time a watch showed each object (by name), on this machine's monotonic clock."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.first.setdefault(key, now)


def watch(list_fn: Any, namespace: str, key: Any, seen: Seen, stop: threading.Event) -> None:
    w = kubernetes.watch.Watch()
    while not stop.is_set():
        try:
            for event in w.stream(list_fn, namespace, timeout_seconds=5, _request_timeout=10):
                k = key(event["object"])
                if k:
                    seen.mark(k)
                if stop.is_set():
                    break
        except Exception:  # a dropped watch is restarted; the benchmark goes on
            time.sleep(0.2)
    w.stop()


def start_watches(namespace: str, jobs: Seen, pods: Seen, stop: threading.Event) -> list[threading.Thread]:
    batch = kubernetes.client.BatchV1Api()
    core = kubernetes.client.CoreV1Api()
    threads = [
        threading.Thread(
            target=watch,
            args=(batch.list_namespaced_job, namespace, lambda o: o.metadata.name, jobs, stop),
            daemon=True,
        ),
        threading.Thread(
            target=watch,
            args=(
                core.list_namespaced_pod,
                namespace,
                lambda o: (o.metadata.labels or {}).get(JOB_NAME_LABEL),
                pods,
                stop,
            ),
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    return threads


def submit(create: Any, bodies: list[dict[str, Any]], workers: int) -> dict[str, float]:
    sent: dict[str, float] = {}

    def one(body: dict[str, Any]) -> None:
        sent[body["metadata"]["name"]] = time.monotonic()
        create(body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, bodies))
    return sent


def wait_for(seen: Seen, names: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        with seen.lock:
            if all(n in seen.first for n in names):
                return
        time.sleep(0.2)


def latencies(sent: dict[str, float], seen: Seen, child: Any) -> list[float]:
    return [seen.first[child(n)] - t for n, t in sent.items() if child(n) in seen.first]


def make_namespace(core: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def template_job(namespace: str) -> dict[str, Any]:
    """The exact Job the operator builds for a TrainingJob, without owner (for the anchor)."""
    tj = api.TrainingJob.from_body(
        {
            "metadata": {"name": "anchor", "namespace": namespace, "uid": "x"},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "LogisticRegression"},
                "resources": {"cpu": "10m", "memory": "64Mi"},
            },
        }
    )
    config = build.train_config(
        tj, dataset_uri=STORAGE, dataset_digest=DIGEST, settings=rworkload.WorkloadSettings()
    )
    job = build.job(tj, config=config, settings=rworkload.WorkloadSettings(), suspend=False)
    del job["metadata"]["ownerReferences"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels.pop(rowner.LABEL_MANAGED_BY, None)  # not routed to the operator
    return job


def run_anchor(count: int, workers: int, timeout: float) -> list[float]:
    core = kubernetes.client.CoreV1Api()
    batch = kubernetes.client.BatchV1Api()
    ns = make_namespace(core, "bench-anchor")
    jobs, pods, stop = Seen(), Seen(), threading.Event()
    start_watches(ns, jobs, pods, stop)
    time.sleep(1.0)
    base = template_job(ns)
    bodies = []
    for i in range(count):
        body = copy.deepcopy(base)
        body["metadata"]["name"] = f"j{i:05d}-train"
        bodies.append(body)
    sent = submit(lambda b: batch.create_namespaced_job(ns, b), bodies, workers)
    wait_for(pods, list(sent), time.monotonic() + timeout)
    stop.set()
    result = latencies(sent, pods, lambda n: n)
    core.delete_namespace(ns)
    return result


def ready_dataset(ns: str) -> None:
    """A Ready Dataset: its prepare pod runs on the hold node and reports a result, as in the tests."""
    custom = kubernetes.client.CustomObjectsApi()
    core = kubernetes.client.CoreV1Api()
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "datasets",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {
                "storage": "file:///tmp/mlops-bench/datasets/iris",
                "sources": [{"sklearn": {"name": "iris"}}],
                "nodeSelector": {"mlops.dev/kwok-hold": "true"},
                "tolerations": [{"key": "mlops.dev/kwok-hold", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
    )
    deadline = time.monotonic() + 120
    pod = None
    while time.monotonic() < deadline and pod is None:
        items = core.list_namespaced_pod(ns, label_selector="mlops.dev/dataset=iris").items
        pod = next((p for p in items if p.status.phase == "Running"), None)
        time.sleep(0.5)
    if pod is None:
        raise SystemExit("the Dataset's prepare pod never ran")
    result = {
        "ok": True,
        "digest": DIGEST,
        "storageUri": STORAGE,
        "task": "classification",
        "target": "target",
        "rows": {"input": 150, "output": 150, "train": 90, "validation": 30, "test": 30},
    }
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        ns,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": pod.spec.containers[0].name,
                        "image": pod.spec.containers[0].image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "message": json.dumps(result),
                            }
                        },
                    }
                ],
            }
        },
    )
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "datasets", "iris")
        if (obj.get("status") or {}).get("phase") == "Ready":
            return
        time.sleep(0.5)
    raise SystemExit("the Dataset never became Ready")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_operator(
    count: int, workers: int, timeout: float, kubeconfig: str, *, restart: bool
) -> dict[str, Any]:
    core = kubernetes.client.CoreV1Api()
    custom = kubernetes.client.CustomObjectsApi()
    ns = make_namespace(core, "bench-tj")
    log_path = pathlib.Path(f"/tmp/{ns}-operator.log")
    metrics_port = free_port()
    proc = start_operator(ns, metrics_port, kubeconfig, log_path)
    try:
        ready_dataset(ns)
        jobs, pods, stop = Seen(), Seen(), threading.Event()
        start_watches(ns, jobs, pods, stop)
        time.sleep(1.0)
        before = operator_counters(metrics_port)
        bodies = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingJob",
                "metadata": {"name": f"t{i:05d}"},
                "spec": {
                    "datasetRef": {"name": "iris"},
                    "model": {"estimator": "LogisticRegression"},
                    "resources": {"cpu": "10m", "memory": "64Mi"},
                },
            }
            for i in range(count)
        ]
        sent = submit(
            lambda b: custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", b),
            bodies,
            workers,
        )
        wait_for(pods, [f"{n}-train" for n in sent], time.monotonic() + timeout)
        stop.set()
        at_pods = operator_counters(metrics_port)
        finished = wait_finished(custom, ns, len(sent), time.monotonic() + timeout)
        at_end = operator_counters(metrics_port)
        peak = peak_rss_mib(proc.pid)
        result: dict[str, Any] = {
            "api_calls": diff(at_pods["api"], before["api"]),
            "api_to_finished": diff(at_end["api"], before["api"]),
            "finished": finished,
            "reconciles": diff(at_pods["reconciles"], before["reconciles"]),
            "job": latencies(sent, jobs, lambda n: f"{n}-train"),
            "pod": latencies(sent, pods, lambda n: f"{n}-train"),
            "peak_mib": peak,
            "cache": at_end["cache"],
            "namespace": ns,
        }
        if restart:
            stop_operator(proc)
            proc = None
            result["restart"] = measure_restart(ns, kubeconfig, log_path, len(sent))
        return result
    finally:
        if proc is not None:
            stop_operator(proc)
        core.delete_namespace(ns)


def start_operator(ns: str, metrics_port: int, kubeconfig: str, log_path: pathlib.Path) -> Any:
    env = dict(os.environ, KUBECONFIG=kubeconfig, PYTHONUNBUFFERED="1")
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlops_operator",
                "--namespace",
                ns,
                "--metrics-port",
                str(metrics_port),
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--log-format",
                "plain",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def stop_operator(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def wait_finished(custom: Any, ns: str, count: int, deadline: float) -> int:
    """Wait until every TrainingJob has a final phase (kwok completes their pods with no
    result, so they end Failed: the whole create -> running -> finished path is walked)."""
    done = 0
    while time.monotonic() < deadline:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs")["items"]
        done = sum(1 for o in items if (o.get("status") or {}).get("phase") in api.FINISHED_PHASES)
        if done >= count:
            break
        time.sleep(1.0)
    time.sleep(3.0)  # let the last Events and status writes land
    return done


WRITE_METHODS = ("PATCH", "POST", "PUT", "DELETE")


def measure_restart(ns: str, kubeconfig: str, log_path: pathlib.Path, count: int) -> dict[str, Any]:
    """Start a new operator over ``count`` finished TrainingJobs: seconds until it has synced its
    caches and passed over every object once, and what it sent to the API in its first 30 s."""
    port = free_port()
    started = time.monotonic()
    offset = log_path.stat().st_size
    proc = start_operator(ns, port, kubeconfig, log_path)
    try:
        ready = None
        counters: dict[str, Any] = {"api": {}, "reconciles": {}, "cache": {}}
        while time.monotonic() - started < 30.0:
            try:
                counters = operator_counters(port)
            except OSError:
                time.sleep(0.2)
                continue
            synced = "caches synced" in log_path.read_bytes()[offset:].decode(errors="replace")
            if ready is None and synced and sum(counters["reconciles"].values()) >= count:
                ready = time.monotonic() - started
            time.sleep(0.5)
        return {
            "ready_s": ready,
            "api": counters["api"],
            "writes": sum(v for k, v in counters["api"].items() if k in WRITE_METHODS),
            "reconciles": counters["reconciles"],
            "peak_mib": peak_rss_mib(proc.pid),
        }
    finally:
        stop_operator(proc)


def operator_counters(port: int) -> dict[str, dict[str, float]]:
    """The operator's own API requests per method and its TrainingJob reconcile passes per result,
    read from its /metrics (they include the Dataset's few passes)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float]] = {"api": {}, "reconciles": {}, "cache": {}}
    for family in prom_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_operator_api_requests_total":
                out["api"][sample.labels["method"]] = sample.value
            elif sample.name == "mlops_operator_reconcile_total" and sample.labels["kind"] == "TrainingJob":
                out["reconciles"][sample.labels["result"]] = sample.value
            elif sample.name == "mlops_operator_cache_objects":
                out["cache"][sample.labels["kind"]] = sample.value
    return out


def summary(name: str, values: list[float], count: int) -> str:
    return (
        f"{name:<34} n={len(values):>5}/{count}  p50={percentile(values, 0.5):8.3f}s  "
        f"p99={percentile(values, 0.99):8.3f}s  max={max(values, default=float('nan')):8.3f}s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16, help="client threads that submit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for all pods per run")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart over the finished runs")
    args = parser.parse_args()
    kubeconfig = str(localcluster.up())
    kubernetes.config.load_kube_config(config_file=kubeconfig)
    configuration = kubernetes.client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = args.workers + 4
    kubernetes.client.Configuration.set_default(configuration)

    anchor = run_anchor(args.count, args.workers, args.timeout)
    ours = run_operator(args.count, args.workers, args.timeout, kubeconfig, restart=not args.no_restart)
    print(
        f"TrainingJob latency on kwok nodes, {args.count} submitted at once ({args.workers} client threads)"
    )
    print(summary("anchor: Job created -> pod exists", anchor, args.count))
    print(summary("TrainingJob created -> Job exists", ours["job"], args.count))
    print(summary("TrainingJob created -> pod exists", ours["pod"], args.count))
    if anchor and ours["pod"]:
        p50 = percentile(ours["pod"], 0.5) / percentile(anchor, 0.5)
        p99 = percentile(ours["pod"], 0.99) / percentile(anchor, 0.99)
        print(f"ratio TrainingJob/anchor (pod exists): p50 x{p50:.2f}  p99 x{p99:.2f}")
    print(f"operator peak memory (VmHWM): {ours['peak_mib']:.1f} MiB")
    for label, api_calls in (
        ("created -> pod exists", ours["api_calls"]),
        (f"created -> finished ({ours['finished']} finished)", ours["api_to_finished"]),
    ):
        per = ", ".join(f"{m} {v / args.count:.2f}" for m, v in sorted(api_calls.items()))
        events = api_calls.get("POST", 0.0) / args.count
        print(
            f"operator API requests per TrainingJob, {label}: {sum(api_calls.values()) / args.count:.2f}"
            f" ({per}; POST are Events: without them {sum(api_calls.values()) / args.count - events:.2f})"
        )
    print("cache sizes: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(ours["cache"].items())))
    restart = ours.get("restart")
    if restart:
        ready = "not within 30 s" if restart["ready_s"] is None else f"{restart['ready_s']:.1f} s"
        print(
            f"restart over {args.count} finished TrainingJobs: synced, every object passed once in {ready};"
            f" first 30 s: {int(restart['writes'])} writes, requests {restart['api']},"
            f" passes {restart['reconciles']}, peak memory {restart['peak_mib']:.1f} MiB"
        )
    passes = sum(ours["reconciles"].values())
    print(f"TrainingJob reconcile passes per TrainingJob: {passes / args.count:.2f} {ours['reconciles']}")
    print(f"mean TrainingJob -> pod: {statistics.fmean(ours['pod']) if ours['pod'] else float('nan'):.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
