#!/usr/bin/env bash
# Installs the real node's runtime from Debian's packages: containerd (CRI v1), runc, the CNI
# plugins, and what kubelet and kube-proxy call (iptables, conntrack, ethtool, socat, mount
# tools), plus debootstrap for the image builds. Idempotent: a machine that has them all costs
# one dpkg query. Services are never started by the packages (no systemd here; and a
# policy-rc.d guard for machines that have one): localcluster/realnode run containerd with our
# own config under the cache directory.
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins iptables conntrack ethtool socat iproute2
      util-linux mount debootstrap ca-certificates gcc libc6-dev openssl)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
. "$(dirname "$0")/../apt-install.sh"
apt_install "${missing[@]}"
