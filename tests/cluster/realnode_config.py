"""The real node's configuration: names, addresses, ports, and the files and API objects it needs.

Pure: every function returns text or plain dicts; ``realnode.py`` writes them and runs the
processes. Kept apart so the node's shape can be read (and reviewed) in one place.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import localcluster  # noqa: E402

NODE_NAME = "mlops-node-0"
NODE_DIR = localcluster.CACHE / "node"
CONTAINERD_SOCK = NODE_DIR / "containerd.sock"
BRIDGE = "mlops0"
NODE_IP = "10.244.1.1"
NODE_POD_CIDR = "10.244.1.0/24"
CNI_BIN = pathlib.Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/mlops-pause:1.0"
KUBELET_PORT = localcluster.PORT_BASE + 250
KUBELET_HEALTHZ_PORT = localcluster.PORT_BASE + 248
PROXY_HEALTHZ_PORT = localcluster.PORT_BASE + 256
PROXY_METRICS_PORT = localcluster.PORT_BASE + 249
CONTAINERD_METRICS_PORT = localcluster.PORT_BASE + 338

LABEL_POOL = "mlops.dev/node-pool"
TAINT_KEY = "mlops.dev/real-node"
REAL_NODE_SELECTOR = {LABEL_POOL: "real"}
REAL_NODE_TOLERATION = {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
STORAGE_CLASS = "mlops-local"
DATA_CLAIM = "mlops-data"


def containerd_config() -> str:
    root, state = NODE_DIR / "containerd" / "root", NODE_DIR / "containerd" / "state"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    cni_conf_dir = NODE_DIR / "cni" / "net.d"
    return f"""# Written by tests/cluster/realnode.py: the local real node's containerd (CRI v1, cgroupfs).
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{CONTAINERD_SOCK}"

[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"

[metrics]
  address = "127.0.0.1:{CONTAINERD_METRICS_PORT}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE (no negative oom_score_adj): clamp, as rootless does.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = ""
"""


def cni_config() -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "mlops",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # pods talk to the node and each other, never to the outside
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(NODE_DIR / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(pki: pathlib.Path) -> dict[str, object]:
    return {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / f"{NODE_NAME}.crt"),
        "tlsPrivateKeyFile": str(pki / f"{NODE_NAME}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "30s"}},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "registerNode": True,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "resolvConf": str(NODE_DIR / "resolv.conf"),
        "clusterDomain": "cluster.local",
        "failSwapOn": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "evictionPressureTransitionPeriod": "30s",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "8760h",
        "serializeImagePulls": False,
        "maxPods": 110,
        "podPidsLimit": 4096,
        "volumePluginDir": str(NODE_DIR / "volume-plugins"),
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 3,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": True,
    }


def kube_proxy_config() -> dict[str, object]:
    return {
        "kind": "KubeProxyConfiguration",
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "clientConnection": {"kubeconfig": str(NODE_DIR / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "mode": "iptables",
        "clusterCIDR": localcluster.POD_CIDR,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {
            "masqueradeAll": False,
            "localhostNodePorts": False,
            "syncPeriod": "30s",
            "minSyncPeriod": "0s",
        },
        # 0 = leave the machine's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def cluster_objects() -> list[dict[str, object]]:
    port = localcluster.PORTS.apiserver
    return [
        {  # lets the apiserver reach the kubelet API (logs, exec, port-forward)
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "mlops-local:apiserver-kubelet-client"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "kube-apiserver-kubelet-client",
                }
            ],
        },
        {  # the apiserver for in-cluster clients: default/kubernetes -> the forwarder on the bridge
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": NODE_IP}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ],
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "mlops-realnode",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner",
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "Immediate",
        },
    ]


def volume_path(namespace: str, claim: str = DATA_CLAIM) -> pathlib.Path:
    return NODE_DIR / "volumes" / f"{namespace}-{claim}"


def data_claim_objects(
    namespace: str, claim: str = DATA_CLAIM, size: str = "10Gi"
) -> list[dict[str, object]]:
    """A hostPath PersistentVolume pre-bound to the claim ``<namespace>/<claim>``, and the claim."""
    pv_name = f"{claim}-{namespace}"[:63].rstrip("-")
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": {"mlops.dev/local-volume": "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(volume_path(namespace, claim)), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                ]
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": STORAGE_CLASS,
                "volumeName": pv_name,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]
