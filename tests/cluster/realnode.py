"""One real kubelet node beside the kwok nodes: containerd + runc + CNI bridge + kube-proxy.

    python tests/cluster/localcluster.py up --node real    # control plane, kwok nodes, this node
    python tests/cluster/realnode.py up|down|status|wipe    # this node alone (control plane up)
    python tests/cluster/realnode.py images [pause|operator|workloads]   # build + import (make images)
    python tests/cluster/realnode.py images workloads-gpu   # the GPU variant (make images-gpu)

The node ``mlops-node-0`` runs pods for real, from images built locally
(``tests/cluster/images/build.py``: nothing is pulled, no registry is reachable):

- containerd (Debian's 1.6, CRI v1, cgroupfs) with its own config, root and state under
  ``~/.cache/mlops-operator/node/``, socket there too, sandbox image ``localhost/mlops-pause``;
- kubelet built from the pinned Kubernetes module (``build.sh node``), client and serving
  certificate ``system:node:mlops-node-0`` (group ``system:nodes``) signed by the cluster CA,
  webhook authentication/authorization, ``failCgroupV1: false`` (these machines run cgroup v1);
- a CNI bridge ``mlops0`` (bridge + host-local + portmap + loopback), pod CIDR 10.244.1.0/24,
  the node's IP is the bridge's 10.244.1.1 (nothing listens on the machine's real address);
- kube-proxy in iptables mode, so ClusterIP Services work from pods and from the host;
- the apiserver (which listens on loopback only) is forwarded to pods: ``socat`` on
  10.244.1.1:<apiserver port>, published as the endpoints of the ``default/kubernetes``
  Service, so in-cluster clients (the operator) use 10.96.0.1:443 as on any cluster;
- storage: StorageClass ``mlops-local`` and hostPath PersistentVolumes under the cache dir;
  ``ensure_data_claim(namespace)`` makes the ``mlops-data`` claim examples use
  (``pvc://mlops-data/...``); ``default/mlops-data`` is created with the node.

Scheduling: the node is labelled ``mlops.dev/node-pool=real`` and tainted
``mlops.dev/real-node=true:NoSchedule``, so the kwok tier's pods (which tolerate nothing) never
land on it and real pods opt in with ``REAL_NODE_SELECTOR`` + ``REAL_NODE_TOLERATION``.
No cluster DNS (CoreDNS would need an image we do not build): pods reach Services by ClusterIP
or the ``<NAME>_SERVICE_HOST`` environment variables.

What it changes on the host, as any kubelet node does: ``net.ipv4.ip_forward=1``,
``net.bridge.bridge-nf-call-iptables=1``; kubelet sets ``vm.overcommit_memory=1``,
``kernel.panic=10``, ``kernel.panic_on_oops=1``; runc keeps its state in
``/run/containerd/runc``. This machine's root lacks CAP_SYS_RESOURCE, so no process may lower
its ``oom_score_adj``: containerd runs with ``restrict_oom_score_adj`` (the pause container's
-998 would otherwise fail every sandbox with "can't get final child's PID from pipe: EOF").

``down`` stops kubelet, kube-proxy, the forwarder and containerd, and removes what they left:
pod sandboxes and their containers, mounts under the node directory, network namespaces, the
bridge and its veths, kube-proxy's and CNI's iptables rules. Needs root. Standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import localcluster  # noqa: E402
import realnode_config as config  # noqa: E402

# What other modules use (tests, localcluster), re-exported from the configuration.
NODE_NAME = config.NODE_NAME
NODE_DIR = config.NODE_DIR
CONTAINERD_SOCK = config.CONTAINERD_SOCK
REAL_NODE_SELECTOR = config.REAL_NODE_SELECTOR
REAL_NODE_TOLERATION = config.REAL_NODE_TOLERATION
DATA_CLAIM = config.DATA_CLAIM
COMPONENTS = ("containerd", "apiserver-forward", "kubelet", "kube-proxy")
volume_path = config.volume_path
data_claim_objects = config.data_claim_objects


def log(msg: str) -> None:
    print(f"realnode: {msg}", file=sys.stderr, flush=True)


def _sh(*argv: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, text=True, capture_output=capture)


def _pid(name: str) -> int | None:
    pidfile = NODE_DIR / f"{name}.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _start(name: str, argv: list[str], *, restart: bool = False) -> None:
    """Start ``name`` unless it runs with the same command line (and ``restart`` is False)."""
    argv_file = NODE_DIR / f"{name}.argv"
    recorded = argv_file.read_text() if argv_file.exists() else ""
    if _pid(name):
        if not restart and recorded == json.dumps(argv):
            return
        log(f"restarting {name}: its configuration changed")
        _stop(name)
    logfile = open(NODE_DIR / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    (NODE_DIR / f"{name}.pid").write_text(str(proc.pid))
    argv_file.write_text(json.dumps(argv))
    log(f"started {name} (pid {proc.pid})")


def _write(path: pathlib.Path, text: str) -> bool:
    """Write ``text`` to ``path``; True when the content changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _stop(name: str, timeout_s: float = 10.0) -> None:
    pid = _pid(name)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        log(f"stopped {name}")
    (NODE_DIR / f"{name}.pid").unlink(missing_ok=True)


def _wait(probe: object, what: str, timeout_s: float, logname: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.3)
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join((NODE_DIR / f"{logname}.log").read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(
        f"{what} not ready within {timeout_s:.0f}s; last lines of {NODE_DIR / logname}.log:\n{tail}"
    )


# --------------------------------------------------------------------------------------------
# Runtime, certificates, configuration files
# --------------------------------------------------------------------------------------------


def install_runtime() -> None:
    subprocess.run(["bash", str(HERE / "node" / "install-runtime.sh")], check=True)


def node_bins() -> pathlib.Path:
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "node"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()
    return pathlib.Path(out[-1])


def _write_certs(pki: pathlib.Path) -> None:
    sans = f"IP:{config.NODE_IP},DNS:{NODE_NAME},DNS:localhost,IP:127.0.0.1"
    localcluster._client_cert(pki, NODE_NAME, f"system:node:{NODE_NAME}", org="system:nodes", sans=sans)
    localcluster._client_cert(pki, "kube-proxy", "system:kube-proxy")
    localcluster.write_kubeconfig(NODE_DIR / "kubelet.kubeconfig", pki, NODE_NAME)
    localcluster.write_kubeconfig(NODE_DIR / "kube-proxy.kubeconfig", pki, "kube-proxy")


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def _sysctl(path: str, value: str) -> None:
    target = pathlib.Path("/proc/sys") / path
    if target.exists() and target.read_text().strip() != value:
        target.write_text(value)


def _setup_network() -> None:
    _sysctl("net/ipv4/ip_forward", "1")
    _sysctl("net/bridge/bridge-nf-call-iptables", "1")
    if _sh("ip", "link", "show", config.BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", config.BRIDGE, "type", "bridge")
    addrs = _sh("ip", "-o", "-4", "addr", "show", "dev", config.BRIDGE).stdout
    if f"{config.NODE_IP}/" not in addrs:
        _sh("ip", "addr", "add", f"{config.NODE_IP}/24", "dev", config.BRIDGE)
    _sh("ip", "link", "set", config.BRIDGE, "up")


# --------------------------------------------------------------------------------------------
# Cluster objects the node needs
# --------------------------------------------------------------------------------------------


def _apply(bins: pathlib.Path, objects: list[dict[str, object]]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": objects}
    localcluster._kubectl(
        bins,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=mlops-realnode",
        "-f",
        "-",
        input_=json.dumps(doc),
    )


def ensure_data_claim(
    namespace: str, claim: str = DATA_CLAIM, *, bins: pathlib.Path | None = None
) -> pathlib.Path:
    """Create the ``mlops-data`` claim (and its volume, writable by uid 1000) in ``namespace``."""
    path = volume_path(namespace, claim)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 1000, 1000)
    path.chmod(0o775)
    bins = bins or localcluster.bin_dir()
    objects = data_claim_objects(namespace, claim)
    _release(bins, str(objects[0]["metadata"]["name"]))  # type: ignore[index]
    _apply(bins, objects)
    return path


def _release(bins: pathlib.Path, pv: str) -> None:
    """A volume whose claim was deleted (the namespace went away) stays Released, bound to the
    old claim's uid: forget that uid so the claim made again binds to it (the data is kept)."""
    found = localcluster._kubectl(bins, "get", "pv", pv, "--ignore-not-found", "-o", "json")
    if found.strip() and (json.loads(found).get("status") or {}).get("phase") == "Released":
        patch = json.dumps({"spec": {"claimRef": {"uid": None, "resourceVersion": None}}})
        localcluster._kubectl(bins, "patch", "pv", pv, "--type=merge", "-p", patch)


# --------------------------------------------------------------------------------------------
# up / down / status
# --------------------------------------------------------------------------------------------


def _ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _sh("ctr", "--address", str(CONTAINERD_SOCK), "-n", "k8s.io", *args, check=check)


def _node_exists(bins: pathlib.Path) -> bool:
    try:
        localcluster._kubectl(bins, "get", "node", NODE_NAME, "-o", "name")
    except RuntimeError:
        return False
    return True


def _node_ready(bins: pathlib.Path) -> bool:
    node = json.loads(localcluster._kubectl(bins, "get", "node", NODE_NAME, "-o", "json"))
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
    )


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def import_images(names: list[str]) -> None:
    """Build (cached) and import images into the node's containerd: "pause", "operator",
    "workloads", "workloads-gpu" (``build.NAMES``)."""
    sys.path.insert(0, str(HERE / "images"))
    import build as image_build

    for image in image_build.build(names):
        image_build.import_image(image, str(CONTAINERD_SOCK))


def up(timeout_s: float = 180.0) -> None:
    """Start the node on the running control plane. Idempotent."""
    if os.geteuid() != 0:
        raise RuntimeError("the real node needs root (containerd, mounts, iptables)")
    started = time.monotonic()
    install_runtime()
    bins = node_bins()
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    for sub in ("cni/net.d", "cni/ipam", "kubelet", "volume-plugins", "volumes"):
        (NODE_DIR / sub).mkdir(parents=True, exist_ok=True)
    pki = localcluster.STATE / "pki"
    _write_certs(pki)
    # A changed configuration restarts its component (running pods survive: they belong to shims).
    containerd_changed = _write(NODE_DIR / "containerd.toml", config.containerd_config())
    _write(NODE_DIR / "cni" / "net.d" / "10-mlops.conflist", json.dumps(config.cni_config(), indent=1))
    kubelet_changed = _write(NODE_DIR / "kubelet.json", json.dumps(config.kubelet_config(pki), indent=1))
    kubelet_changed |= _write(
        NODE_DIR / "resolv.conf", "# no cluster DNS on the local real node: use Service IPs\n"
    )
    proxy_changed = _write(NODE_DIR / "kube-proxy.json", json.dumps(config.kube_proxy_config(), indent=1))
    _setup_network()

    _start(
        "containerd",
        ["containerd", "--config", str(NODE_DIR / "containerd.toml")],
        restart=containerd_changed,
    )
    _wait(lambda: _ctr("version").returncode == 0, "containerd", 30, "containerd")
    import_images(["pause"])

    port = localcluster.PORTS.apiserver
    _start(
        "apiserver-forward",
        ["socat", f"TCP-LISTEN:{port},bind={config.NODE_IP},fork,reuseaddr", f"TCP:127.0.0.1:{port}"],
    )
    _apply(bins, config.cluster_objects())
    # A kubelet registers its Node once: if the control plane lost it (wiped etcd), restart it.
    node_lost = bool(_pid("kubelet")) and not _node_exists(bins)
    _start(
        "kubelet",
        [
            str(bins / "kubelet"),
            f"--config={NODE_DIR / 'kubelet.json'}",
            f"--kubeconfig={NODE_DIR / 'kubelet.kubeconfig'}",
            f"--root-dir={NODE_DIR / 'kubelet'}",
            f"--cert-dir={NODE_DIR / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={config.NODE_IP}",
            f"--node-labels={config.LABEL_POOL}=real,{config.TAINT_KEY}=true",
            "--v=1",
        ],
        restart=kubelet_changed or node_lost,
    )
    _start(
        "kube-proxy",
        [str(bins / "kube-proxy"), f"--config={NODE_DIR / 'kube-proxy.json'}", "--v=1"],
        restart=proxy_changed,
    )
    _wait(lambda: _node_ready(bins), f"node {NODE_NAME}", timeout_s, "kubelet")
    _wait(
        lambda: _http_ok(f"http://127.0.0.1:{config.PROXY_HEALTHZ_PORT}/healthz"),
        "kube-proxy",
        60,
        "kube-proxy",
    )
    ensure_data_claim("default", bins=bins)
    log(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s")


def _sandbox_netns() -> set[str]:
    """Network namespace paths of the node's pod sandboxes (from containerd's container specs)."""
    paths: set[str] = set()
    listing = _ctr("containers", "ls", "-q", check=False)
    for cid in listing.stdout.split() if listing.returncode == 0 else []:
        info = _ctr("containers", "info", cid, check=False)
        if info.returncode != 0:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            spec = json.loads(info.stdout).get("Spec") or {}
            for ns in spec.get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network" and ns.get("path", "").startswith(
                    ("/var/run/netns/", "/run/netns/")
                ):
                    paths.add(ns["path"])
    return paths


def _unused_cni_netns() -> set[str]:
    """CNI network namespaces (``cni-*``, made by containerd's CRI) that no process is in any more:
    what a pod torn down halfway (kubelet stopped mid-deletion) leaves behind."""
    in_use: set[int] = set()
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            in_use.add(os.stat(proc / "ns" / "net").st_ino)
    unused = set()
    for path in pathlib.Path("/run/netns").glob("cni-*"):
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino not in in_use:
                unused.add(str(path))
    return unused


def _mounts_under(prefixes: list[str]) -> list[str]:
    points = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return points


def _iptables_cleanup() -> None:
    """Drop what kube-proxy's ``--cleanup`` leaves (KUBE-FIREWALL, KUBE-KUBELET-CANARY...) and the
    CNI portmap chains: every ``KUBE-*``/``CNI-*`` chain and the rules that jump to them."""
    for table in ("nat", "filter", "mangle"):
        save = _sh("iptables-save", "-t", table, check=False).stdout
        chains = [line[1:].split()[0] for line in save.splitlines() if line.startswith((":KUBE-", ":CNI-"))]
        if not chains:
            continue
        for line in save.splitlines():
            words = line.split()
            if line.startswith("-A ") and words[1] not in chains and any(f"-j {c}" in line for c in chains):
                _sh("iptables", "-t", table, "-D", *shlex.split(line)[1:], check=False)
        for chain in chains:
            _sh("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _sh("iptables", "-t", table, "-X", chain, check=False)


def down(wipe: bool = False) -> None:
    """Stop the node and remove its containers, mounts, netns, bridge and iptables rules."""
    if not NODE_DIR.exists():
        return
    for name in ("kube-proxy", "kubelet", "apiserver-forward"):
        _stop(name)
    netns: set[str] = set()
    if _pid("containerd"):
        netns = _sandbox_netns()
        tasks = _ctr("tasks", "ls", "-q", check=False).stdout.split()
        for tid in tasks:
            _ctr("tasks", "kill", "-s", "SIGKILL", tid, check=False)
        deadline = time.monotonic() + 10
        for tid in tasks:
            while _ctr("tasks", "delete", tid, check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        for cid in _ctr("containers", "ls", "-q", check=False).stdout.split():
            _ctr("containers", "delete", cid, check=False)
        _stop("containerd")
    else:
        (NODE_DIR / "containerd.pid").unlink(missing_ok=True)
    # Shims of containers that outlived containerd (their -address names our socket).
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if (
                cmdline
                and cmdline[0].endswith(b"containerd-shim-runc-v2")
                and str(CONTAINERD_SOCK).encode() in cmdline
            ):
                os.kill(int(proc.name), signal.SIGKILL)
    netns |= _unused_cni_netns()
    for point in sorted(_mounts_under([str(NODE_DIR), *netns]), key=len, reverse=True):
        _sh("umount", "-l", point, check=False)
    for path in netns:
        with contextlib.suppress(OSError):
            os.unlink(path)
    # Pod interfaces on the bridge, then the bridge itself.
    links = _sh("ip", "-o", "link", "show", "master", config.BRIDGE, check=False).stdout
    for line in links.splitlines():
        ifname = line.split(":")[1].strip().split("@")[0]
        _sh("ip", "link", "delete", ifname, check=False)
    _sh("ip", "link", "delete", config.BRIDGE, check=False)
    bins = next(iter(sorted((localcluster.CACHE / "bin").glob("*/kube-proxy"))), None)
    if bins is not None and (NODE_DIR / "kube-proxy.json").exists():
        _sh(str(bins), "--cleanup", f"--config={NODE_DIR / 'kube-proxy.json'}", check=False)
    _iptables_cleanup()
    import shutil

    shutil.rmtree(NODE_DIR / "cni" / "ipam", ignore_errors=True)
    if wipe:
        for sub in ("containerd", "kubelet", "volumes"):
            shutil.rmtree(NODE_DIR / sub, ignore_errors=True)
        log("wiped the node's containerd, kubelet and volume data")


def status() -> dict[str, bool]:
    return {name: _pid(name) is not None for name in COMPONENTS}


def running() -> bool:
    return all(status().values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "wipe", "images"])
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="with `images`: pause, operator, workloads, workloads-gpu (default: the first three)",
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        if not localcluster.running():
            localcluster.up()
        up()
    elif args.command == "down":
        down()
    elif args.command == "wipe":
        down(wipe=True)
    elif args.command == "images":
        sys.path.insert(0, str(HERE / "images"))
        import build as image_build

        unknown = [name for name in args.images if name not in ("all", *image_build.NAMES)]
        if unknown:
            parser.error(f"unknown image(s) {', '.join(unknown)}; choose from {', '.join(image_build.NAMES)}")
        names = image_build.resolve(args.images)
        if _pid("containerd"):
            import_images(names)
        else:
            image_build.build(names)
            log("containerd is not running: images built, not imported (make cluster-up NODE=real)")
    else:
        for name, ok in status().items():
            print(f"{name}: {'running' if ok else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
