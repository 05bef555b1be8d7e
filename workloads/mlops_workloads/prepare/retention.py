"""Retention: after writing its version, the prepare pod deletes the versions the Dataset drops.

The prepare pod is the one place that has the storage mounted (or the S3 credentials): the
operator never touches data, so it tells the pod which versions its status lists
(``PrepareConfig.retain``, newest first) and the pod applies the very rule the status follows
(``reconcile.dataset.fold_version``): when this run's digest is already listed, nothing drops
out; when it is new, it is prepended and only the first ``keepVersions - 1`` listed ones stay.
Everything else that *is a version of this Dataset* goes: a directory named like a digest (64
hex characters) whose manifest.json names this Dataset and namespace. Anything else under the
storage root (an interrupted write without a manifest, a staging directory, another Dataset's
versions in a shared root, a user's own files) is never touched, and an empty ``retain`` (an
operator that predates retention, a test) deletes nothing at all.

A failed deletion does not fail the preparation: the version is written and correct; what
was not deleted is logged and retried by the next preparation.
"""

from __future__ import annotations

import json
import logging
import re

from mlops_operator.api import dataset as api
from mlops_workloads import runtime, storage
from mlops_workloads.prepare import output

LOG = logging.getLogger("mlops_workloads.prepare.retention")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
DELETED_REPORT_MAX = 20  # digests listed in the result (the termination message is 4 KiB)


def kept(digest: str, retain: list[str], keep_versions: int) -> set[str]:
    """The digests that stay once ``digest`` is the served version."""
    if digest in retain:
        return {digest, *retain}
    return {digest, *retain[: max(0, keep_versions - 1)]}


def _ours(version: storage.Store, config: api.PrepareConfig) -> bool:
    """Whether the version's manifest names this Dataset (a shared storage root holds others')."""
    try:
        manifest = json.loads(version.read_bytes(output.MANIFEST))
    except (ValueError, runtime.WorkloadError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("dataset") == config.dataset
        and manifest.get("namespace") == config.namespace
    )


def prune(config: api.PrepareConfig, digest: str) -> list[str]:
    """Delete the complete version directories under ``spec.storage`` that are not kept; returns
    the digests deleted (sorted)."""
    if not config.retain:
        return []
    keep = kept(digest, list(config.retain), config.spec.retention.keep_versions)
    root = storage.open_store(
        config.spec.storage,
        connection=config.spec.s3,
        pvc_root=config.pvc_root,
        secrets_root=config.secrets_root,
    )
    deleted: list[str] = []
    try:
        for name in root.children():
            if not DIGEST_RE.fullmatch(name) or name in keep:
                continue
            version = root.join(name)
            if not version.is_file(output.MANIFEST) or not _ours(version, config):
                continue  # not a complete version of this Dataset: not ours to judge
            version.remove()
            deleted.append(name)
            LOG.info("deleted version %s (%s): no longer kept", name[:12], version.uri)
    except runtime.WorkloadError as exc:
        LOG.warning("retention stopped, the next preparation tries again: %s", exc.message)
    if deleted:
        LOG.info("retention kept %d version(s), deleted %d", len(keep), len(deleted))
    return sorted(deleted)
