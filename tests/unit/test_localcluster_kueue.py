"""The local cluster's Kueue wiring without Kueue: its Configuration, ports, and the build's key.

tests/integration/test_kueue_smoke.py runs the real Kueue; these pin what must hold whatever it
does: nothing that could block the rest of the suite (no leader election, no webhook registered
anywhere, Jobs only, only in opted-in namespaces), and a build that never rebuilds Kubernetes.
"""

from __future__ import annotations

import pathlib
import re

import localcluster

CLUSTER_DIR = pathlib.Path(localcluster.__file__).resolve().parent


def test_kueue_config_manages_only_queued_jobs_in_opted_in_namespaces() -> None:
    cfg = localcluster.kueue_config()
    assert cfg["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert cfg["leaderElection"] == {"leaderElect": False}
    assert cfg["integrations"] == {"frameworks": ["batch/job"]}
    assert cfg["manageJobsWithoutQueueName"] is False
    assert cfg["managedJobsNamespaceSelector"] == {"matchLabels": {localcluster.KUEUE_MANAGED_LABEL: "true"}}
    assert cfg["internalCertManagement"] == {"enable": False}


def test_kueue_listens_on_loopback_ports_of_its_own() -> None:
    cfg = localcluster.kueue_config()
    health, metrics, webhook = cfg["health"], cfg["metrics"], cfg["webhook"]
    assert isinstance(health, dict) and isinstance(metrics, dict) and isinstance(webhook, dict)
    assert health["healthProbeBindAddress"] == f"127.0.0.1:{localcluster.PORTS.kueue_health}"
    assert metrics["bindAddress"] == f"127.0.0.1:{localcluster.PORTS.kueue_metrics}"
    assert (webhook["host"], webhook["port"]) == ("127.0.0.1", localcluster.PORTS.kueue_webhook)
    ports = [getattr(localcluster.PORTS, f) for f in localcluster.Ports.__dataclass_fields__]
    assert len(ports) == len(set(ports))


def test_kueue_is_optional_so_the_default_cluster_runs_without_it() -> None:
    assert "kueue" in localcluster.OPTIONAL_COMPONENTS
    assert "kueue" not in localcluster.COMPONENTS
    assert "kueue" in localcluster.status()


def test_kueue_registers_no_webhook_configuration() -> None:
    """A webhook configuration pointing at a stopped Kueue would fail every Job and pod create."""
    source = (CLUSTER_DIR / "localcluster.py").read_text()
    assert "WebhookConfiguration" not in source


def test_the_control_plane_build_key_leaves_kueue_out() -> None:
    build = (CLUSTER_DIR / "build.sh").read_text()
    mods = re.search(r"^mods=\(([^)]*)\)", build, re.MULTILINE)
    assert mods is not None
    assert "kueue" not in mods.group(1).split()
    assert '"$here"/*/go.mod' not in build  # a glob would take kueue/go.mod in
    kueue_build = (CLUSTER_DIR / "kueue" / "build.sh").read_text()
    assert 'cat "$here/go.mod" "$here/go.sum" "$here/build.sh"' in kueue_build
