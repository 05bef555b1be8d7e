"""Where a training pod finds its Dataset version and writes its model, whatever the scheme.

``pvc://`` and ``file://`` locations are mounts: the paths are used as they are. An ``s3://``
Dataset version is downloaded once per pod into the staging directory the operator named in
the config (``data.dir``), complete or not at all; an ``s3://`` output is written to a local
staging directory and uploaded when the run reports, the model card last (a ModelDeployment
that finds the card finds the whole model). The built-in trainers and the trainer contract
(``mlops_workloads.config``/``report``) both go through here, so a team's own code gets the
same behaviour without knowing where the data lives.
"""

from __future__ import annotations

import pathlib

from mlops_operator.api import common, workload
from mlops_operator.api import trainingjob as api
from mlops_workloads import storage

MANIFEST = "manifest.json"
CARD_FILE = "model_card.json"


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


def output_dir(config: api.TrainConfig) -> pathlib.Path:
    """Where the trainer writes its model: the output's mount, or a staging directory for S3."""
    if config.output_dir:
        return pathlib.Path(config.output_dir)
    location = common.StorageLocation.parse(config.output_uri)
    if location.remote:
        return pathlib.Path(f"{workload.STAGING_DIR}/model")
    return pathlib.Path(location.local_path(config.pvc_root))


def publish(config: api.TrainConfig, folder: pathlib.Path, *, marker: str = CARD_FILE) -> None:
    """Upload ``folder`` to an s3:// output (``marker`` last); nothing to do for a mount."""
    if not common.StorageLocation.parse(config.output_uri).remote:
        return
    store = storage.open_store(
        config.output_uri, connection=config.output_s3, secrets_root=config.secrets_root
    )
    store.upload(folder, marker=marker)
