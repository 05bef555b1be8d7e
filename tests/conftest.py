"""Shared fixtures: the real local control plane, namespaces, the operator and waiting helpers.

The cluster is the one ``make cluster-up`` starts (etcd, kube-apiserver, controller-manager,
scheduler, kwok nodes), reused when it already runs. A cluster that cannot start is an error,
never a skip: integration tests exist to run against the real thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import localcluster  # noqa: E402

# The kubernetes package reads KUBECONFIG when it is first imported (kopf's login uses that
# default), and test modules import it at collection: point it at the local cluster now.
os.environ["KUBECONFIG"] = str(localcluster.KUBECONFIG)

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
    explain: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds
    (and with what ``explain()`` returns then, e.g. the object's status, to say why)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    detail = f"; state: {explain()!r}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}{detail}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Cluster:
    kubeconfig: pathlib.Path
    bin_dir: pathlib.Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            text=True,
            check=False,
            capture_output=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def list(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        args += ["-n", namespace] if namespace else ["-A"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "--server-side", "--field-manager=pytest", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=text)

    def api_client(self) -> Any:
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The real control plane; started when it is not running. Never skipped."""
    try:
        kubeconfig = localcluster.up()
        bins = localcluster.bin_dir()
    except Exception as exc:
        pytest.fail(f"the test cluster could not start (CI={_in_ci()}): {exc}", pytrace=False)
    os.environ["KUBECONFIG"] = str(kubeconfig)
    c = Cluster(kubeconfig=kubeconfig, bin_dir=bins)
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    if crds:
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=pytest"]
        for path in crds:
            args += ["-f", str(path)]
        c.kubectl(*args)
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"-f={p}" for p in crds])
    return c


def _make_namespace(cluster: Cluster, prefix: str, labels: dict[str, str] | None = None) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    wait_until(
        lambda: cluster.get("serviceaccount", "default", name),
        timeout=30,
        what=f"default service account in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace ``t-<hex>``, watched by the session's in-process operator."""
    yield from _make_namespace(cluster, "t")


@pytest.fixture
def isolated_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace ``r-<hex>``, NOT watched by the session operator (for operator subprocesses)."""
    yield from _make_namespace(cluster, "r")


KUEUE_API = "kueue.x-k8s.io/v1beta2"


@dataclasses.dataclass
class Kueue:
    """Real Kueue beside the cluster (the ``kueue`` fixture): its objects' manifests, applied with
    the cluster's kubectl, and look-ups. It manages Jobs only in namespaces labelled
    ``mlops.dev/kueue-managed=true`` (``manage(namespace)``, or the ``kueue_namespace`` fixture)."""

    cluster: Cluster
    bin_dir: pathlib.Path  # the kueue binary, and its CRDs in crds/
    namespace: str = localcluster.KUEUE_NAMESPACE
    managed_label: str = localcluster.KUEUE_MANAGED_LABEL

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.cluster.kubeconfig

    def apply(self, *manifests: dict[str, Any]) -> None:
        """Server-side apply each manifest (ResourceFlavor, ClusterQueue, LocalQueue...)."""
        for manifest in manifests:
            self.cluster.apply(manifest)

    def manage(self, namespace: str) -> None:
        """Let Kueue manage the queue-labelled Jobs of ``namespace``."""
        self.cluster.kubectl("label", "namespace", namespace, f"{self.managed_label}=true", "--overwrite")

    def delete(self, kind: str, name: str, namespace: str | None = None, timeout: float = 60.0) -> None:
        """Delete and wait until gone (Kueue's finalizers: run it while Kueue runs)."""
        args = ["delete", kind, name, "--ignore-not-found", "--wait=true", f"--timeout={timeout:.0f}s"]
        self.cluster.kubectl(*args, *(["-n", namespace] if namespace else []), timeout=timeout + 30)

    @staticmethod
    def resource_flavor(
        name: str, node_labels: dict[str, str], tolerations: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"nodeLabels": node_labels}
        if tolerations:
            spec["tolerations"] = tolerations
        return {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": name}, "spec": spec}

    @staticmethod
    def cluster_queue(name: str, flavor: str, quota: dict[str, str]) -> dict[str, Any]:
        """A ClusterQueue for every namespace, one resource group: ``quota`` (resource: nominal
        quota) in ``flavor``."""
        resources = [{"name": r, "nominalQuota": q} for r, q in quota.items()]
        return {
            "apiVersion": KUEUE_API,
            "kind": "ClusterQueue",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {"coveredResources": list(quota), "flavors": [{"name": flavor, "resources": resources}]}
                ],
            },
        }

    @staticmethod
    def local_queue(name: str, namespace: str, cluster_queue: str) -> dict[str, Any]:
        return {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue},
        }

    def workload_for(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The Workload Kueue made for the ``kind`` (e.g. Job) ``name``, or None yet."""
        for wl in self.cluster.list("workloads.kueue.x-k8s.io", namespace):
            owners = wl["metadata"].get("ownerReferences", [])
            if any(o.get("kind") == kind and o.get("name") == name for o in owners):
                return wl
        return None

    @staticmethod
    def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
        for cond in (obj or {}).get("status", {}).get("conditions", []):
            if cond.get("type") == type_:
                result: dict[str, Any] = cond
                return result
        return None


@pytest.fixture(scope="session")
def kueue(cluster: Cluster) -> Kueue:
    """Real Kueue (tests/cluster/kueue: the pinned release, built on first use and cached, its
    CRDs installed), started when it is not running and left running. Never skipped."""
    try:
        localcluster.kueue_up()
        bins = localcluster.bin_dir("kueue")
    except Exception as exc:
        pytest.fail(f"Kueue could not start (CI={_in_ci()}): {exc}", pytrace=False)
    return Kueue(cluster=cluster, bin_dir=bins)


@pytest.fixture
def kueue_namespace(kueue: Kueue) -> Iterator[str]:
    """A fresh namespace ``q-<hex>`` that Kueue manages (not watched by the session operator;
    for one that is, take ``namespace`` and ``kueue.manage(namespace)``)."""
    yield from _make_namespace(kueue.cluster, "q", labels={kueue.managed_label: "true"})


@dataclasses.dataclass
class OperatorHandle:
    metrics_port: int

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())


@pytest.fixture(scope="session")
def operator(cluster: Cluster) -> Iterator[OperatorHandle]:
    """The operator running in-process (kopf.testing.KopfRunner), watching namespaces ``t-*``."""
    import kopf.testing

    from mlops_operator.handlers import settings as handler_settings

    port = free_port()
    handler_settings.configure(
        handler_settings.OperatorConfig(
            metrics_port=port,
            metrics_host="127.0.0.1",
            kubeconfig=str(cluster.kubeconfig),
            namespaces=("t-*",),
        )
    )
    args = ["run", "--standalone", "--namespace", "t-*", "-m", "mlops_operator.handlers.all"]
    with kopf.testing.KopfRunner(args, timeout=60) as runner:
        handle = OperatorHandle(metrics_port=port)
        wait_until(lambda: _metrics_up(handle), timeout=30, what="the operator's /metrics")
        yield handle
    if runner.exception is not None and not isinstance(runner.exception, SystemExit):
        raise runner.exception


def _metrics_up(handle: OperatorHandle) -> bool:
    with contextlib.suppress(OSError):
        handle.metrics()
        return True
    return False


@dataclasses.dataclass
class OperatorProcess:
    """The operator as a subprocess (``python -m mlops_operator``), which a test may kill and restart."""

    cluster: Cluster
    namespace: str
    metrics_port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: pathlib.Path | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. MLOPS_WORKLOAD_IMAGE

    def start(self) -> OperatorProcess:
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig), PYTHONUNBUFFERED="1", **self.env)
        self.log_path = pathlib.Path(f"/tmp/mlops-operator-{self.namespace}.log")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlops_operator",
                "--namespace",
                self.namespace,
                "--metrics-port",
                str(self.metrics_port),
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--log-format",
                "plain",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        handle = OperatorHandle(self.metrics_port)
        wait_until(lambda: _metrics_up(handle), timeout=60, what="the operator subprocess's /metrics")
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies or the OOM killer strikes."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def metrics(self) -> str:
        return OperatorHandle(self.metrics_port).metrics()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


@pytest.fixture
def operator_process(cluster: Cluster, isolated_namespace: str) -> Iterator[OperatorProcess]:
    """A killable operator subprocess watching only ``isolated_namespace`` (call ``.start()``)."""
    handle = OperatorProcess(cluster=cluster, namespace=isolated_namespace)
    yield handle
    handle.kill()


@pytest.fixture(scope="session")
def postgres(cluster: Cluster) -> dict[str, str]:
    """The local cluster's real PostgreSQL (tests/cluster/postgres.py: Debian's server, database
    ``mlops``, table ``examples.breast_cancer``), started with the cluster; its ``info()``, whose
    ``hostUrl`` (password included) reaches it from this process."""
    import postgres as local_postgres

    try:
        return local_postgres.up()
    except Exception as exc:
        pytest.fail(f"the test PostgreSQL could not start: {exc}", pytrace=False)
