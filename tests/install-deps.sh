#!/usr/bin/env bash
# Installs the Debian packages the test tiers run for real (never mocked): Prometheus and
# promtool for tests/integration/test_prometheus.py. `make test` calls it, so the README's test
# command is self-sufficient on a fresh machine; .ci/run only calls `make test`.
# Idempotent: a machine that has them all costs one dpkg query. The packages' services are never
# started (the tests start their own servers on loopback).
set -euo pipefail

# package -> the binaries the tests look up on PATH (tests/unit/test_make_test.py checks this table)
declare -A provides=(
  [prometheus]="prometheus promtool"
)

missing=()
for p in "${!provides[@]}"; do
  for bin in ${provides[$p]}; do
    command -v "$bin" >/dev/null || { missing+=("$p"); break; }
  done
done
. "$(dirname "$0")/cluster/apt-install.sh"
apt_install "${missing[@]}"
