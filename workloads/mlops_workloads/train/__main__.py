"""Entry point of the training container.

Failures that a retry cannot fix (bad parameters, a task mismatch, a missing or untrusted
Dataset file) exit with ``PERMANENT_EXIT_CODE``, which the Job's podFailurePolicy turns into
an immediate failure instead of ``backoffLimit`` identical retries; anything else (a lost
node, a full disk) exits 1 and is retried.
"""

from __future__ import annotations

import sys
from typing import Any

from mlops_operator.api import trainingjob
from mlops_workloads import runtime
from mlops_workloads.train import run

PERMANENT_EXIT_CODE = 3
PERMANENT_REASONS = frozenset(
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
        "UntrustedArtifact",
        "InvalidArtifact",
        "GPUUnavailable",
    }
)


def main() -> int:
    failure: dict[str, str] = {}

    def train() -> dict[str, Any]:
        try:
            return run.train(runtime.load_config(trainingjob.TrainConfig))
        except runtime.WorkloadError as exc:
            failure["reason"] = exc.reason
            raise

    code = runtime.main_wrapper(train)
    if code and failure.get("reason") in PERMANENT_REASONS:
        return PERMANENT_EXIT_CODE
    return code


if __name__ == "__main__":
    sys.exit(main())
