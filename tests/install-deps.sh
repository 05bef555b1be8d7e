#!/usr/bin/env bash
# Installs the Debian packages the test tiers run for real (never mocked): Prometheus and
# promtool for tests/integration/test_prometheus.py, PostgreSQL for the SQL Dataset sources
# (tests/cluster/postgres.py starts its own server beside the local cluster), Chromium and its
# chromedriver for the review page (tests/integration/test_review_page.py drives it headless
# with selenium) and tmux for `mlops review` (tests/integration/test_review_terminal.py).
# `make test` calls it, so the README's test command is self-sufficient on a fresh machine;
# .ci/run only calls `make test`.
# Idempotent: a machine that has them all costs one dpkg query. The packages' services are never
# started (the tests start their own servers on loopback).
set -euo pipefail

# package -> the binaries the tests look up on PATH (tests/unit/test_make_test.py checks this table)
declare -A provides=(
  [prometheus]="prometheus promtool"
  [chromium]="chromium"
  [chromium-driver]="chromedriver"
  [tmux]="tmux"
)
# package -> the programs the tests run from outside PATH, as globs: Debian keeps PostgreSQL's
# server programs in /usr/lib/postgresql/<version>/bin (tests/unit/test_make_test.py checks it too)
declare -A provides_files=(
  [postgresql]="/usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl /usr/lib/postgresql/*/bin/postgres /usr/lib/postgresql/*/bin/psql"
)

missing=()
for p in "${!provides[@]}"; do
  for bin in ${provides[$p]}; do
    command -v "$bin" >/dev/null || { missing+=("$p"); break; }
  done
done
for p in "${!provides_files[@]}"; do
  for pattern in ${provides_files[$p]}; do
    compgen -G "$pattern" >/dev/null || { missing+=("$p"); break; }
  done
done
. "$(dirname "$0")/cluster/apt-install.sh"
apt_install "${missing[@]}"
