"""OCI image layouts written from directory trees, byte for byte reproducible.

No registry is reachable and no Docker engine runs, so the test node's images are assembled
here: each layer is a tar (gzip-compressed) of a directory tree, the image config and manifest
are canonical JSON, and the result is an OCI image layout tarball (``oci-layout``,
``index.json``, ``blobs/sha256/...``) that ``ctr -n k8s.io images import`` accepts.

Reproducible: entries are written in sorted order with mtimes set to ``SOURCE_DATE_EPOCH``
(0 by default), no user/group names, gzip without a name or timestamp; the same tree gives
the same digest on any machine. Overlayfs upper directories (the result of one build step)
are converted on the fly: a 0/0 character device becomes a ``.wh.<name>`` whiteout and an
opaque directory gets a ``.wh..wh..opq`` marker, as the OCI image spec describes.

Standard library only.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pathlib
import stat
import tarfile
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclasses.dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclasses.dataclass(frozen=True)
class Layer:
    """A compressed layer blob on disk with its digests (``diff_id`` is of the uncompressed tar)."""

    path: pathlib.Path
    blob: Blob
    diff_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "digest": self.blob.digest,
            "size": self.blob.size,
            "diffId": self.diff_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(
            path=pathlib.Path(data["path"]),
            blob=Blob(data["digest"], int(data["size"]), MEDIA_LAYER_GZIP),
            diff_id=data["diffId"],
        )


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink`` (may be None)."""

    def __init__(self, sink: BinaryIO | gzip.GzipFile | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        if self.sink is not None:
            self.sink.write(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _walk(root: pathlib.Path, rel: str = "") -> Iterable[tuple[str, os.DirEntry[str]]]:
    """(relative path, entry) for every entry under ``root``, depth first, names sorted bytewise."""
    base = root / rel if rel else root
    with os.scandir(base) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        yield path, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, path)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = EPOCH
    info.uname = ""
    info.gname = ""
    info.pax_headers = {}
    return info


def write_layer(
    root: pathlib.Path,
    out: pathlib.Path,
    *,
    exclude: Callable[[str], bool] = lambda _path: False,
    overlay_upper: bool = False,
    compresslevel: int = 3,
) -> Layer:
    """Tar ``root`` into the gzip layer ``out`` and return its digests.

    ``exclude(relpath)`` drops a path (and, for a directory, what is below it: the directory
    itself is kept empty). ``overlay_upper`` converts overlayfs whiteouts into OCI ones.
    """
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as raw:
        compressed = _HashingWriter(raw)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=compresslevel
        ) as gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                skip_under: str | None = None
                for rel, entry in _walk(root):
                    if skip_under is not None and rel.startswith(skip_under):
                        continue
                    skip_under = None
                    full = os.path.join(root, rel)
                    st = entry.stat(follow_symlinks=False)
                    if overlay_upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        head, _, name = rel.rpartition("/")
                        wh = tarfile.TarInfo(
                            f"{head}/{WHITEOUT_PREFIX}{name}" if head else f"{WHITEOUT_PREFIX}{name}"
                        )
                        wh.mode = 0o644
                        tar.addfile(_normalise(wh))
                        continue
                    excluded = exclude(rel)
                    if excluded and not entry.is_dir(follow_symlinks=False):
                        continue
                    info = tar.gettarinfo(full, arcname=rel)
                    if info is None:  # sockets and the like
                        continue
                    _normalise(info)
                    if info.isreg():
                        with open(full, "rb") as fh:
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info)
                    if entry.is_dir(follow_symlinks=False):
                        if excluded:
                            skip_under = rel + "/"
                            continue
                        if overlay_upper and is_opaque(full):
                            marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
                            marker.mode = 0o644
                            tar.addfile(_normalise(marker))
    os.replace(tmp, out)
    return Layer(
        path=out,
        blob=Blob(compressed.digest, compressed.size, MEDIA_LAYER_GZIP),
        diff_id=uncompressed.digest,
    )


def is_opaque(path: str) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _blob(data: bytes, media_type: str) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type)


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What a Dockerfile's final stage says about the running container."""

    ref: str  # fully qualified, e.g. docker.io/library/mlops-workloads:0.1.0
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str = ""
    workdir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()

    def config(self, layers: list[Layer], history: list[str]) -> dict[str, Any]:
        container: dict[str, Any] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            container["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            container["Cmd"] = list(self.cmd)
        if self.user:
            container["User"] = self.user
        if self.workdir:
            container["WorkingDir"] = self.workdir
        if self.labels:
            container["Labels"] = dict(self.labels)
        if self.exposed_ports:
            container["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        created = "1970-01-01T00:00:00Z" if EPOCH == 0 else _rfc3339(EPOCH)
        return {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": container,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": h} for h in history],
        }


def _rfc3339(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_layout_tar(out: pathlib.Path, spec: ImageSpec, layers: list[Layer], history: list[str]) -> str:
    """Write the OCI image layout tarball ``out``; return the manifest digest (the image's id)."""
    config = canonical_json(spec.config(layers, history))
    config_blob = _blob(config, MEDIA_CONFIG)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [layer.blob.descriptor() for layer in layers],
            "annotations": {"org.opencontainers.image.ref.name": spec.ref.rpartition(":")[2]},
        }
    )
    manifest_blob = _blob(manifest, MEDIA_MANIFEST)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                manifest_blob.descriptor(
                    platform={"architecture": "amd64", "os": "linux"},
                    annotations={
                        "io.containerd.image.name": spec.ref,
                        "org.opencontainers.image.ref.name": spec.ref.rpartition(":")[2],
                    },
                )
            ],
        }
    )
    entries: dict[str, bytes | pathlib.Path] = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        _blob_path(config_blob.digest): config,
        _blob_path(manifest_blob.digest): manifest,
    }
    for layer in layers:
        entries[_blob_path(layer.blob.digest)] = layer.path
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(_normalise(info))
        for name in sorted(entries):
            source = entries[name]
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(_normalise(info), io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with source.open("rb") as fh:
                    tar.addfile(_normalise(info), fh)
    os.replace(tmp, out)
    return manifest_blob.digest


def _blob_path(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    return f"blobs/{algo}/{hexdigest}"
