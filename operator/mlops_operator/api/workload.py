"""The contract between the operator and every workload container, defined once for both sides.

The operator hands a batch workload its config as JSON: a Dataset round's in a ConfigMap, a
TrainingJob run's in its pod's own annotation ``mlops.dev/config`` (no ConfigMap per run),
either mounted as the file ``CONFIG_FILE`` (named by ``$MLOPS_CONFIG_FILE``; the annotation
through a downwardAPI volume, so a trainer reads the same file either way); a retrain
evaluation's, like a person running a workload by hand, in ``$MLOPS_CONFIG`` itself. The
workload answers with one compact JSON object of at most ``RESULT_LIMIT`` bytes at
``TERMINATION_MESSAGE_PATH``, which the kubelet copies into the pod's status, and exits with
``PERMANENT_EXIT_CODE`` when retrying cannot help, so the Job's podFailurePolicy fails at once
instead of running ``backoffLimit`` identical attempts. Users' own training images follow the
same contract.

Both sides import this module (the reconcilers to build pods, ``mlops_workloads.runtime`` and the
entry points to honour them) because the values drifted when each side kept its own copy; it is
pure constants, so the workloads may import it like the other API models.
"""

from __future__ import annotations

CONFIG_FILE_ENV = "MLOPS_CONFIG_FILE"
CONFIG_ENV = "MLOPS_CONFIG"
RESULT_PATH_ENV = "MLOPS_RESULT_PATH"
"""Where to write the result instead of ``TERMINATION_MESSAGE_PATH`` (tests, local runs)."""

CONFIG_DIR = "/etc/mlops/config"
CONFIG_KEY = "config.json"
CONFIG_FILE = f"{CONFIG_DIR}/{CONFIG_KEY}"

TMP_DIR = "/tmp"
"""The only writable scratch directory (an emptyDir: the root filesystem is read-only)."""

SECRETS_DIR = "/var/run/secrets/mlops.dev"
"""Where Secrets are mounted into workload pods: ``s3/<secret>/`` (S3 credentials), ``sources/<i>/``."""

STAGING_DIR = "/tmp/mlops-staging"
"""Where s3:// inputs are downloaded and outputs are written before their upload (inside TMP_DIR)."""

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RESULT_LIMIT = 4096
"""The kubelet keeps at most 4 KiB of a termination message."""

PERMANENT_EXIT_CODE = 3
"""Exit code of a failure that retrying cannot fix; any other non-zero code is retried."""

PREPARE_PERMANENT_REASONS = frozenset(
    {
        "ChecksumMismatch",
        "SchemaMismatch",
        "SchemaViolation",
        "EmptyAfterCleaning",
        "SplitTooSmall",
        "NoFeatures",
        "InvalidConfig",
        "MissingConfig",
        "QueryFailed",
    }
)
"""Failure reasons of the prepare workload that exit with ``PERMANENT_EXIT_CODE`` (data errors)."""

TRAIN_PERMANENT_REASONS = frozenset(
    {
        "InvalidConfig",
        "MissingConfig",
        "InvalidParams",
        "InvalidSpec",
        "TaskMismatch",
        "UnknownEstimator",
        "LibraryMissing",
        "DatasetNotFound",
        "DatasetIncomplete",
        "DatasetEmpty",
        "DatasetInvalid",
        "DatasetDigestMismatch",
        "UntrustedModel",
        "InvalidArtifact",
        "GPUUnavailable",
    }
)
"""Failure reasons of the training workload that exit with ``PERMANENT_EXIT_CODE``."""


def exit_code(code: int, reason: str | None, *, permanent: frozenset[str]) -> int:
    """The process exit code of a run that ended with ``code`` and failure ``reason``:
    ``PERMANENT_EXIT_CODE`` for a failure in ``permanent``, else ``code`` unchanged."""
    if code and reason in permanent:
        return PERMANENT_EXIT_CODE
    return code
