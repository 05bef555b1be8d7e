"""The install paths against the real control plane: Helm chart, install.yaml, kustomize, RBAC, PSS.

What is checked, and how:
- ``helm lint`` (strict) and ``helm template`` over the value combinations people use; Helm
  itself refuses bad values through values.schema.json;
- ``helm install`` then ``helm upgrade`` (to HA with peering) into a namespace that enforces the
  ``restricted`` Pod Security Standard: the objects exist, and the ReplicaSet's pods are admitted
  (a refused pod never exists). The pods cannot become Ready on kwok nodes (there is no image),
  so readiness is not asserted;
- RBAC by impersonating the operator's ServiceAccount (``kubectl auth can-i --as``) for every
  verb the controllers use and for what it must never have; in namespaced mode, Roles only in
  the watched namespaces;
- ``install.yaml``, the kustomize base and overlay, the monitoring objects and the GitOps example
  workloads apply with a server-side dry run, and the rendered files are up to date.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from conftest import Cluster, wait_until
from mlops_operator.handlers import children
from mlops_operator.k8s import client

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops-operator"
KUBE_VERSION = "1.34.0"
MONITORING = ("servicemonitors", "podmonitors", "prometheusrules")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(
        os.environ,
        KUBECONFIG=str(cluster.kubeconfig),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(cluster.bin_dir / "helm"), *args],
            check=False,
            env=env,
            text=True,
            capture_output=True,
            timeout=180,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    return run


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def template(
    helm: Any, *args: str, release: str = "mlops", namespace: str = "mlops-system"
) -> list[dict[str, Any]]:
    return docs(
        helm(
            "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *args
        ).stdout
    )


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


@contextlib.contextmanager
def labelled_namespace(cluster: Cluster, prefix: str, restricted: bool = True) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def can(cluster: Cluster, sa: str, verb: str, resource: str, *flags: str) -> bool:
    """``kubectl auth can-i`` as ``sa``; ``kind/sub`` means a subresource (kubectl reads it as a name)."""
    resource, _, subresource = resource.partition("/")
    if subresource:
        flags = (*flags, f"--subresource={subresource}")
    proc = cluster.kubectl("auth", "can-i", verb, resource, f"--as={sa}", *flags, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def dry_run_apply(cluster: Cluster, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=pytest-dry-run",
        "-f",
        "-",
        *extra,
        input=text,
        timeout=120,
    )


def pod_from_deployment(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template_ = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pss-{uuid.uuid4().hex[:6]}",
            "namespace": namespace,
            "labels": template_["metadata"].get("labels", {}),
        },
        "spec": {**template_["spec"], "serviceAccountName": "default"},
    }


# ---------------------------------------------------------------------------------------------
# lint and template
# ---------------------------------------------------------------------------------------------

VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "ha": ["--set", "replicas=3"],
    "namespaces": [
        "--set",
        "watch.scope=namespaces",
        "--set",
        "watch.namespaces={team-a,team-b}",
        "--set",
        "replicas=2",
    ],
    "release": ["--set", "watch.scope=release"],
    "monitoring": ["--api-versions", "monitoring.coreos.com/v1", "--set", "grafanaDashboard.enabled=true"],
    "scheduling": [
        "--set",
        "priorityClassName=platform",
        "--set",
        "nodeSelector.pool=system",
        "--set",
        "tolerations[0].key=dedicated",
        "--set",
        "tolerations[0].operator=Exists",
        "--set",
        "image.digest=sha256:" + "a" * 64,
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint(helm: Any, variant: str) -> None:
    args = [a for a in VARIANTS[variant] if a not in {"--api-versions", "monitoring.coreos.com/v1"}]
    proc = helm("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in proc.stdout


def test_template_variants(helm: Any) -> None:
    default = template(helm)
    assert kinds(default) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = next(o for o in default if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "mlops-operator:0.1.0"
    assert container["args"][:3] == [
        "--all-namespaces",
        "--metrics-port=8000",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    assert {e["name"]: e.get("value") for e in container["env"]}[
        "MLOPS_WORKLOAD_IMAGE"
    ] == "mlops-workloads:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    ha = template(helm, *VARIANTS["ha"])
    assert {"PodDisruptionBudget", "ClusterKopfPeering", "CustomResourceDefinition"} <= set(kinds(ha))
    ha_deployment = next(o for o in ha if o["kind"] == "Deployment")
    assert (
        "--peering=mlops-mlops-operator" in ha_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert ha_deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "podAntiAffinity" in ha_deployment["spec"]["template"]["spec"]["affinity"]
    peering = next(o for o in ha if o["kind"] == "ClusterKopfPeering")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"

    namespaced = template(helm, *VARIANTS["namespaces"])
    roles = [o for o in namespaced if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(o["metadata"]["namespace"] for o in namespaced if o["kind"] == "KopfPeering") == [
        "team-a",
        "team-b",
    ]
    cluster_role = next(
        o
        for o in namespaced
        if o["kind"] == "ClusterRole"
        and "-edit" not in o["metadata"]["name"]
        and "-view" not in o["metadata"]["name"]
    )
    assert {g for r in cluster_role["rules"] for g in r["apiGroups"]} == {"apiextensions.k8s.io", ""}
    args = next(o for o in namespaced if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]

    release = template(helm, *VARIANTS["release"], namespace="ml")
    assert [r["metadata"]["namespace"] for r in release if r["kind"] == "Role"] == ["ml"]

    monitoring = template(helm, *VARIANTS["monitoring"])
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} <= set(kinds(monitoring))
    dashboard = next(o for o in monitoring if o["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["mlops-operator.json"])["uid"] == "mlops-operator"
    # Without the Prometheus Operator's API nothing monitoring.coreos.com is rendered, unless forced.
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds(default))
    forced = template(helm, "--set", "serviceMonitor.force=true", "--set", "prometheusRule.force=true")
    assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds(forced))

    scheduled = next(o for o in template(helm, *VARIANTS["scheduling"]) if o["kind"] == "Deployment")
    spec = scheduled["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "platform"
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["containers"][0]["image"] == "mlops-operator@sha256:" + "a" * 64


def test_rbac_rules_are_least_privilege(helm: Any) -> None:
    for variant in VARIANTS.values():
        args = [a for a in variant if a not in {"--api-versions", "monitoring.coreos.com/v1"}]
        for obj in template(helm, *args):
            if obj["kind"] not in {"ClusterRole", "Role"} or obj["metadata"]["name"].endswith(
                ("-edit", "-view")
            ):
                continue
            for rule in obj["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], (obj["metadata"]["name"], rule)
                assert not {
                    "secrets",
                    "nodes",
                    "clusterroles",
                    "clusterrolebindings",
                    "roles",
                    "rolebindings",
                    "serviceaccounts",
                    "pods/exec",
                } & set(rule["resources"]), rule
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
                if (
                    rule["apiGroups"] in (["apiextensions.k8s.io"], [""])
                    and "namespaces" in rule["resources"]
                ):
                    assert set(rule["verbs"]) == {"list", "watch"}


def _deleted_children() -> set[tuple[str, str]]:
    """(API group, plural) of every kind a reconciler may delete: each ``ChildRef`` it builds."""
    plurals = {
        "PodDisruptionBudget": "poddisruptionbudgets",
        "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    }
    found: set[tuple[str, str]] = set()
    source = "\n".join(
        p.read_text() for p in (ROOT / "operator" / "mlops_operator" / "reconcile").glob("*.py")
    )
    for api_version, kind in re.findall(
        r'ChildRef\(\s*("[^"]+"|common\.API_VERSION),\s*"([A-Za-z]+)"', source
    ):
        version = "mlops.dev/v1alpha1" if api_version == "common.API_VERSION" else api_version.strip('"')
        group = version.rsplit("/", 1)[0] if "/" in version else ""
        found.add((group, plurals.get(kind, kind.lower() + "s")))
    # The Dataset reconciler deletes the Jobs and ConfigMaps it owns by a loop over kinds;
    # retraining deletes the challengers (a TrainingJob or a sweep, by the kind in its history) of
    # runs that fall off status.retrain.history.
    found |= {
        ("batch", "jobs"),
        ("", "configmaps"),
        ("mlops.dev", "trainingjobs"),
        ("mlops.dev", "hyperparametersweeps"),
    }
    # Plan.patch takes a ChildRef too: retraining merge-patches a Dataset's mlops.dev/refresh
    # annotation and never deletes one (FORBIDDEN below checks the chart does not grant it).
    found -= {("mlops.dev", "datasets")}
    return found


def test_rbac_grants_delete_on_every_kind_a_reconciler_deletes(helm: Any) -> None:
    """A ChildRef the operator deletes without the verb is a 403 in every Helm install (the
    canary's Deployment and a done sweep's trials were): tests that run the operator with the
    admin kubeconfig never see it."""
    wanted = _deleted_children()
    assert {("apps", "deployments"), ("mlops.dev", "trainingjobs"), ("batch", "jobs")} <= wanted, wanted
    for variant in (VARIANTS["scheduling"], []):
        granted = {
            (group, resource)
            for obj in template(helm, *variant)
            if obj["kind"] in {"ClusterRole", "Role"}
            and not obj["metadata"]["name"].endswith(("-edit", "-view"))
            for rule in obj["rules"]
            if "delete" in rule["verbs"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }
        assert wanted <= granted, sorted(wanted - granted)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicas=-1"], "/replicas"),
        (["--set", "watch.scope=everywhere"], "/watch/scope"),
        (["--set", "watch.scope=namespaces"], "/watch"),
        (["--set", "replicas=2", "--set", "peering.enabled=false"], "/peering/enabled"),
        (
            ["--set", "securityContext.allowPrivilegeEscalation=true"],
            "/securityContext/allowPrivilegeEscalation",
        ),
        (["--set", "imageTag=1.0"], "imageTag"),
    ],
)
def test_helm_refuses_bad_values(helm: Any, args: list[str], message: str) -> None:
    proc = helm("template", "x", str(CHART), "--kube-version", KUBE_VERSION, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# install, upgrade, RBAC, Pod Security
# ---------------------------------------------------------------------------------------------

NEEDED = [
    ("watch", "datasets.mlops.dev"),
    ("list", "trainingjobs.mlops.dev"),
    ("patch", "hyperparametersweeps.mlops.dev"),
    ("get", "modeldeployments.mlops.dev"),
    ("create", "trainingjobs.mlops.dev"),
    ("create", "modeldeployments.mlops.dev"),
    ("create", "hyperparametersweeps.mlops.dev"),  # a retraining run's challenger
    ("delete", "hyperparametersweeps.mlops.dev"),  # ... removed when it falls off the history
    ("patch", "datasets.mlops.dev"),  # its mlops.dev/refresh annotation
    ("patch", "models.mlops.dev"),  # the alias a better challenger takes (server-side apply)
    ("patch", "datasets.mlops.dev/status"),
    ("patch", "modeldeployments.mlops.dev/status"),
    ("update", "trainingjobs.mlops.dev/finalizers"),
    ("create", "jobs.batch"),
    ("patch", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("watch", "pods"),
    ("create", "configmaps"),
    ("delete", "configmaps"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("create", "services"),
    ("patch", "poddisruptionbudgets.policy"),
    ("patch", "horizontalpodautoscalers.autoscaling"),
    ("create", "events"),
    ("list", "workloads.kueue.x-k8s.io"),  # why a Kueue-queued run waits
    # Every kind the operator keeps a watch-fed cache of is listed and watched.
    *[
        (
            verb,
            client.plural(c.kind) + (f".{c.api_version.rsplit('/', 1)[0]}" if "/" in c.api_version else ""),
        )
        for c in children.CACHED
        for verb in ("list", "watch")
    ],
]
CLUSTER_NEEDED = [
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "namespaces"),
]
FORBIDDEN = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("update", "datasets.mlops.dev"),  # the operator never writes users' spec
    ("delete", "datasets.mlops.dev"),
    ("create", "serviceaccounts/token"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("*", "*"),
]
CLUSTER_FORBIDDEN = [
    ("patch", "nodes"),
    ("delete", "nodes"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("delete", "namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("*", "*"),
]


def _kopf_crds_exist(cluster: Cluster) -> bool:
    return cluster.get("crd", "clusterkopfpeerings.kopf.dev") is not None


def test_install_upgrade_rbac_and_pod_security(cluster: Cluster, helm: Any) -> None:
    release = f"mo-{uuid.uuid4().hex[:6]}"
    with (
        labelled_namespace(cluster, "chart") as ns,
        labelled_namespace(cluster, "users", restricted=False) as users,
    ):
        helm("install", release, str(CHART), "--namespace", ns)
        try:
            full = f"{release}-mlops-operator"
            sa = f"system:serviceaccount:{ns}:{full}"
            deployment = cluster.get("deployment", full, ns)
            assert deployment is not None
            assert cluster.get("serviceaccount", full, ns) is not None
            assert cluster.get("service", f"{full}-metrics", ns) is not None
            assert cluster.get("clusterrole", f"{full}-{ns}") is not None
            assert cluster.get("clusterrolebinding", f"{full}-{ns}") is not None
            # The restricted namespace admitted the operator's pod (a refused one is never created).
            pods = wait_until(
                lambda: cluster.list("pods", ns, selector=f"app.kubernetes.io/instance={release}"),
                timeout=60,
                what="the operator pod to be created in the restricted namespace",
            )
            assert pods[0]["spec"]["securityContext"]["runAsNonRoot"] is True
            events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
            assert "violates PodSecurity" not in events

            for verb, resource in NEEDED:
                assert can(cluster, sa, verb, resource, "-n", users), f"cannot {verb} {resource}"
                assert can(cluster, sa, verb, resource, "-A"), f"cannot {verb} {resource} cluster-wide"
            for verb, resource in CLUSTER_NEEDED:
                assert can(cluster, sa, verb, resource), f"cannot {verb} {resource}"
            for verb, resource in FORBIDDEN:
                assert not can(cluster, sa, verb, resource, "-n", users), f"may {verb} {resource}"
            for verb, resource in CLUSTER_FORBIDDEN:
                assert not can(cluster, sa, verb, resource), f"may {verb} {resource}"
            assert not can(cluster, sa, "patch", "clusterkopfpeerings.kopf.dev")  # standalone: no peering

            # Upgrade to HA: peering (CRDs unless present; the peering object is a hook), PDB, rollouts.
            install_crds = "false" if _kopf_crds_exist(cluster) else "true"
            helm(
                "upgrade",
                release,
                str(CHART),
                "--namespace",
                ns,
                "--set",
                "replicas=2",
                "--set",
                f"peering.installCRDs={install_crds}",
                "--set",
                "podLabels.tier=control",
            )
            upgraded = cluster.get("deployment", full, ns)
            assert upgraded is not None and upgraded["spec"]["replicas"] == 2
            assert upgraded["spec"]["strategy"]["type"] == "RollingUpdate"
            assert f"--peering={full}" in upgraded["spec"]["template"]["spec"]["containers"][0]["args"]
            assert upgraded["spec"]["template"]["metadata"]["labels"]["tier"] == "control"
            assert cluster.get("poddisruptionbudget", full, ns) is not None
            assert cluster.get("clusterkopfpeering", full) is not None
            assert can(cluster, sa, "patch", "clusterkopfpeerings.kopf.dev")
            history = helm("history", release, "--namespace", ns, "-o", "json").stdout
            assert [h["status"] for h in json.loads(history)] == ["superseded", "deployed"]
            wait_until(
                lambda: (
                    len(
                        cluster.list(
                            "pods", ns, selector=f"app.kubernetes.io/instance={release},tier=control"
                        )
                    )
                    >= 2
                ),
                timeout=60,
                what="two upgraded operator pods admitted in the restricted namespace",
            )
        finally:
            helm("uninstall", release, "--namespace", ns, check=False)
        assert cluster.get("clusterrole", f"{full}-{ns}") is None
        assert cluster.get("clusterrolebinding", f"{full}-{ns}") is None
        cluster.kubectl("delete", "clusterkopfpeering", full, "--ignore-not-found", check=False)


def test_namespaced_install_grants_only_the_watched_namespaces(cluster: Cluster, helm: Any) -> None:
    release = f"mn-{uuid.uuid4().hex[:6]}"
    with (
        labelled_namespace(cluster, "chart") as ns,
        labelled_namespace(cluster, "team", restricted=False) as team_a,
        labelled_namespace(cluster, "team", restricted=False) as team_b,
        labelled_namespace(cluster, "other", restricted=False) as other,
    ):
        helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            ns,
            "--set",
            "watch.scope=namespaces",
            "--set",
            f"watch.namespaces={{{team_a},{team_b}}}",
        )
        try:
            sa = f"system:serviceaccount:{ns}:{release}-mlops-operator"
            for watched in (team_a, team_b):
                assert cluster.get("role", f"{release}-mlops-operator", watched) is not None
                for verb, resource in NEEDED:
                    assert can(cluster, sa, verb, resource, "-n", watched), (
                        f"cannot {verb} {resource} in {watched}"
                    )
            for verb, resource in NEEDED:
                assert not can(cluster, sa, verb, resource, "-n", other), f"may {verb} {resource} in {other}"
                assert not can(cluster, sa, verb, resource, "-A"), f"may {verb} {resource} cluster-wide"
            for verb, resource in CLUSTER_NEEDED:
                assert can(cluster, sa, verb, resource)
            for verb, resource in FORBIDDEN:
                assert not can(cluster, sa, verb, resource, "-n", team_a), f"may {verb} {resource}"
            deployment = cluster.get("deployment", f"{release}-mlops-operator", ns)
            assert deployment is not None
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[:2] == [f"--namespace={team_a}", f"--namespace={team_b}"]
        finally:
            helm("uninstall", release, "--namespace", ns, check=False)


def test_rendered_deployment_is_admitted_by_restricted_pod_security(cluster: Cluster, helm: Any) -> None:
    """Every pod the chart can create (standalone, HA, scheduled) passes ``restricted`` on its own."""
    with labelled_namespace(cluster, "pss") as ns:
        for name, variant in VARIANTS.items():
            # (without priorityClassName: that class does not exist here, and the check is on security)
            objects = template(helm, *_without_priority(variant), namespace=ns)
            deployment = next(o for o in objects if o["kind"] == "Deployment")
            proc = dry_run_apply(cluster, json.dumps(deployment))
            assert "PodSecurity" not in proc.stderr, (name, proc.stderr)
            pod = pod_from_deployment(deployment, ns)
            created = cluster.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
            )
            assert created.returncode == 0, (name, created.stderr)
        # The check has teeth: a root pod is refused in the same namespace.
        bad = pod_from_deployment(deployment, ns)
        bad["spec"]["securityContext"] = {"runAsNonRoot": False}
        bad["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
        refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


def _without_priority(variant: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(variant):
        if skip:
            skip = False
            continue
        if arg == "--api-versions":
            skip = True
            continue
        if arg == "--set" and i + 1 < len(variant) and variant[i + 1].startswith("priorityClassName"):
            skip = True
            continue
        out.append(arg)
    return out


# ---------------------------------------------------------------------------------------------
# monitoring objects: rendered when the Prometheus Operator's API exists
# ---------------------------------------------------------------------------------------------


def _monitoring_crd(plural: str) -> dict[str, Any]:
    kind = {
        "servicemonitors": "ServiceMonitor",
        "podmonitors": "PodMonitor",
        "prometheusrules": "PrometheusRule",
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com", "labels": {"mlops.dev/test": "stand-in"}},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind[plural],
                "plural": plural,
                "singular": kind[plural].lower(),
                "listKind": kind[plural] + "List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring_api(cluster: Cluster) -> Iterator[None]:
    """The Prometheus Operator's three kinds (stand-in schemas) when the cluster lacks them."""
    made = []
    for plural in MONITORING:
        if cluster.get("crd", f"{plural}.monitoring.coreos.com") is None:
            cluster.kubectl("create", "-f", "-", input=json.dumps(_monitoring_crd(plural)))
            made.append(plural)
    for plural in MONITORING:
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.monitoring.coreos.com"
        )
    yield
    for plural in made:
        cluster.kubectl("delete", "crd", f"{plural}.monitoring.coreos.com", "--wait=false", check=False)


def test_monitoring_objects_follow_the_cluster_api(cluster: Cluster, helm: Any, monitoring_api: None) -> None:
    release = f"mm-{uuid.uuid4().hex[:6]}"
    with labelled_namespace(cluster, "mon") as ns:
        helm("install", release, str(CHART), "--namespace", ns, "--set", "grafanaDashboard.enabled=true")
        try:
            full = f"{release}-mlops-operator"
            service_monitor = cluster.get("servicemonitor", full, ns)
            assert service_monitor is not None
            assert service_monitor["spec"]["jobLabel"] == "app.kubernetes.io/part-of"
            assert cluster.get("podmonitor", f"{full}-serving", ns) is not None
            rule = cluster.get("prometheusrule", full, ns)
            assert rule is not None
            alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
            assert {
                "MlopsTrainingJobsFailing",
                "MlopsSweepStuck",
                "MlopsServingLatencyHigh",
                "MlopsModelDrift",
            } <= alerts
            dashboard = cluster.get("configmap", f"{full}-dashboard", ns)
            assert dashboard is not None and dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        finally:
            helm("uninstall", release, "--namespace", ns, check=False)


# ---------------------------------------------------------------------------------------------
# plain manifests and kustomize
# ---------------------------------------------------------------------------------------------


def test_rendered_manifests_are_up_to_date(cluster: Cluster) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "install" / "render.py"),
            "--check",
            "--helm",
            str(cluster.bin_dir / "helm"),
        ],
        check=False,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def mlops_system(cluster: Cluster) -> Iterator[str]:
    """install.yaml's namespace, created for the dry runs (which cannot create it themselves)."""
    wait_until(
        lambda: (
            (cluster.get("namespace", "mlops-system") or {}).get("status", {}).get("phase") != "Terminating"
        ),
        timeout=120,
        what="an earlier mlops-system namespace to finish terminating",
    )
    created = cluster.get("namespace", "mlops-system") is None
    if created:
        cluster.kubectl("create", "namespace", "mlops-system")
        cluster.kubectl("label", "namespace", "mlops-system", "pod-security.kubernetes.io/enforce=restricted")
    yield "mlops-system"
    if created:
        cluster.kubectl("delete", "namespace", "mlops-system", "--timeout=120s", check=False, timeout=150)


def split_crds(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(CRDs, the rest). The CRDs are the chart's crds/ files, which the session fixture applies for
    real (from crds/, kept identical by `make verify`); here they are compared, not re-applied."""
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    return crds, [o for o in objects if o["kind"] != "CustomResourceDefinition"]


def test_install_yaml_applies_server_side(cluster: Cluster, mlops_system: str) -> None:
    objects = docs((ROOT / "examples" / "install" / "install.yaml").read_text(encoding="utf-8"))
    crds, rest = split_crds(objects)
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "datasets.mlops.dev",
        "hyperparametersweeps.mlops.dev",
        "modeldeployments.mlops.dev",
        "models.mlops.dev",
        "trainingjobs.mlops.dev",
    ]
    # (their content: test_rendered_manifests_are_up_to_date)
    assert not [o for o in objects if "helm.sh/chart" in (o["metadata"].get("labels") or {})]
    proc = dry_run_apply(cluster, yaml.safe_dump_all(rest))
    assert "PodSecurity" not in proc.stderr
    assert proc.stdout.count("serverside-applied (server dry run)") == len(rest)
    assert {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    } <= set(kinds(rest))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = pod_from_deployment(deployment, mlops_system)
    cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))


def test_kustomize_base_and_overlay(cluster: Cluster, mlops_system: str) -> None:
    base = cluster.kubectl("kustomize", str(ROOT / "examples" / "install" / "kustomize" / "base")).stdout
    base_objects = docs(base)
    install = docs((ROOT / "examples" / "install" / "install.yaml").read_text(encoding="utf-8"))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in base_objects) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in install
    )
    _, rest = split_crds(base_objects)
    proc = dry_run_apply(cluster, yaml.safe_dump_all(rest))
    assert proc.stdout.count("(server dry run)") == len(rest)
    overlay = docs(
        cluster.kubectl(
            "kustomize", str(ROOT / "examples" / "install" / "kustomize" / "overlays" / "production")
        ).stdout
    )
    deployment = next(o for o in overlay if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/mlops/mlops-operator:0.1.0"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    _, rest = split_crds(overlay)
    dry_run_apply(cluster, yaml.safe_dump_all(rest))


def test_monitoring_yaml_applies(cluster: Cluster, mlops_system: str, monitoring_api: None) -> None:
    text = (ROOT / "examples" / "install" / "monitoring.yaml").read_text(encoding="utf-8")
    assert kinds(docs(text)) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    proc = dry_run_apply(cluster, text)
    assert proc.stdout.count("(server dry run)") == 3


def test_gitops_example_workloads_are_valid_resources(cluster: Cluster) -> None:
    rendered = docs(
        cluster.kubectl("kustomize", str(ROOT / "examples" / "gitops" / "workloads" / "team-a")).stdout
    )
    assert {"Dataset", "TrainingJob", "HyperparameterSweep", "ModelDeployment"} <= set(kinds(rendered))
    with labelled_namespace(cluster, "gitops") as ns:
        objects = [
            dict(o, metadata=dict(o["metadata"], namespace=ns)) for o in rendered if o["kind"] != "Namespace"
        ]
        proc = dry_run_apply(cluster, yaml.safe_dump_all(objects))
        assert proc.stdout.count("(server dry run)") == len(objects)
    for app in (ROOT / "examples" / "gitops").rglob("*.yaml"):
        for doc in docs(app.read_text(encoding="utf-8")):
            assert doc.get("apiVersion") and doc.get("kind"), app
