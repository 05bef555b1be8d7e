#!/usr/bin/env bash
# Builds the test cluster's binaries from the pinned Go modules beside this script and caches
# them outside the repo, keyed by the pins: a rebuild happens only when a go.mod/go.sum changes.
#
#   tests/cluster/build.sh            control plane + kwok + helm + versitygw (the kwok tier)
#   tests/cluster/build.sh node       also kubelet and kube-proxy (the real-node tier)
#   tests/cluster/build.sh kueue      Kueue only (kueue/build.sh: cached apart, keyed by kueue/ alone)
#
# Prints the binary directory on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-operator}
want_node=${1:-}

ensure_go() {
  # Go comes from the machine; without one, Debian's golang-go bootstraps and GOTOOLCHAIN
  # fetches the pinned toolchain from the Go module proxy.
  if command -v go >/dev/null 2>&1; then return; fi
  for d in /usr/local/go/bin /usr/lib/go/bin "$HOME/go/bin"; do
    if [ -x "$d/go" ]; then export PATH="$d:$PATH"; return; fi
  done
  echo "build.sh: no Go toolchain found, installing Debian's golang-go" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
  fi
  export GOTOOLCHAIN=go1.26.8
}
ensure_go
if [ "$want_node" = kueue ]; then exec bash "$here/kueue/build.sh"; fi

# The key names the modules it builds (not a */go.mod glob): kueue/ has a cache key of its own.
mods=(etcd helm kubernetes kwok versitygw)
key=$({
  for m in "${mods[@]}"; do cat "$here/$m/go.mod"; done
  for m in "${mods[@]}"; do cat "$here/$m/go.sum"; done
  cat "$here/build.sh"
} | sha256sum | cut -c1-12)
k8s_version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/kubernetes/go.mod")
bin="$cache/bin/$k8s_version-$key"
mkdir -p "$bin"

ldflags() {
  local v=$1 major minor flags="-s -w"
  major=$(echo "${v#v}" | cut -d. -f1)
  minor=$(echo "${v#v}" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    flags="$flags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

helm_ldflags() {
  # As helm's own Makefile: its version, and the Kubernetes version `helm template` assumes.
  local v major minor
  v=$(awk '$1 == "helm.sh/helm/v3" {print $2; exit}' "$here/helm/go.mod")
  major=$(echo "${k8s_version#v}" | cut -d. -f1)
  minor=$(echo "${k8s_version#v}" | cut -d. -f2)
  echo "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

versitygw_ldflags() {
  # As versitygw's own Makefile: `versitygw --version` names the pinned release.
  local v
  v=$(awk '$1 == "github.com/versity/versitygw" {print $2; exit}' "$here/versitygw/go.mod")
  echo "-s -w -X main.Version=$v -X main.Build=$v -X main.BuildTime=1970-01-01T00:00:00Z"
}

build() { # build <module dir> <output names...> -- <packages...>
  local dir=$1; shift
  local outs=() pkgs=() missing=0
  while [ "$1" != "--" ]; do outs+=("$1"); shift; done; shift
  pkgs=("$@")
  for o in "${outs[@]}"; do [ -x "$bin/$o" ] || missing=1; done
  [ $missing = 1 ] || return 0
  echo "build.sh: building ${outs[*]} (cache: $bin)" >&2
  local start=$SECONDS
  local flags
  case $dir in
    helm) flags=$(helm_ldflags) ;;
    versitygw) flags=$(versitygw_ldflags) ;;
    *) flags=$(ldflags "$k8s_version") ;;
  esac
  (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$bin/" "${pkgs[@]}")
  echo "build.sh: built ${outs[*]} in $((SECONDS - start))s" >&2
}

build kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl -- \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
if [ "$want_node" = node ]; then
  build kubernetes kubelet kube-proxy -- k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
fi
if [ ! -x "$bin/etcd" ]; then
  build etcd server -- go.etcd.io/etcd/server/v3
  mv "$bin/server" "$bin/etcd"
fi
build kwok kwok -- sigs.k8s.io/kwok/cmd/kwok
build helm helm -- helm.sh/helm/v3/cmd/helm
build versitygw versitygw -- github.com/versity/versitygw/cmd/versitygw
echo "$bin"
