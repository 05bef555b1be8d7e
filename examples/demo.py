"""``make demo``: the whole chain, for real, on a fresh machine.

1. the local control plane (Go-built, pinned) with a real kubelet node (containerd, runc);
2. the operator and workloads images, built without Docker and imported into the node;
3. the operator installed by its Helm chart, its workload pods placed on the real node;
4. ``examples/quickstart/`` applied: Dataset -> TrainingJob -> HyperparameterSweep, which
   promotes its best model to a ModelDeployment; the quickstart's own ModelDeployment too;
5. a summary of each step (data report, metrics, best trial, the TrainingJob's and the sweep's
   resources requested, used and suggested, served URL) and one real prediction sent to the
   served model through its Service.

Exit status 0 only when every step finished as it should.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import yaml

from mlops_operator.cli import chain

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import localcluster  # noqa: E402
import realnode  # noqa: E402

NAMESPACE = os.environ.get("DEMO_NAMESPACE", "mlops-demo")
RELEASE_NAMESPACE = "mlops-system"
STARTED = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {msg}", flush=True)


class Kube:
    def __init__(self, bins: pathlib.Path, kubeconfig: pathlib.Path) -> None:
        self.bins = bins
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input_: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(self.bins / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_,
            text=True,
            capture_output=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
        return json.loads(out) if out else None

    def helm(self, *args: str) -> str:
        proc = subprocess.run(
            [str(self.bins / "helm"), "--kubeconfig", str(self.kubeconfig), *args],
            text=True,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout


def wait_phase(kube: Kube, kind: str, name: str, done: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        obj = kube.get(kind, name) or {}
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase != last:
            detail = status.get("progress") or status.get("message") or ""
            say(f"{kind}/{name}: {phase or '-'} {detail}".rstrip())
            last = phase
        if phase in done:
            return obj
        if phase == "Failed":
            raise SystemExit(f"{kind}/{name} failed: {status.get('reason')}: {status.get('message')}")
        time.sleep(2)
    raise SystemExit(f"{kind}/{name} did not reach {sorted(done)} within {timeout:.0f}s (last phase {last})")


def rightsizing(requested: dict[str, Any] | None, used: Any, suggested: Any) -> str:
    """Requested, used and suggested, as ``mlops status`` shows them."""
    shown = chain.rightsizing(dict(requested or {}), dict(used or {}), dict(suggested or {}))
    return shown or "not measured (the run reported no resourcesUsed)"


def install_operator(kube: Kube, version: str) -> None:
    placement_selector = json.dumps(realnode.REAL_NODE_SELECTOR)
    placement_tolerations = json.dumps([realnode.REAL_NODE_TOLERATION])
    kube.helm(
        "upgrade",
        "--install",
        "mlops-operator",
        str(ROOT / "charts" / "mlops-operator"),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "300s",
        "--set",
        f"image.tag={version}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"workloads.image.tag={version}",
        "--set",
        "workloads.image.pullPolicy=Never",
        "--set-json",
        f"nodeSelector={placement_selector}",
        "--set-json",
        f"tolerations={placement_tolerations}",
        "--set-json",
        f"workloads.nodeSelector={placement_selector}",
        "--set-json",
        f"workloads.tolerations={placement_tolerations}",
        # Only the demo's namespace: an operator left running after the demo must not reconcile
        # what other operators (the tests' own, a developer's) run elsewhere on this cluster.
        "--set",
        "watch.scope=namespaces",
        "--set-json",
        f"watch.namespaces={json.dumps([NAMESPACE])}",
    )


def predict(kube: Kube, deployment: dict[str, Any]) -> dict[str, Any]:
    """One prediction through the deployment's Service (ClusterIP, reachable from this host)."""
    name = deployment["metadata"]["name"]
    svc = json.loads(kube.run("get", "service", name, "-n", NAMESPACE, "-o", "json"))
    ip = svc["spec"]["clusterIP"]
    port = svc["spec"]["ports"][0]["port"]
    row = {
        "sepal length (cm)": 5.9,
        "sepal width (cm)": 3.0,
        "petal length (cm)": 5.1,
        "petal width (cm)": 1.8,
    }
    body = json.dumps({"instances": [row]}).encode()
    request = urllib.request.Request(
        f"http://{ip}:{port}/v1/models/{name}:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    # Right after the node (re)started, or for a new Service, kube-proxy's rules can trail the
    # pod's readiness for a moment (the connection is refused): ask again for up to a minute.
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
            return {"input": row, "output": answer}
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("make demo runs a real kubelet node (containerd, mounts, iptables): run it as root")
    say("starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
    kubeconfig = localcluster.up()
    bins = localcluster.bin_dir()
    kube = Kube(bins, kubeconfig)
    say("starting the real node (containerd, kubelet, kube-proxy) and building the images")
    realnode.up()
    realnode.import_images(["pause", "operator", "workloads"])
    sys.path.insert(0, str(ROOT / "tests" / "cluster" / "images"))
    import build as image_build

    version = image_build.project_version()
    say(f"installing the operator {version} with its Helm chart into {RELEASE_NAMESPACE}")
    kube.run("create", "namespace", NAMESPACE, check=False)
    install_operator(kube, version)
    realnode.ensure_data_claim(NAMESPACE)

    docs = {}
    for path in sorted((ROOT / "examples" / "quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    order = [
        ("Dataset", {"Ready"}, 600),
        ("TrainingJob", {"Succeeded"}, 900),
        ("HyperparameterSweep", {"Succeeded"}, 1800),
        ("ModelDeployment", {"Ready"}, 600),
    ]
    for kind, _, _ in order:
        kube.run("apply", "--server-side", "-n", NAMESPACE, "-f", "-", input_=json.dumps(docs[kind]))
        say(f"applied {kind}/{docs[kind]['metadata']['name']}")
    results = {}
    for kind, done, timeout in order:
        results[kind] = wait_phase(kube, kind.lower(), docs[kind]["metadata"]["name"], done, timeout)

    ds = results["Dataset"]["status"]
    tj = results["TrainingJob"]["status"]
    sweep = results["HyperparameterSweep"]["status"]
    md = results["ModelDeployment"]
    print("\n=== Dataset", results["Dataset"]["metadata"]["name"])
    print(f"  rows: {ds.get('rows')}\n  digest: {ds.get('digest')}\n  stored at: {ds.get('storageUri')}")
    for warning in ds.get("warnings") or []:
        print(f"  warning: {warning}")
    print("=== TrainingJob", results["TrainingJob"]["metadata"]["name"])
    print(f"  {tj.get('objectiveMetric')} = {tj.get('objectiveValue')}  in {tj.get('durationSeconds')}s")
    print(f"  metrics: {json.dumps(tj.get('metrics'))}\n  model: {tj.get('modelUri')}")
    tj_requested = results["TrainingJob"]["spec"].get("resources")
    source = (tj.get("resourcesUsed") or {}).get("source", "-")
    tj_used, tj_suggested = tj.get("resourcesUsed"), tj.get("suggestedResources")
    print(f"  resources ({source}): " + rightsizing(tj_requested, tj_used, tj_suggested))
    print("=== HyperparameterSweep", results["HyperparameterSweep"]["metadata"]["name"])
    print(f"  trials: {sweep.get('progress')}  best: {json.dumps(sweep.get('bestTrial'))}")
    sized = sweep.get("rightsizing") or {}
    template = results["HyperparameterSweep"]["spec"].get("trialTemplate") or {}
    print(
        f"  resources (max of {sized.get('measuredTrials', 0)} trials): "
        + rightsizing(template.get("resources"), sized.get("used"), sized.get("suggested"))
    )
    if sized.get("autoTrials"):
        given = json.dumps(sized.get("autoResources"))
        print(f"  trialTemplate.resources.auto: {sized['autoTrials']} later trials got {given}")
    print("=== ModelDeployment", md["metadata"]["name"])
    print(
        f"  url: {md['status'].get('url')}  ready: {md['status'].get('ready')}  "
        f"model: {md['status'].get('servedModelUri')}"
    )
    promoted_name = (docs["HyperparameterSweep"]["spec"].get("promote") or {}).get("modelDeployment")
    if promoted_name:
        promoted = wait_phase(kube, "modeldeployment", promoted_name, {"Ready"}, 300)
        print(f"=== ModelDeployment {promoted_name} (promoted by the sweep)")
        print(f"  url: {promoted['status'].get('url')}  model: {promoted['status'].get('servedModelUri')}")
    answer = predict(kube, md)
    print("=== One prediction through the Service")
    print(f"  {json.dumps(answer['input'])}\n  -> {json.dumps(answer['output'])}")
    say("demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
