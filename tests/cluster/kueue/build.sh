#!/usr/bin/env bash
# Builds Kueue (pinned in go.mod beside this script) for the opt-in Kueue tier: `make cluster-up
# KUEUE=1`, `make kueue-up`, the `kueue` pytest fixture. Run it as `tests/cluster/build.sh kueue`,
# which finds Go first. Cached apart from the control plane and keyed by this directory alone
# (go.mod, go.sum, this script), so neither tier's pins rebuild the other's binaries.
#
# The cache directory holds the `kueue` binary and, in crds/, the CRDs of the same module version
# (config/components/crd/bases in the module's source, as `go mod download` unpacks it).
# Prints that directory on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-operator}
version=$(awk '$1 == "sigs.k8s.io/kueue" {print $2; exit}' "$here/go.mod")
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
bin="$cache/bin/kueue-$version-$key"

if [ ! -x "$bin/kueue" ] || [ ! -d "$bin/crds" ]; then
  echo "build.sh: building kueue $version (cache: $bin)" >&2
  start=$SECONDS
  tmp="$bin.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp/crds"
  trap 'rm -rf "$tmp"' EXIT
  # As Kueue's own Makefile (LD_FLAGS): `kueue` logs the pinned release as its version.
  p=sigs.k8s.io/kueue/pkg/version
  flags="-s -w -X $p.GitVersion=$version -X $p.GitCommit=unknown -X $p.BuildDate=1970-01-01T00:00:00Z"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$tmp/" sigs.k8s.io/kueue/cmd/kueue)
  src=$(cd "$here" && go mod download -json "sigs.k8s.io/kueue@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  cp "$src"/config/components/crd/bases/*.yaml "$tmp/crds/"
  chmod 0644 "$tmp"/crds/*.yaml  # the module cache is read-only
  mkdir -p "$(dirname "$bin")" && rm -rf "$bin" && mv "$tmp" "$bin"
  trap - EXIT
  echo "build.sh: built kueue in $((SECONDS - start))s" >&2
fi
echo "$bin"
