"""The local image builder's pure parts: reproducible OCI layouts and the Dockerfile reader."""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster" / "images"))

import dockerfile  # noqa: E402
import oci  # noqa: E402


def _tree(root: pathlib.Path, mtime: int) -> pathlib.Path:
    (root / "opt" / "app").mkdir(parents=True)
    (root / "opt" / "app" / "main.py").write_text("print('hi')\n")
    (root / "opt" / "app" / "run").write_text("#!/bin/sh\n")
    (root / "opt" / "app" / "run").chmod(0o755)
    os.symlink("app/main.py", root / "opt" / "main")
    os.link(root / "opt" / "app" / "main.py", root / "opt" / "hardlink.py")
    (root / "tmp").mkdir()
    (root / "tmp" / "scratch").write_text("build leftovers")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    return root


def test_layers_are_reproducible_whatever_the_mtimes(tmp_path: pathlib.Path) -> None:
    a = oci.write_layer(_tree(tmp_path / "a", 1_000), tmp_path / "a.tar.gz")
    b = oci.write_layer(_tree(tmp_path / "b", 2_000_000_000), tmp_path / "b.tar.gz")
    assert (a.blob.digest, a.diff_id, a.blob.size) == (b.blob.digest, b.diff_id, b.blob.size)
    (tmp_path / "b" / "opt" / "app" / "main.py").write_text("print('changed')\n")
    c = oci.write_layer(tmp_path / "b", tmp_path / "c.tar.gz")
    assert c.diff_id != a.diff_id


def test_layer_keeps_modes_links_and_drops_excluded_content(tmp_path: pathlib.Path) -> None:
    layer = oci.write_layer(_tree(tmp_path / "t", 5), tmp_path / "t.tar.gz", exclude=lambda rel: rel == "tmp")
    with tarfile.open(layer.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == [  # depth first, names sorted: the same order on every machine
        "opt",
        "opt/app",
        "opt/app/main.py",
        "opt/app/run",
        "opt/hardlink.py",
        "opt/main",
        "tmp",
    ]
    assert members["opt/app/run"].mode & 0o777 == 0o755
    assert members["opt/main"].issym() and members["opt/main"].linkname == "app/main.py"
    assert members["opt/hardlink.py"].islnk() and members["opt/hardlink.py"].linkname == "opt/app/main.py"
    assert "tmp" in members and "tmp/scratch" not in members  # the directory stays, empty
    assert all(m.mtime == oci.EPOCH and m.uname == "" for m in members.values())


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteout devices and trusted.* xattrs need root")
def test_overlay_upper_whiteouts_become_oci_whiteouts(tmp_path: pathlib.Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc" / "gone-dir").mkdir(parents=True)
    os.mknod(upper / "etc" / "removed", 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "gone-dir", "trusted.overlay.opaque", b"y")
    layer = oci.write_layer(upper, tmp_path / "u.tar.gz", overlay_upper=True)
    with tarfile.open(layer.path) as tar:
        names = tar.getnames()
    assert "etc/.wh.removed" in names and "etc/removed" not in names
    assert "etc/gone-dir/.wh..wh..opq" in names


def test_layout_tarball_is_reproducible_and_names_the_image(tmp_path: pathlib.Path) -> None:
    layer = oci.write_layer(_tree(tmp_path / "t", 7), tmp_path / "t.tar.gz")
    spec = oci.ImageSpec(
        ref="docker.io/library/demo:1.0", env=("PATH=/bin",), cmd=("python",), user="1000:1000"
    )
    first = oci.write_layout_tar(tmp_path / "one.tar", spec, [layer], ["test"])
    second = oci.write_layout_tar(tmp_path / "two.tar", spec, [layer], ["test"])
    assert first == second
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(tmp_path / "one.tar") as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("blobs/sha256/" + first.split(":")[1]))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))  # type: ignore[arg-type]
    [entry] = index["manifests"]
    assert entry["digest"] == first
    assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/demo:1.0"
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert config["config"]["User"] == "1000:1000"


def test_both_dockerfiles_share_the_base_stage_and_run_as_non_root() -> None:
    operator = dockerfile.parse(ROOT / "operator" / "Dockerfile")
    workloads = dockerfile.parse(ROOT / "workloads" / "Dockerfile")
    assert operator.stages[0].text() == workloads.stages[0].text()
    assert operator.stages[0].base == workloads.stages[0].base == "debian:bookworm-slim"
    for parsed in (operator, workloads):
        final = parsed.stages[-1].instructions
        assert ("USER", "1000:1000") in [(i.keyword, i.value) for i in final]
        assert [s.name for s in parsed.chain()] == ["base", "deps", None]
    assert workloads.args["PIP_EXTRAS"] == "workloads" and operator.args["PIP_EXTRAS"] == "operator"


def test_build_context_is_the_package_sources_only() -> None:
    files = dockerfile.context_files(ROOT)
    assert "pyproject.toml" in files and "README.md" in files
    assert any(f.startswith("operator/mlops_operator/") for f in files)
    assert any(f.startswith("workloads/mlops_workloads/") for f in files)
    allowed = ("operator/mlops_operator/", "workloads/mlops_workloads/", "pyproject.toml", "README.md")
    assert all(f.startswith(allowed) for f in files), [f for f in files if not f.startswith(allowed)]
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_dockerfile_reader_refuses_what_it_cannot_reproduce(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM debian:bookworm-slim\nCOPY . /src\n")
    with pytest.raises(ValueError, match="COPY"):
        dockerfile.parse(path)
