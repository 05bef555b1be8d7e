"""The MLflow the integration tests run is installed by `make test` itself, pinned, in a venv of its
own: never in the operator's dependencies (its image talks REST) nor in the project's .venv."""

from __future__ import annotations

import pathlib
import re
import subprocess
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "tests" / "mlflow" / "requirements.txt"


def test_make_test_installs_mlflow_before_the_tests() -> None:
    out = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    install = next(i for i, line in enumerate(out) if "tests/mlflow/install.sh" in line)
    pytest_run = next(i for i, line in enumerate(out) if "pytest tests/unit" in line)
    assert install < pytest_run


def test_mlflow_is_pinned_with_everything_it_pulls_in() -> None:
    lines = [
        line for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line) for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert {"mlflow", "mlflow-skinny", "mlflow-tracing", "sqlalchemy", "alembic", "flask"} <= names
    # install.sh installs with --no-deps: the list must be complete, which pip check verifies there.
    assert "--no-deps" in (ROOT / "tests" / "mlflow" / "install.sh").read_text()


def test_the_operator_never_depends_on_mlflow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [
        d for deps in project["optional-dependencies"].values() for d in deps
    ]
    assert not [d for d in declared if re.match(r"mlflow\b", d, re.I)]
