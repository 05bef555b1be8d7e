#!/usr/bin/env bash
# Installs the pinned MLflow (tests/mlflow/requirements.txt) into a venv of its own, cached
# outside the repo and keyed by the pins, like tests/cluster/build.sh's binaries: the integration
# tests run `mlflow server` and MLflow's own client from it. A venv of its own because mlflow
# would downgrade packages of the project's .venv (pyarrow), and the operator never needs it.
# `make test` (target mlflow-venv) runs it; the test fixture runs it too when the venv is
# missing, so `pytest tests/integration/test_mlflow_export.py` works on a fresh machine.
#
# Idempotent: an installed venv costs one stat. Prints the venv's directory on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-operator}
python=${MLFLOW_PYTHON:-python3}
key=$( (cat "$here/requirements.txt" "$here/install.sh"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
venv="$cache/mlflow/$key"

if [ ! -f "$venv/.installed" ]; then
  echo "install.sh: installing MLflow into $venv" >&2
  started=$SECONDS
  # The stamp is written last: a run killed half-way leaves no stamp, and the next one starts over.
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --no-deps -r "$here/requirements.txt" >&2
  "$venv/bin/python" -m pip check >&2
  "$venv/bin/mlflow" --version >&2
  touch "$venv/.installed"
  echo "install.sh: MLflow installed in $((SECONDS - started))s" >&2
fi
echo "$venv"
