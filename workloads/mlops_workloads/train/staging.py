"""Where a training pod finds its Dataset version and how its model becomes an immutable version.

``pvc://`` and ``file://`` Dataset versions are mounts: the paths are used as they are. An
``s3://`` Dataset version is downloaded once per pod into the staging directory the operator
named in the config (``data.dir``), complete or not at all.

Models are versions, never paths that change. Whatever the output's scheme, the trainer writes
into a local staging directory (``output_dir``, ``/tmp/mlops-staging/model``), never into the
output itself. When the run is done the staging directory is published as
``<output_uri>/<version>/``, where the version is the first ``VERSION_LENGTH`` hex characters of
a SHA-256 over the model's files (``card.version_id``: everything but the model card and the
epoch history, which hold timestamps). A version is written once and never again:

- a mount (pvc://, file://): copied into ``<output>/.<version>.partial-<random>``, then renamed
  to ``<output>/<version>`` in one ``os.replace`` (atomic on one file system), so a reader sees
  the whole version or none of it;
- s3://: uploaded with ``Store.upload``, the model card last (a reader that finds the card
  finds the whole model: the server and ``storage.fetch`` check it first).

If ``<version>/model_card.json`` is already there (the same model bytes were published before,
e.g. by a retried pod) nothing is written and the existing version is reported. An older run's
version, and an unversioned model written by an older operator straight into ``<output>``, are
never touched. The built-in trainers and the trainer contract (``mlops_workloads.config``/
``report``) both go through here, so a team's own code gets the same behaviour without knowing
where the model lives.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import shutil

from mlops_operator.api import common, workload
from mlops_operator.api import trainingjob as api
from mlops_workloads import runtime, storage
from mlops_workloads.train import card as card_mod

MANIFEST = "manifest.json"
CARD_FILE = card_mod.CARD_FILE
STAGING_MODEL_DIR = f"{workload.STAGING_DIR}/model"
"""Where the trainer writes its model when the config names no (usable) ``output_dir``."""


def dataset_dir(config: api.TrainConfig) -> pathlib.Path:
    """The local directory holding the config's Dataset version (downloaded if it is in S3)."""
    location = common.StorageLocation.parse(config.dataset_uri)
    if not location.remote:
        return pathlib.Path(location.local_path(config.pvc_root))
    local = pathlib.Path(config.data.dir if config.data else f"{workload.STAGING_DIR}/data")
    store = storage.open_store(
        config.dataset_uri, connection=config.dataset_s3, secrets_root=config.secrets_root
    )
    return storage.fetch(store, scratch=local, marker=MANIFEST)


def _output_path(config: api.TrainConfig) -> pathlib.Path | None:
    """The output's local path (a mount), or None for s3://."""
    location = common.StorageLocation.parse(config.output_uri)
    return None if location.remote else pathlib.Path(location.local_path(config.pvc_root))


def output_dir(config: api.TrainConfig) -> pathlib.Path:
    """Where the trainer writes its model: the config's staging directory (``output_dir``).

    Never the output itself: a config without ``output_dir``, or one from an older operator
    that named the output's mount (or a folder inside it), gets ``STAGING_MODEL_DIR``.
    """
    if config.output_dir:
        given = pathlib.Path(config.output_dir)
        output = _output_path(config)
        if output is None or not _overlap(given.resolve(), output.resolve()):
            return given
    return pathlib.Path(STAGING_MODEL_DIR)


def _overlap(a: pathlib.Path, b: pathlib.Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def version_uri(output_uri: str, version: str) -> str:
    """``<output_uri>/<version>``, normalised as the status shows URIs."""
    return common.StorageLocation.parse(output_uri).join(version).uri()


@dataclasses.dataclass(frozen=True)
class Published:
    """A model version in the output: its id, its URI, and whether an earlier run had written it."""

    version: str
    uri: str
    existed: bool


def publish(
    config: api.TrainConfig,
    folder: pathlib.Path,
    *,
    marker: str = CARD_FILE,
    version: str | None = None,
) -> Published:
    """Publish the staging directory ``folder`` as ``<output_uri>/<version>`` (``marker`` last).

    ``version`` defaults to ``card.version_id(folder)``. An existing version (its ``marker`` is
    there) is left untouched.
    """
    if not (folder / marker).is_file():
        raise runtime.WorkloadError("OutputIncomplete", f"{folder} has no {marker}: nothing to publish")
    version = version or card_mod.version_id(folder)
    uri = version_uri(config.output_uri, version)
    output = _output_path(config)
    if output is None:
        store = storage.open_store(
            config.output_uri, connection=config.output_s3, secrets_root=config.secrets_root
        ).join(version)
        if store.is_file(marker):
            return Published(version=version, uri=uri, existed=True)
        store.upload(folder, marker=marker)
        return Published(version=version, uri=uri, existed=False)
    return Published(version=version, uri=uri, existed=_publish_local(folder, output / version, marker))


def _publish_local(folder: pathlib.Path, target: pathlib.Path, marker: str) -> bool:
    """Copy ``folder`` next to ``target`` and rename it into place; True if ``target`` was there."""
    if (target / marker).is_file():
        return True
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, partial, ignore=shutil.ignore_patterns(".*"))
        _sync(partial)
        try:
            os.replace(partial, target)
        except OSError:
            if (target / marker).is_file():  # another pod published the same version first
                shutil.rmtree(partial, ignore_errors=True)
                return True
            if not target.exists():
                raise
            # A directory without the marker is no version (readers refuse it): set it aside.
            target.rename(target.with_name(f".{target.name}.incomplete-{secrets.token_hex(4)}"))
            os.replace(partial, target)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise runtime.WorkloadError(
            "OutputNotWritable", f"cannot publish the model version {target}: {exc}"[:900]
        ) from exc
    return False


def _sync(folder: pathlib.Path) -> None:
    """Flush the copied files to disk before the rename makes them visible."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
