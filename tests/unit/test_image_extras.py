"""The two workloads images, mlops-workloads and mlops-workloads-gpu, cannot drift apart.

Both come from ``workloads/Dockerfile``; the GPU variant only sets ``PIP_EXTRAS=workloads-gpu``.
The Dockerfile installs one extra's own list (no ``mlops-operator[...]`` self-references, which
would need the package itself), so pyproject.toml spells ``workloads-gpu`` out: this test
keeps it equal to ``workloads`` with ``xgboost-cpu`` swapped for ``xgboost`` (the CUDA build,
same version bounds) plus the ``torch`` extra. And, without building anything, that the local
builder's variant table and cache keys treat the GPU image as that build argument.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import tomllib
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "tests" / "cluster" / "images"
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data["project"]["optional-dependencies"])


def _by_name(requirements: list[str]) -> dict[str, str]:
    """{normalised name (PEP 503): extras + version bounds}, refusing duplicates."""
    out: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        assert match, requirement
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert name not in out, f"{name} listed twice"
        out[name] = (match.group(2) or "") + re.sub(r"\s+", "", match.group(3))
    return out


def _load_build() -> ModuleType:
    # Not ``import build``: PyPI's ``build`` package may be installed under that name.
    spec = importlib.util.spec_from_file_location("mlops_images_build", IMAGES_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return _load_build()


def test_gpu_extra_is_the_cpu_extra_with_cuda_xgboost_and_torch() -> None:
    extras = _extras()
    cpu, gpu, torch = (_by_name(extras[name]) for name in ("workloads", "workloads-gpu", "torch"))
    assert "xgboost-cpu" in cpu and "xgboost" not in cpu
    expected = {("xgboost" if name == "xgboost-cpu" else name): spec for name, spec in cpu.items()}
    assert not set(expected) & set(torch), "the torch extra repeats a workloads requirement"
    expected.update(torch)
    assert gpu == expected
    assert gpu["xgboost"] == cpu["xgboost-cpu"]  # the same version bounds, the CUDA build
    # Both wheels provide the `xgboost` module: the GPU image must not get the CPU one too.
    assert "xgboost-cpu" not in gpu
    # The CPU image stays CPU-sized: no torch (PyPI's Linux wheel is the CUDA build).
    assert not set(torch) & set(cpu)


def test_variant_table_maps_workloads_gpu_to_the_workloads_dockerfile(build: ModuleType) -> None:
    gpu = build.APPS["workloads-gpu"]
    cpu = build.APPS["workloads"]
    assert gpu.dockerfile == cpu.dockerfile == "workloads/Dockerfile"
    assert dict(gpu.build_args) == {"PIP_EXTRAS": "workloads-gpu"}
    assert dict(cpu.build_args) == {}
    assert (cpu.repository, gpu.repository) == ("mlops-workloads", "mlops-workloads-gpu")
    assert (ROOT / gpu.dockerfile).is_file()
    # The GPU image is built only when named: `all` (and no name) stays pause+operator+workloads.
    assert list(build.NAMES) == ["pause", "operator", "workloads", "workloads-gpu"]
    assert build.resolve([]) == build.resolve(["all"]) == ["pause", "operator", "workloads"]
    assert build.resolve(["workloads-gpu"]) == ["workloads-gpu"]
    assert build.resolve(["all", "workloads-gpu"]) == ["pause", "operator", "workloads", "workloads-gpu"]


def test_build_argument_changes_the_deps_layer_on_and_keeps_the_base(build: ModuleType) -> None:
    """What the cache keys say: the variants share the base layer, never a deps layer."""
    plans = {}
    for name in ("workloads", "workloads-gpu"):
        app = build.APPS[name]
        df = build.dockerfile.parse(ROOT / app.dockerfile, dict(app.build_args))
        steps, _state = build.plan_dockerfile(
            df, mirror="http://deb.debian.org/debian", context=ROOT, context_key="context"
        )
        plans[name] = steps
    cpu, gpu = plans["workloads"], plans["workloads-gpu"]
    assert len(cpu) == len(gpu) == 3  # base, deps, the package
    assert cpu[0].key == gpu[0].key
    assert all(a.key != b.key for a, b in zip(cpu[1:], gpu[1:], strict=True))
    assert (cpu[1].env["PIP_EXTRAS"], gpu[1].env["PIP_EXTRAS"]) == ("workloads", "workloads-gpu")
    assert "PIP_EXTRAS" not in gpu[0].env  # not in the base stage's scope


def test_build_arguments_follow_docker_precedence(tmp_path: pathlib.Path) -> None:
    sys.path.insert(0, str(IMAGES_DIR))
    import dockerfile

    path = tmp_path / "Dockerfile"
    path.write_text(
        "ARG SUITE=bookworm\nARG EXTRA=global\nFROM debian:${SUITE}-slim\n"
        "ARG EXTRA\nARG LOCAL=stage\nRUN true\n"
    )
    default = dockerfile.parse(path)
    assert default.stages[0].base == "debian:bookworm-slim"
    assert default.arg("EXTRA") == ("EXTRA", "global")
    assert default.arg("LOCAL=stage") == ("LOCAL", "stage")
    given = dockerfile.parse(path, {"SUITE": "trixie", "EXTRA": "x", "LOCAL": "y"})
    assert given.stages[0].base == "debian:trixie-slim"  # FROM sees the build argument
    assert given.arg("EXTRA") == ("EXTRA", "x")
    assert given.arg("LOCAL=stage") == ("LOCAL", "y")
    with pytest.raises(ValueError, match="PIP_EXTRA"):  # a typo is an error, not the default
        dockerfile.parse(path, {"PIP_EXTRA": "workloads-gpu"})
