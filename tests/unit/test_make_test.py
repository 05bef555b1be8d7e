"""`make test` is the README's test command: it must install what its tests run, by itself.

A fresh clone that runs `make demo` then `make test` (nothing else) once failed because only
.ci/run installed Prometheus. These tests tie the binaries the test tiers look up on PATH to
the packages `tests/install-deps.sh` installs, and check that `make test` runs that script.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPS = ROOT / "tests" / "install-deps.sh"


def _installed_binaries() -> set[str]:
    """The binaries install-deps.sh makes sure of, from its ``provides`` table."""
    table = re.search(r"declare -A provides=\((.*?)\n\)", DEPS.read_text(), re.S)
    assert table, "tests/install-deps.sh has no provides=( ... ) table"
    return {b for _, bins in re.findall(r'\[([\w.+-]+)\]="([^"]*)"', table.group(1)) for b in bins.split()}


def _binaries_tests_look_up() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        found |= set(re.findall(r'\b_?binary\("([\w.+-]+)"\)', path.read_text()))
    return found


def test_every_binary_the_tests_look_up_is_installed_by_make_test() -> None:
    needed = _binaries_tests_look_up()
    assert {"prometheus", "promtool", "chromium", "chromedriver"} <= needed  # the scan itself works
    assert needed <= _installed_binaries()


def _installed_files() -> dict[str, list[str]]:
    """install-deps.sh's ``provides_files`` table: package -> globs of programs outside PATH."""
    table = re.search(r"declare -A provides_files=\((.*?)\n\)", DEPS.read_text(), re.S)
    assert table, "tests/install-deps.sh has no provides_files=( ... ) table"
    return {p: globs.split() for p, globs in re.findall(r'\[([\w.+-]+)\]="([^"]*)"', table.group(1))}


def test_every_postgresql_program_the_cluster_runs_is_installed_by_make_test() -> None:
    """tests/cluster/postgres.py runs Debian's server programs by name from
    /usr/lib/postgresql/<version>/bin (``pg_tool("initdb")``): each is in the package's globs."""
    used = set(
        re.findall(r'pg_tool\("([\w.+-]+)"\)', (ROOT / "tests" / "cluster" / "postgres.py").read_text())
    )
    assert {"initdb", "pg_ctl", "postgres", "psql"} <= used  # the scan itself works
    installed = {pattern.rsplit("/", 1)[1] for pattern in _installed_files()["postgresql"]}
    assert all(
        pattern.startswith("/usr/lib/postgresql/*/bin/") for pattern in _installed_files()["postgresql"]
    )
    assert used <= installed


def test_make_test_runs_the_install_script_before_the_tests() -> None:
    out = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    lines = out.splitlines()
    install = next(i for i, line in enumerate(lines) if "tests/install-deps.sh" in line)
    pytest_run = next(i for i, line in enumerate(lines) if "pytest tests/unit" in line)
    assert install < pytest_run


def test_ci_installs_nothing_that_make_test_should() -> None:
    """.ci/run stays a thin caller: only what `make` itself needs to start."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    for pkg in ("prometheus", "postgresql", "chromium"):
        assert pkg not in ci, f".ci/run installs {pkg}; tests/install-deps.sh (make test) must"


def test_kopf_settings_use_no_deprecated_names() -> None:
    import kopf

    from mlops_operator.handlers import settings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        settings.apply_kopf_settings(kopf.OperatorSettings(), settings.OperatorConfig())
