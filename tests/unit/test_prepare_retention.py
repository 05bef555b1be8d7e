"""The prepare workload's retention rule: after writing its version it deletes the complete
version directories the Dataset no longer lists, and nothing else under the storage root."""

from __future__ import annotations

import json
import pathlib

import pytest

from mlops_operator.api import dataset as api
from mlops_workloads.prepare import output, pipeline, retention

A, B, C, D, E = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)
OWN = "f" * 64


def version_dir(
    root: pathlib.Path, name: str, *, manifest: bool = True, dataset: str = "d", namespace: str = "default"
) -> pathlib.Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"rows")
    if manifest:
        document = {"digest": name, "dataset": dataset, "namespace": namespace}
        (folder / output.MANIFEST).write_text(json.dumps(document))
    return folder


def config(root: pathlib.Path, retain: list[str], keep: int = 3) -> api.PrepareConfig:
    spec = api.DatasetSpec.model_validate(
        {
            "sources": [{"sklearn": {"name": "iris"}}],
            "storage": f"file://{root}",
            "retention": {"keepVersions": keep},
        }
    )
    return api.PrepareConfig(dataset="d", spec=spec, retain=retain)


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    base = tmp_path / "versions"
    for name in (A, B, C, D, OWN):
        version_dir(base, name)
    version_dir(base, E, manifest=False)  # an interrupted write: not a complete version
    version_dir(base, "models")  # not named like a digest
    version_dir(base, f".{A[:12]}-tmp")  # a staging directory
    version_dir(base, "1" * 64, dataset="other")  # another Dataset's version in a shared root
    version_dir(base, "2" * 64, namespace="elsewhere")
    (base / ("3" * 64)).mkdir()
    (base / ("3" * 64) / output.MANIFEST).write_text("not json")
    (base / "README").write_text("the team's own notes")
    return base


def remaining(root: pathlib.Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_a_new_version_keeps_the_first_keep_minus_one_listed(root: pathlib.Path) -> None:
    deleted = retention.prune(config(root, [A, B, C], keep=3), OWN)
    assert deleted == [C, D]
    others = {"1" * 64, "2" * 64, "3" * 64}
    assert remaining(root) == {OWN, A, B, E, "models", f".{A[:12]}-tmp", "README", *others}


def test_a_listed_digest_drops_nothing_listed(root: pathlib.Path) -> None:
    """An unchanged digest (or a return to earlier data) leaves the list as it is: only what is
    not listed at all goes."""
    deleted = retention.prune(config(root, [A, B, C], keep=3), B)
    assert deleted == [D, OWN]
    assert {A, B, C} <= remaining(root)


def test_an_empty_retain_list_deletes_nothing(root: pathlib.Path) -> None:
    before = remaining(root)
    assert retention.prune(config(root, [], keep=1), OWN) == []
    assert remaining(root) == before


def test_the_rule_matches_the_status_rule() -> None:
    assert retention.kept(OWN, [A, B, C], 3) == {OWN, A, B}
    assert retention.kept(OWN, [A, B, C], 1) == {OWN}
    assert retention.kept(C, [A, B, C], 2) == {A, B, C}


def test_a_missing_storage_root_is_no_error(tmp_path: pathlib.Path) -> None:
    assert retention.prune(config(tmp_path / "absent", [A]), OWN) == []


def test_prepare_reports_the_versions_it_deleted(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "versions"
    version_dir(root, A)
    version_dir(root, B)
    first = pipeline.prepare(config(root, [A, B], keep=2), scratch_dir=str(tmp_path))
    digest = first["digest"]
    assert first["deleted"] == [B]  # A stays: the first keepVersions - 1 listed
    assert remaining(root) == {digest, A}
    assert (root / digest / output.MANIFEST).is_file()
    again = pipeline.prepare(config(root, [digest, A], keep=2), scratch_dir=str(tmp_path))
    assert again["digest"] == digest and again["deleted"] == [] and again["reused"] is True
