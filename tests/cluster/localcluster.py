"""A real Kubernetes control plane on loopback, for development and CI.

etcd, kube-apiserver (TLS, RBAC, service-account tokens, ServiceAccount admission),
kube-controller-manager, kube-scheduler and kwok, all built from pinned Go modules by
``tests/cluster/build.sh``. kwok simulates the nodes: CPU nodes and GPU nodes that advertise
``nvidia.com/gpu``, plus one "hold" node whose pods stay Running so tests can write their
outcome. Standard library only: this file runs without the virtualenv (``make cluster-up``
then seeds the S3 bucket with the venv's ``seed_s3.py``).

Beside it, a real S3 endpoint: versitygw (same pinned-module build) serving the POSIX directory
``STATE/s3`` on ``0.0.0.0:PORT_BASE+900``, so the host reaches it on 127.0.0.1 and real-node
pods on the bridge address 10.244.1.1. Its root credentials are generated once and kept in
``STATE/s3-credentials.json`` (mode 0600); ``s3_info()`` (also written to ``STATE/s3.json``,
mode 0600) tells clients where and how to connect, and the Secret ``default/mlops-s3`` carries
them as ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``. The bucket ``mlops-examples`` is a
top-level directory of ``STATE/s3`` (the posix backend's buckets); ``seed_s3.py`` fills it.

Opt-in, beside them: Kueue (``kueue_up()``; ``up --kueue``, ``kueue-up``), built from its pinned
module by ``build.sh kueue`` only when asked, so the default tier never pays for it. Its CRDs come
from the same module; it runs without leader election, for ``batch/job`` only, in namespaces
labelled ``mlops.dev/kueue-managed=true`` only, and with no webhook configuration registered in
the API server: a stopped Kueue never blocks pod or Job creation (queued Jobs must be created
suspended, as the operator does).

    python tests/cluster/localcluster.py up      # idempotent; last line: KUBECONFIG=<path>
    python tests/cluster/localcluster.py up --kueue   # the same, plus Kueue
    python tests/cluster/localcluster.py kueue-up     # add Kueue to the (running) cluster
    python tests/cluster/localcluster.py down
    python tests/cluster/localcluster.py status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import signal
import ssl
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(
    os.environ.get("MLOPS_CACHE")
    or pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "mlops-operator"
)
STATE = CACHE / "cluster"
KUBECONFIG = STATE / "admin.kubeconfig"
PORT_BASE = int(os.environ.get("MLOPS_CLUSTER_PORT_BASE", "26000"))
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
# The real node's bridge address (realnode_config.NODE_IP), where pods reach host services.
POD_HOST_IP = "10.244.1.1"

S3_DIR = STATE / "s3"  # versitygw's posix root: each top-level directory is a bucket
S3_CREDENTIALS = STATE / "s3-credentials.json"
S3_INFO = STATE / "s3.json"
S3_BUCKET = "mlops-examples"
S3_REGION = "us-east-1"
S3_SECRET = "mlops-s3"  # in namespace default
S3_HEALTH_PATH = "/_health"  # "_" cannot start a bucket name, so this shadows no bucket

KUEUE_DIR = STATE / "kueue"  # its Configuration file and webhook serving cert
KUEUE_NAMESPACE = "kueue-system"
# Kueue manages Jobs only in namespaces with this label (its managedJobsNamespaceSelector, which
# v0.17 respects even for Jobs with a queue-name label): the rest of the suite, which fakes
# Kueue's admission in unlabelled namespaces, runs beside a running Kueue untouched.
KUEUE_MANAGED_LABEL = "mlops.dev/kueue-managed"
# Kueue v0.17 reads its metrics serving cert from this fixed path when its internal cert
# management is off (cmd/kueue/main.go), and exits when the files are missing.
KUEUE_METRICS_CERT_DIR = pathlib.Path("/etc/kueue/metrics/certs")


@dataclasses.dataclass(frozen=True)
class Ports:
    etcd_client: int = PORT_BASE + 379
    etcd_peer: int = PORT_BASE + 380
    apiserver: int = PORT_BASE + 443
    controller_manager: int = PORT_BASE + 257
    scheduler: int = PORT_BASE + 259
    kwok: int = PORT_BASE + 247
    s3: int = PORT_BASE + 900
    kueue_webhook: int = PORT_BASE + 943
    kueue_metrics: int = PORT_BASE + 980
    kueue_health: int = PORT_BASE + 981


PORTS = Ports()
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "versitygw")
OPTIONAL_COMPONENTS = ("kueue",)  # started on request only; `down` stops them, `status` reports them

# Simulated nodes: name -> (labels, taints, capacity).
CPU_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "200Gi"}
GPU_CAPACITY = {**CPU_CAPACITY, "nvidia.com/gpu": "4"}
NODES: dict[str, tuple[dict[str, str], list[dict[str, str]], dict[str, str]]] = {
    "kwok-cpu-0": ({"mlops.dev/node-pool": "cpu"}, [], CPU_CAPACITY),
    "kwok-cpu-1": ({"mlops.dev/node-pool": "cpu"}, [], CPU_CAPACITY),
    "kwok-gpu-0": (
        {
            "mlops.dev/node-pool": "gpu",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-H100",
        },
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        GPU_CAPACITY,
    ),
    "kwok-gpu-1": (
        {
            "mlops.dev/node-pool": "gpu",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-A100",
        },
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        GPU_CAPACITY,
    ),
    "kwok-hold-0": (
        {"mlops.dev/node-pool": "hold", "mlops.dev/kwok-hold": "true"},
        [{"key": "mlops.dev/kwok-hold", "value": "true", "effect": "NoSchedule"}],
        CPU_CAPACITY,
    ),
}


def log(msg: str) -> None:
    print(f"localcluster: {msg}", file=sys.stderr, flush=True)


def bin_dir(what: str | None = None) -> pathlib.Path:
    """The cached binaries' directory, built first when missing; ``what="kueue"``: Kueue's own
    (the ``kueue`` binary and its CRDs in ``crds/``), cached apart from the control plane's."""
    argv = ["bash", str(HERE / "build.sh"), *([what] if what else [])]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return pathlib.Path(out[-1])


# --------------------------------------------------------------------------------------------
# PKI (openssl): a CA, the apiserver's serving cert, client certs, the service-account key.
# --------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _client_cert(
    pki: pathlib.Path, name: str, cn: str, org: str | None = None, sans: str | None = None
) -> None:
    key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
    if crt.exists():
        return
    subject = f"/CN={cn}" + (f"/O={org}" if org else "")
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=serverAuth,clientAuth")
    if sans:
        lines.append(f"subjectAltName={sans}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(pki / "ca.crt"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )


def make_pki(pki: pathlib.Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        _openssl("genrsa", "-out", str(pki / "ca.key"), "2048")
        _openssl(
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-key",
            str(pki / "ca.key"),
            "-subj",
            "/CN=mlops-test-ca",
            "-days",
            "3650",
            "-sha256",
            "-out",
            str(pki / "ca.crt"),
        )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _client_cert(pki, "apiserver", "kube-apiserver", sans=sans)
    _client_cert(pki, "admin", "mlops-admin", org="system:masters")
    _client_cert(pki, "controller-manager", "system:kube-controller-manager")
    _client_cert(pki, "scheduler", "system:kube-scheduler")
    _client_cert(pki, "kwok", "kwok-controller", org="system:masters")
    _client_cert(
        pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="kubeadm:cluster-admins"
    )
    if not (pki / "sa.key").exists():
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def write_kubeconfig(path: pathlib.Path, pki: pathlib.Path, user: str) -> None:
    def b64(p: pathlib.Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mlops-local",
                "cluster": {
                    "server": f"https://127.0.0.1:{PORTS.apiserver}",
                    "certificate-authority-data": b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pki / f"{user}.crt"),
                    "client-key-data": b64(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "mlops-local", "context": {"cluster": "mlops-local", "user": user}}],
        "current-context": "mlops-local",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML.
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _pid(name: str) -> int | None:
    pidfile = STATE / f"{name}.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def _start(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Start ``argv`` unless ``name`` runs; ``env`` adds variables (secrets go there, not in argv,
    so they never show in ``ps``)."""
    if _pid(name):
        return
    logfile = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **env} if env else None,
    )
    (STATE / f"{name}.pid").write_text(str(proc.pid))
    log(f"started {name} (pid {proc.pid})")


def _ssl_context(pki: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _wait_http(url: str, deadline_s: float, what: str, ctx: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(
        f"{what} did not become ready at {url} within {deadline_s:.0f}s ({last}); see the logs in {STATE}"
    )


def _kubectl(bins: pathlib.Path, *args: str, input_: str | None = None) -> str:
    proc = subprocess.run(
        [str(bins / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args],
        input=input_,
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def node_manifest(name: str) -> dict[str, object]:
    labels, taints, capacity = NODES[name]
    return kwok_node(name, labels, taints, capacity)


def kwok_node(
    name: str, labels: dict[str, str], taints: list[dict[str, str]], capacity: dict[str, str]
) -> dict[str, object]:
    """A Node that kwok manages (its annotation), with ``labels``, ``taints`` and ``capacity``."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "architecture": "amd64",
                "operatingSystem": "linux",
            },
        },
    }


# --------------------------------------------------------------------------------------------
# S3: versitygw over STATE/s3
# --------------------------------------------------------------------------------------------


def _write_private(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 from the first byte (it holds secrets)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.chmod(0o600)  # O_CREAT keeps the mode of a leftover file
    tmp.replace(path)


def new_s3_credentials() -> dict[str, str]:
    """A fresh root access key (20 characters, AWS's shape) and secret key (40 characters)."""
    upper = string.ascii_uppercase + string.digits
    mixed = string.ascii_letters + string.digits
    return {
        "access_key": "MLOPS" + "".join(secrets.choice(upper) for _ in range(15)),
        "secret_key": "".join(secrets.choice(mixed) for _ in range(40)),
    }


def _s3_credentials(create: bool) -> tuple[dict[str, str], bool]:
    """The versitygw root credentials kept in ``S3_CREDENTIALS``, and whether this call made them.
    Made once (the first writer wins when two ``up()`` race); never printed."""
    made = False
    if not S3_CREDENTIALS.exists():
        if not create:
            raise RuntimeError(
                f"no S3 credentials at {S3_CREDENTIALS}: start the cluster first "
                "(make cluster-up, or localcluster.up())"
            )
        STATE.mkdir(parents=True, exist_ok=True)
        tmp = STATE / f".{S3_CREDENTIALS.name}.{os.getpid()}.new"
        _write_private(tmp, json.dumps(new_s3_credentials(), indent=2) + "\n")
        try:
            os.link(tmp, S3_CREDENTIALS)
            made = True
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        data = json.loads(S3_CREDENTIALS.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{S3_CREDENTIALS} is not readable JSON ({type(exc).__name__})") from None
    missing = [k for k in ("access_key", "secret_key") if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise RuntimeError(f"{S3_CREDENTIALS} lacks {', '.join(missing)}; delete it and run up() again")
    return {"access_key": data["access_key"], "secret_key": data["secret_key"]}, made


def s3_info() -> dict[str, str]:
    """Where and how to reach the cluster's S3 endpoint (also in ``STATE/s3.json`` after ``up()``).

    ``endpoint`` is for the host, ``pod_endpoint`` for pods on the real node (the bridge address),
    ``secret`` names the Secret in namespace default that holds the same credentials."""
    creds, _ = _s3_credentials(create=False)
    return {
        "endpoint": f"http://127.0.0.1:{PORTS.s3}",
        "pod_endpoint": f"http://{POD_HOST_IP}:{PORTS.s3}",
        "access_key": creds["access_key"],
        "secret_key": creds["secret_key"],
        "region": S3_REGION,
        "bucket": S3_BUCKET,
        "secret": S3_SECRET,
    }


def s3_secret_manifest(creds: dict[str, str]) -> dict[str, object]:
    """The Secret ``default/mlops-s3``: the root credentials under the AWS SDKs' variable names."""

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": S3_SECRET,
            "namespace": "default",
            "labels": {"app.kubernetes.io/managed-by": "localcluster"},
        },
        "type": "Opaque",
        "data": {
            "AWS_ACCESS_KEY_ID": b64(creds["access_key"]),
            "AWS_SECRET_ACCESS_KEY": b64(creds["secret_key"]),
        },
    }


def versitygw_argv(bins: pathlib.Path) -> list[str]:
    """versitygw's command line; the credentials go in its environment, never here."""
    return [
        str(bins / "versitygw"),
        "--port",
        f"0.0.0.0:{PORTS.s3}",
        "--health",
        S3_HEALTH_PATH,
        "--region",
        S3_REGION,
        "--quiet",
        "posix",
        str(S3_DIR),
    ]


def _start_s3(bins: pathlib.Path) -> dict[str, str]:
    creds, made = _s3_credentials(create=True)
    if made and _pid("versitygw"):
        _stop("versitygw")  # it serves credentials that no longer exist anywhere
    (S3_DIR / S3_BUCKET).mkdir(parents=True, exist_ok=True)  # a top-level directory is a bucket
    _start(
        "versitygw",
        versitygw_argv(bins),
        env={"ROOT_ACCESS_KEY_ID": creds["access_key"], "ROOT_SECRET_ACCESS_KEY": creds["secret_key"]},
    )
    return creds


def up(timeout_s: float = 120.0) -> pathlib.Path:
    """Start whatever is not running; return the admin kubeconfig. Idempotent."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make the cluster's certificates (apt-get install openssl)")
    bins = bin_dir()
    STATE.mkdir(parents=True, exist_ok=True)
    pki = STATE / "pki"
    make_pki(pki)
    write_kubeconfig(KUBECONFIG, pki, "admin")
    for user in ("controller-manager", "scheduler", "kwok"):
        write_kubeconfig(STATE / f"{user}.kubeconfig", pki, user)
    started = time.monotonic()

    _start(
        "etcd",
        [
            str(bins / "etcd"),
            "--name",
            "mlops-etcd",
            "--data-dir",
            str(STATE / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{PORTS.etcd_client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{PORTS.etcd_client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{PORTS.etcd_peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{PORTS.etcd_peer}",
            "--initial-cluster",
            f"mlops-etcd=http://127.0.0.1:{PORTS.etcd_peer}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes",
            str(4 * 1024**3),
            "--log-level",
            "warn",
        ],
    )
    _wait_http(f"http://127.0.0.1:{PORTS.etcd_client}/health", 30, "etcd")
    s3_creds = _start_s3(bins)  # independent of the control plane: starts while the apiserver does

    _start(
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{PORTS.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={PORTS.apiserver}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,LimitRanger,DefaultStorageClass,"
            "ResourceQuota,PodSecurity,Priority,DefaultTolerationSeconds,NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--endpoint-reconciler-type=none",
            "--event-ttl=1h",
            "--v=1",
        ],
    )
    ctx = _ssl_context(pki)
    _wait_http(f"https://127.0.0.1:{PORTS.apiserver}/readyz", 90, "kube-apiserver", ctx)

    _start(
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS.controller_manager}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            f"--cluster-cidr={POD_CIDR}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam",
            # kwok's heartbeats can lag on a loaded 2-core machine; a node taken NotReady has all
            # its simulated pods marked NotReady for good (kwok never re-readies them).
            "--node-monitor-grace-period=120s",
            "--concurrent-job-syncs=20",
            "--concurrent-gc-syncs=20",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    _start(
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={STATE / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={STATE / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS.scheduler}",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    _start(
        "kwok",
        [
            str(bins / "kwok"),
            f"--kubeconfig={STATE / 'kwok.kubeconfig'}",
            f"--config={HERE / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.128.0/17",
            "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{PORTS.kwok}",
        ],
    )
    _wait_http(
        f"https://127.0.0.1:{PORTS.controller_manager}/healthz", 60, "kube-controller-manager", _insecure()
    )
    _wait_http(f"https://127.0.0.1:{PORTS.scheduler}/healthz", 60, "kube-scheduler", _insecure())

    existing = set(_kubectl(bins, "get", "nodes", "-o", "name").split())
    for name in NODES:
        if f"node/{name}" not in existing:
            _kubectl(bins, "create", "-f", "-", input_=json.dumps(node_manifest(name)))
    _wait_nodes_ready(bins, deadline_s=max(10.0, timeout_s - (time.monotonic() - started)))
    _wait_default_serviceaccount(bins, 60)
    import postgres  # the SQL sources' PostgreSQL and its Secret (beside this file, stdlib too)

    postgres.ensure(bins)
    _wait_http(f"http://127.0.0.1:{PORTS.s3}{S3_HEALTH_PATH}", 30, "versitygw (S3)")
    _kubectl(
        bins,
        "apply",
        "--server-side",  # no last-applied annotation repeating the credentials
        "--force-conflicts",
        "--field-manager=localcluster",
        "-f",
        "-",
        input_=json.dumps(s3_secret_manifest(s3_creds)),
    )
    _write_private(S3_INFO, json.dumps(s3_info(), indent=2) + "\n")
    log(
        f"cluster ready in {time.monotonic() - started:.1f}s; binaries in {bins}; "
        f"S3 at http://127.0.0.1:{PORTS.s3} (credentials in {S3_INFO})"
    )
    return KUBECONFIG


# --------------------------------------------------------------------------------------------
# Kueue (opt-in): the pinned release, its CRDs, a Configuration for this cluster
# --------------------------------------------------------------------------------------------


def kueue_config() -> dict[str, object]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2, what v0.17 reads) for this cluster."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "leaderElection": {"leaderElect": False},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{PORTS.kueue_health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{PORTS.kueue_metrics}"},
        # The webhook server listens (its readyz waits for it) but no webhook configuration points
        # at it: Kueue's reconcilers need none, and a stopped Kueue must block nothing.
        "webhook": {"host": "127.0.0.1", "port": PORTS.kueue_webhook, "certDir": str(KUEUE_DIR / "certs")},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchLabels": {KUEUE_MANAGED_LABEL: "true"}},
        "integrations": {"frameworks": ["batch/job"]},
        # The visibility API server wants its cert at /visibility and an APIService to be of use.
        "featureGates": {"VisibilityOnDemand": False},
        "clientConnection": {"qps": 50, "burst": 100},
    }


def kueue_argv(kueue_bins: pathlib.Path) -> list[str]:
    return [str(kueue_bins / "kueue"), f"--config={KUEUE_DIR / 'config.yaml'}"]


def _install_cert(src_dir: pathlib.Path, name: str, dest: pathlib.Path) -> None:
    """Copy ``name``.crt/.key from the PKI to ``dest``/tls.crt and tls.key (the key 0600), when
    they differ: rewriting them unchanged would make a running Kueue's cert watcher reload."""
    dest.mkdir(parents=True, exist_ok=True)
    for ext, target in (("crt", "tls.crt"), ("key", "tls.key")):
        data = (src_dir / f"{name}.{ext}").read_text()
        path = dest / target
        if not path.exists() or path.read_text() != data:
            _write_private(path, data)


def _kueue_certs(pki: pathlib.Path) -> None:
    """One serving cert, signed by the cluster CA, for Kueue's webhook server (its certDir) and
    its metrics server (the fixed path it reads)."""
    sans = f"IP:127.0.0.1,DNS:localhost,DNS:kueue-webhook-service.{KUEUE_NAMESPACE}.svc"
    _client_cert(pki, "kueue-serving", "kueue-webhook-service", sans=sans)
    _install_cert(pki, "kueue-serving", KUEUE_DIR / "certs")
    try:
        _install_cert(pki, "kueue-serving", KUEUE_METRICS_CERT_DIR)
    except PermissionError as exc:
        raise RuntimeError(
            f"Kueue reads its metrics cert from {KUEUE_METRICS_CERT_DIR} (fixed in its main.go) and "
            f"this user cannot write there ({exc}); run as root, or create it writable once"
        ) from None


def _wait_kueue_ready(deadline_s: float) -> None:
    url = f"http://127.0.0.1:{PORTS.kueue_health}/readyz"
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        if _pid("kueue") is None:
            tail = (STATE / "kueue.log").read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError("kueue exited while starting; the end of its log:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(
        f"kueue did not become ready at {url} within {deadline_s:.0f}s ({last}); see {STATE / 'kueue.log'}"
    )


def kueue_up(timeout_s: float = 120.0) -> pathlib.Path:
    """Start Kueue beside the cluster (the cluster first, when it is not running); return the
    admin kubeconfig. Builds Kueue on first use (cached). Idempotent."""
    if not running():
        up()
    kueue_bins = bin_dir("kueue")
    if _pid("kueue") is not None:
        with contextlib.suppress(RuntimeError):
            _wait_kueue_ready(5)
            return KUBECONFIG
        _stop("kueue")  # running but not ready: start it afresh
    started = time.monotonic()
    bins = bin_dir()
    pki = STATE / "pki"
    KUEUE_DIR.mkdir(parents=True, exist_ok=True)
    _kueue_certs(pki)
    (KUEUE_DIR / "config.yaml").write_text(json.dumps(kueue_config(), indent=2) + "\n")  # JSON is YAML
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NAMESPACE}}
    _kubectl(
        bins,
        "apply",
        "--server-side",
        "--field-manager=localcluster",
        "-f",
        "-",
        input_=json.dumps(namespace),
    )
    crds = str(kueue_bins / "crds")
    # Server-side: the Workload CRD is far too big for client-side apply's annotation.
    _kubectl(bins, "apply", "--server-side", "--force-conflicts", "--field-manager=localcluster", "-f", crds)
    _kubectl(bins, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    _start("kueue", kueue_argv(kueue_bins), env={"KUBECONFIG": str(KUBECONFIG)})
    _wait_kueue_ready(timeout_s)
    log(f"kueue ready in {time.monotonic() - started:.1f}s (health http://127.0.0.1:{PORTS.kueue_health})")
    return KUBECONFIG


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wait_nodes_ready(bins: pathlib.Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        nodes = json.loads(_kubectl(bins, "get", "nodes", "-o", "json"))["items"]
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        if set(NODES) <= ready:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"kwok nodes not Ready: {sorted(set(NODES) - ready)}; see {STATE / 'kwok.log'}"
            )
        time.sleep(0.3)


def _wait_default_serviceaccount(bins: pathlib.Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            _kubectl(bins, "get", "serviceaccount", "default", "-n", "default")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _stop(name: str) -> None:
    pid = _pid(name)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        log(f"stopped {name}")
    (STATE / f"{name}.pid").unlink(missing_ok=True)


def down(wipe: bool = False) -> None:
    import postgres

    postgres.down(wipe=wipe)
    for name in (*OPTIONAL_COMPONENTS, *reversed(COMPONENTS)):
        _stop(name)
    if wipe and STATE.exists():
        shutil.rmtree(STATE / "etcd", ignore_errors=True)
        shutil.rmtree(S3_DIR, ignore_errors=True)  # the credentials stay; seed_s3.py refills it
        log("wiped etcd and S3 data")


def status() -> dict[str, bool]:
    """Whether each component runs, the optional ones (Kueue) included."""
    return {name: _pid(name) is not None for name in (*COMPONENTS, *OPTIONAL_COMPONENTS)}


def running() -> bool:
    """True when every (non-optional) component runs and the apiserver answers /readyz."""
    state = status()
    if not all(state[name] for name in COMPONENTS) or not KUBECONFIG.exists():
        return False
    try:
        _wait_http(
            f"https://127.0.0.1:{PORTS.apiserver}/readyz", 3, "kube-apiserver", _ssl_context(STATE / "pki")
        )
    except RuntimeError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "wipe", "kueue-up"])
    parser.add_argument(
        "--node",
        choices=["kwok", "real"],
        default="kwok",
        help="'real' also starts a real kubelet node (tests/cluster/realnode.py) beside the kwok nodes",
    )
    parser.add_argument(
        "--kueue",
        action="store_true",
        help="with up: also start Kueue (built on first use, cached; the same as kueue-up afterwards)",
    )
    args = parser.parse_args(argv)
    import realnode  # the real node's lifecycle lives beside this file

    if args.command in ("up", "kueue-up"):
        path = up()
        if args.node == "real":
            realnode.up()
        if args.kueue or args.command == "kueue-up":
            kueue_up()
        print(f"KUBECONFIG={path}")
    elif args.command == "down":
        realnode.down()  # no-op unless a real node was started
        down()
    elif args.command == "wipe":
        realnode.down(wipe=True)
        down(wipe=True)
    else:
        for name, ok in status().items():
            if name in OPTIONAL_COMPONENTS and not ok:
                print(f"{name}: stopped (optional)")
                continue
            print(f"{name}: {'running' if ok else 'stopped'}")
        if realnode.NODE_DIR.exists():
            for name, ok in realnode.status().items():
                print(f"{name}: {'running' if ok else 'stopped'}")
        print(f"S3=http://127.0.0.1:{PORTS.s3} (bucket {S3_BUCKET}; credentials in {S3_INFO})")
        print(f"KUBECONFIG={KUBECONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
