"""One small interface over the storage schemes: ``pvc://``, ``file://`` and ``s3://``.

The workloads read their inputs and write their outputs through :class:`Store`, built on
pyarrow's filesystems (the AWS SDK for C++ under ``s3://``: signing, retries and multipart
uploads are the SDK's, never ours). ``pvc://`` and ``file://`` are local paths in the pod
(the claim or hostPath is mounted by the operator); ``s3://`` is reached over the network
with the credentials of the resource's ``s3.secretRef`` — mounted as files at
``<secrets root>/s3/<secret>/`` — or, without one, the SDK's default chain (environment,
web identity, instance profile).

Directories are the unit the workloads exchange (a Dataset version, a model), and a directory
is complete when its *marker* file exists: uploads write the marker last, readers check it
first. An object store has no rename, so this is what makes a version appear at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import posixpath
import shutil
import tempfile

import pyarrow
import pyarrow.fs as pafs

from mlops_operator.api import common, workload
from mlops_workloads import runtime

LOG = logging.getLogger("mlops_workloads.storage")
SECRETS_ROOT = workload.SECRETS_DIR


def filesystem(
    connection: common.S3Connection | None, *, secrets_root: str = SECRETS_ROOT
) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for ``connection``: its endpoint, region and credentials."""
    conn = connection or common.S3Connection()
    kwargs: dict[str, object] = {
        "region": (conn.region or "us-east-1") if conn.endpoint else conn.region,
        "force_virtual_addressing": conn.virtual_addressing,
        "connect_timeout": 10.0,
        "request_timeout": 120.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
    }
    if conn.endpoint:
        scheme, _, rest = conn.endpoint.partition("://")
        kwargs["scheme"] = scheme
        kwargs["endpoint_override"] = rest.rstrip("/")
    folder = conn.credentials_dir(secrets_root)
    if folder is not None:
        access = _secret_key(folder, common.S3_ACCESS_KEY_ID, conn)
        secret = _secret_key(folder, common.S3_SECRET_ACCESS_KEY, conn)
        token_path = pathlib.Path(folder) / common.S3_SESSION_TOKEN
        kwargs["access_key"] = access
        kwargs["secret_key"] = secret
        if token_path.is_file():
            kwargs["session_token"] = token_path.read_text(encoding="utf-8").strip()
    return pafs.S3FileSystem(**kwargs)


def _secret_key(folder: str, key: str, conn: common.S3Connection) -> str:
    path = pathlib.Path(folder) / key
    name = conn.secret_ref.name if conn.secret_ref else "?"
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        value = ""
    if not value:
        raise runtime.WorkloadError(
            "CredentialsMissing",
            f"the S3 credentials Secret {name!r} does not exist in this namespace or has no key {key!r}; "
            f"create it with {common.S3_ACCESS_KEY_ID} and {common.S3_SECRET_ACCESS_KEY}",
        )
    return value


@dataclasses.dataclass(frozen=True)
class Store:
    """A directory (or a single file) in one of the storage schemes."""

    location: common.StorageLocation
    fs: pafs.FileSystem
    path: str  # the location's path inside ``fs``: a local path, or ``<bucket>/<prefix>`` for S3

    @property
    def remote(self) -> bool:
        return self.location.remote

    @property
    def uri(self) -> str:
        return self.location.uri()

    def join(self, *parts: str) -> Store:
        location = self.location.join(*parts)
        extra = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return dataclasses.replace(self, location=location, path=posixpath.join(self.path, extra))

    def local_path(self) -> pathlib.Path:
        """The path in the pod (pvc:// and file:// only)."""
        if self.remote:
            raise ValueError(f"{self.uri} has no local path")
        return pathlib.Path(self.path)

    # -- reading ------------------------------------------------------------------------------

    def is_file(self, name: str = "") -> bool:
        info = self._info(self._sub(name))
        return bool(info.type == pafs.FileType.File)

    def is_dir(self) -> bool:
        """A local directory, or an S3 prefix with at least one object (file) under it."""
        if not self.remote:
            return pathlib.Path(self.path).is_dir()
        return any(info.type == pafs.FileType.File for info in self._select(self.path))

    def files(self, *, suffixes: tuple[str, ...] = ()) -> list[str]:
        """Paths (inside ``fs``) of the files under this directory, sorted; hidden ones skipped."""
        if not self.remote and not pathlib.Path(self.path).is_dir():
            return []
        out = [
            info.path
            for info in self._select(self.path)
            if info.type == pafs.FileType.File
            and not any(part.startswith((".", "_")) for part in info.path[len(self.path) :].split("/"))
            and (not suffixes or info.path.lower().endswith(suffixes))
        ]
        return sorted(out)

    def read_bytes(self, name: str = "") -> bytes:
        path = self._sub(name)
        try:
            with self.fs.open_input_stream(path) as stream:
                data: bytes = stream.read()
                return data
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnreadable", f"cannot read {self._uri_of(name)}", exc) from exc

    def download(self, target: pathlib.Path) -> pathlib.Path:
        """Copy the directory's files into ``target`` (created); returns ``target``."""
        target.mkdir(parents=True, exist_ok=True)
        try:
            for info in self._select(self.path):
                if info.type != pafs.FileType.File:
                    continue
                relative = info.path[len(self.path) :].lstrip("/")
                dest = target / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                pafs.copy_files(
                    info.path, str(dest), source_filesystem=self.fs, destination_filesystem=_LOCAL
                )
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnreadable", f"cannot download {self.uri}", exc) from exc
        LOG.info("downloaded %s to %s", self.uri, target)
        return target

    # -- writing ------------------------------------------------------------------------------

    def upload(self, source: pathlib.Path, *, marker: str) -> None:
        """Copy a local directory's files here, ``marker`` last: its presence means complete.

        An older, interrupted upload (no marker) is overwritten file by file.
        """
        files = sorted(p for p in source.rglob("*") if p.is_file())
        names = [p.relative_to(source).as_posix() for p in files]
        if marker not in names:
            raise ValueError(f"{source} has no {marker}")
        order = [n for n in names if n != marker] + [marker]
        try:
            for name in order:
                if not self.remote:
                    pathlib.Path(self._sub(name)).parent.mkdir(parents=True, exist_ok=True)
                pafs.copy_files(
                    str(source / name),
                    self._sub(name),
                    source_filesystem=_LOCAL,
                    destination_filesystem=self.fs,
                )
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnwritable", f"cannot upload to {self.uri}", exc) from exc
        LOG.info("uploaded %d files to %s", len(order), self.uri)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one file whole (one PUT on S3; a temporary file and a rename locally)."""
        path = self._sub(name)
        try:
            if self.remote:
                with self.fs.open_output_stream(path) as stream:
                    stream.write(data)
                return
            local = pathlib.Path(path)
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{local.name}-", dir=local.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, local)
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnwritable", f"cannot write {self._uri_of(name)}", exc) from exc

    def remove(self) -> None:
        """Delete the directory and everything under it (absent is fine)."""
        try:
            if not self.remote:
                shutil.rmtree(self.path, ignore_errors=True)
                return
            # Objects first, then the directory markers deepest first: stores over a file system
            # (versitygw's posix backend) refuse to delete a directory that is not empty.
            infos = self._select(self.path)
            for info in infos:
                if info.type == pafs.FileType.File:
                    self.fs.delete_file(info.path)
            dirs = [i.path for i in infos if i.type == pafs.FileType.Directory]
            for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
                self.fs.delete_dir(path)
            if self._info(self.path).type == pafs.FileType.Directory:
                self.fs.delete_dir(self.path)
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnwritable", f"cannot delete {self.uri}", exc) from exc

    def children(self) -> list[str]:
        """Names of the immediate sub-directories (version directories under a storage root)."""
        if not self.remote:
            root = pathlib.Path(self.path)
            return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        selector = pafs.FileSelector(self.path.rstrip("/") + "/", allow_not_found=True, recursive=False)
        try:
            infos = self.fs.get_file_info(selector)
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnreadable", f"cannot list {self.uri}", exc) from exc
        return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)

    # -- internals ----------------------------------------------------------------------------

    def _sub(self, name: str) -> str:
        return posixpath.join(self.path, name) if name else self.path

    def _uri_of(self, name: str) -> str:
        return self.location.join(name).uri() if name else self.uri

    def _info(self, path: str) -> pafs.FileInfo:
        try:
            info: pafs.FileInfo = self.fs.get_file_info(path)
            return info
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnreadable", f"cannot reach {self.uri}", exc) from exc

    def _select(self, path: str, *, limit: int | None = None) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path.rstrip("/") + "/", allow_not_found=True, recursive=True)
        try:
            infos: list[pafs.FileInfo] = self.fs.get_file_info(selector)
        except (OSError, pyarrow.ArrowException) as exc:
            raise self._error("StorageUnreadable", f"cannot list {self.uri}", exc) from exc
        return infos[:limit] if limit is not None else infos

    def _error(self, reason: str, what: str, exc: BaseException) -> runtime.WorkloadError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "; check the URI, the bucket, the endpoint and the credentials" if self.remote else ""
        return runtime.WorkloadError(reason, f"{what}: {detail}{hint}"[:900])


_LOCAL = pafs.LocalFileSystem()


def open_store(
    uri: str,
    *,
    connection: common.S3Connection | None = None,
    pvc_root: str = "/mnt/mlops",
    secrets_root: str = SECRETS_ROOT,
) -> Store:
    """The :class:`Store` at ``uri``."""
    location = common.StorageLocation.parse(uri)
    if location.remote:
        path = f"{location.claim}/{location.path}".rstrip("/")
        return Store(location=location, fs=filesystem(connection, secrets_root=secrets_root), path=path)
    return Store(location=location, fs=_LOCAL, path=location.local_path(pvc_root))


def fetch(store: Store, *, scratch: pathlib.Path, marker: str | None = None) -> pathlib.Path:
    """A local path holding ``store``'s files: itself when local, else a download into ``scratch``.

    With ``marker``, a directory without it is incomplete and refused.
    """
    if store.remote and marker is not None and (scratch / marker).is_file():
        return scratch  # downloaded earlier in this pod
    if marker is not None and not store.is_file(marker):
        raise runtime.WorkloadError(
            "StorageUnreadable",
            f"{store.uri} holds no complete version ({marker} is missing); it was never written "
            "completely or has been deleted",
        )
    if not store.remote:
        return store.local_path()
    partial = scratch.with_name(f".{scratch.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    store.download(partial)
    shutil.rmtree(scratch, ignore_errors=True)
    os.replace(partial, scratch)  # whole or not at all: a half download never looks complete
    return scratch
