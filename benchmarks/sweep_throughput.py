"""The sweep controller's trial throughput and slot utilisation: 1,000 trials at parallelism 50.

Runs the operator (only the sweep handler, as a subprocess) against the local control plane
(``tests/cluster/localcluster.py``), creates a HyperparameterSweep of ``--trials`` trials at
``--parallelism``, and plays the TrainingJob controller: every trial the sweep creates "runs"
for ``--duration`` seconds, then gets ``Succeeded`` with an objective value through the status
subresource. No Job or pod is involved, so the figures are the sweep controller's own.

Two phases, each a fresh sweep:
- ``duration 0``: trials finish as soon as they are seen, so the controller is the bottleneck:
  trials created per second. Anchor, measured in the same run: one client applying the same
  number of TrainingJobs back to back with server-side apply (what the controller does per
  trial, without deciding anything), printed as a ratio.
- ``duration D``: slot utilisation = sum of trial run times / (parallelism x wall time); the
  anchor is a perfect scheduler (1.0). Also the refill latency: from a trial's completion to
  the next trial's creation, p50/p99.

Also printed: the operator's CPU seconds per trial and the final status size.

    python tests/cluster/localcluster.py up
    .venv/bin/python benchmarks/sweep_throughput.py --trials 1000 --parallelism 50 --duration 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import localcluster  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402

GROUP, VERSION = "mlops.dev", "v1alpha1"
LAUNCH = """
import sys, kopf, logging
from mlops_operator.handlers import settings
settings.configure(
    settings.OperatorConfig(
        metrics_port=int(sys.argv[2]), metrics_host="127.0.0.1", namespaces=(sys.argv[1],)
    )
)
verbose = sys.argv[3] == "1"
kopf.configure(log_format=kopf.LogFormat.FULL if verbose else kopf.LogFormat.PLAIN)
logging.getLogger("kubernetes").setLevel(logging.WARNING)
logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
import mlops_operator.handlers.sweep, mlops_operator.handlers.children
kopf.run(clusterwide=False, namespaces=(sys.argv[1],), standalone=True, liveness_endpoint=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubectl(*args: str, stdin: str | None = None) -> str:
    exe = str(localcluster.bin_dir() / "kubectl")
    proc = subprocess.run([exe, *args], input=stdin, text=True, capture_output=True, check=True)
    return proc.stdout


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sweep_manifest(name: str, namespace: str, *, trials: int, parallelism: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperparameterSweep",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "trialTemplate": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
                "metrics": ["accuracy"],
            },
            "searchSpace": [
                {"name": "max_depth", "type": "int", "low": 2, "high": 16},
                {"name": "max_features", "type": "float", "low": 0.1, "high": 1.0},
                {"name": "criterion", "type": "categorical", "values": ["gini", "entropy"]},
            ],
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "algorithm": {"name": "random"},
            "seed": 1,
            "maxTrials": trials,
            "parallelism": parallelism,
            "maxFailedTrials": trials,
        },
    }


class Runner:
    """Plays the TrainingJob controller for one sweep: runs each trial for ``duration`` seconds."""

    def __init__(self, api: k8s.ApiClient, namespace: str, sweep: str, duration: float) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.namespace, self.sweep, self.duration = namespace, sweep, duration
        self.seen: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.samples: list[tuple[float, int]] = []

    def watch(self) -> None:
        selector = f"mlops.dev/hyperparametersweep={self.sweep}"
        while not self.stop.is_set():
            w = k8s_watch.Watch()
            for event in w.stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                "trainingjobs",
                label_selector=selector,
                timeout_seconds=5,
            ):
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED":
                    with self.lock:
                        if name not in self.seen:
                            self.seen[name] = time.monotonic()
                if self.stop.is_set():
                    w.stop()
                    break

    def finish(self, name: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "phase": "Succeeded",
            "objectiveMetric": "accuracy",
            "objectiveValue": 0.5,
            "modelUri": f"pvc://models/{self.namespace}/{name}",
            "completionTime": stamp,
        }
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "trainingjobs", name, {"status": status}
        )
        with self.lock:
            self.done[name] = time.monotonic()

    def run(self, total: int) -> None:
        threading.Thread(target=self.watch, daemon=True).start()
        pending: set[str] = set()
        while True:
            now = time.monotonic()
            with self.lock:
                due = [
                    n
                    for n, t in self.seen.items()
                    if n not in self.done and n not in pending and now - t >= self.duration
                ]
                running = sum(1 for n in self.seen if n not in self.done)
            self.samples.append((now, running))
            for name in due:
                pending.add(name)
                self.pool.submit(self.finish, name)
            with self.lock:
                if len(self.done) >= total:
                    break
            time.sleep(0.02)
        self.stop.set()

    def refill_latencies(self) -> list[float]:
        """For each completion, the time until the next trial was created."""
        created = sorted(self.seen.values())
        out = []
        for t in sorted(self.done.values()):
            nxt = next((c for c in created if c >= t), None)
            if nxt is not None:
                out.append(nxt - t)
        return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def phase(
    api: k8s.ApiClient, namespace: str, *, trials: int, parallelism: int, duration: float, operator_pid: int
) -> dict[str, Any]:
    name = f"bench-{int(duration * 1000)}ms"
    custom = k8s.CustomObjectsApi(api)
    runner = Runner(api, namespace, name, duration)
    cpu0 = cpu_seconds(operator_pid)
    started = time.monotonic()
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "hyperparametersweeps",
        sweep_manifest(name, namespace, trials=trials, parallelism=parallelism),
    )
    runner.run(trials)
    while (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "hyperparametersweeps", name)
        .get("status", {})
        .get("phase")
    ) != "Succeeded":
        time.sleep(0.2)
    wall = time.monotonic() - started
    cpu = cpu_seconds(operator_pid) - cpu0
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "hyperparametersweeps", name)[
        "status"
    ]
    busy = sum(runner.done[n] - runner.seen[n] for n in runner.done)
    first, last = min(runner.seen.values()), max(runner.seen.values())
    over = max(r for _, r in runner.samples)
    latencies = runner.refill_latencies()
    return {
        "duration": duration,
        "wall": wall,
        "created_per_s": (trials - 1) / (last - first) if last > first else float("nan"),
        "utilisation": busy / (parallelism * wall),
        "max_running_seen": over,
        "refill_p50": percentile(latencies, 0.5),
        "refill_p99": percentile(latencies, 0.99),
        "cpu_per_trial_ms": 1000 * cpu / trials,
        "status_bytes": len(json.dumps(status)),
        "trials_created": status["trials"]["created"],
    }


def anchor(api: k8s.ApiClient, namespace: str, trials: int) -> float:
    """Trials per second of one client applying TrainingJobs back to back (no decisions)."""
    from mlops_operator.k8s import client as kube_client

    kube = kube_client.Kube(api)
    template = sweep_manifest("x", namespace, trials=1, parallelism=1)["spec"]["trialTemplate"]
    started = time.monotonic()
    for i in range(trials):
        kube.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingJob",
                "metadata": {"name": f"anchor-{i}", "namespace": namespace, "labels": {"bench": "anchor"}},
                "spec": template,
            }
        )
    return trials / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=50)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds each trial runs in phase 2")
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    parser.add_argument(
        "--verbose", action="store_true", help="operator log at INFO, in /tmp/<namespace>-operator.log"
    )
    args = parser.parse_args(argv)

    kubeconfig = localcluster.up()
    os.environ["KUBECONFIG"] = str(kubeconfig)
    crds = sorted(str(p) for p in (ROOT / "crds").glob("*.yaml"))
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=bench", *[f"-f={c}" for c in crds]
    )
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    port = free_port()
    with pathlib.Path(f"/tmp/{namespace}-operator.log").open("ab") as log:
        operator = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, namespace, str(port), "1" if args.verbose else "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        print(f"{args.trials} trials, parallelism {args.parallelism}, namespace {namespace}")
        fast = phase(
            api,
            namespace,
            trials=args.trials,
            parallelism=args.parallelism,
            duration=0.0,
            operator_pid=operator.pid,
        )
        timed = phase(
            api,
            namespace,
            trials=args.trials,
            parallelism=args.parallelism,
            duration=args.duration,
            operator_pid=operator.pid,
        )
        raw = anchor(api, namespace, args.trials)
        for result in (fast, timed):
            print(
                f"trial duration {result['duration']:.1f}s: wall {result['wall']:.1f}s, "
                f"{result['created_per_s']:.1f} trials created/s, "
                f"slot utilisation {result['utilisation']:.2f}, "
                f"max running seen {result['max_running_seen']}, "
                f"refill p50 {result['refill_p50'] * 1000:.0f} ms p99 {result['refill_p99'] * 1000:.0f} ms, "
                f"operator CPU {result['cpu_per_trial_ms']:.1f} ms/trial, "
                f"status {result['status_bytes']} bytes, {result['trials_created']} created"
            )
        print(f"anchor: one client applying {args.trials} TrainingJobs back to back: {raw:.1f}/s")
        print(f"ratio sweep (duration 0) / anchor: {fast['created_per_s'] / raw:.2f}")
        ideal = args.trials * args.duration / args.parallelism
        print(f"ratio ideal wall / actual wall (duration {args.duration:g}s): {ideal / timed['wall']:.2f}")
    finally:
        operator.kill()
        operator.wait(timeout=30)
        # kopf's finalizer on the sweeps would hold the namespace in Terminating without an operator.
        for name in kubectl("get", "hps", "-n", namespace, "-o", "name").split():
            kubectl("patch", "-n", namespace, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        if not args.keep:
            kubectl("delete", "namespace", namespace, "--wait=false")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
