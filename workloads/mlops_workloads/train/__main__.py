"""Entry point of the training container.

Failures that a retry cannot fix (bad parameters, a task mismatch, a missing or untrusted
Dataset file: ``api.workload.TRAIN_PERMANENT_REASONS``) exit with ``PERMANENT_EXIT_CODE`` (3),
which the Job's podFailurePolicy turns into an immediate failure instead of ``backoffLimit``
identical retries; anything else (a lost node, a full disk) exits 1 and is retried.
"""

from __future__ import annotations

import sys
from typing import Any

from mlops_operator.api import trainingjob, workload
from mlops_workloads import runtime
from mlops_workloads.train import run


def main() -> int:
    failure: dict[str, str] = {}

    def train() -> dict[str, Any]:
        try:
            return run.train(runtime.load_config(trainingjob.TrainConfig))
        except runtime.WorkloadError as exc:
            failure["reason"] = exc.reason
            raise

    code = runtime.main_wrapper(train)
    return workload.exit_code(code, failure.get("reason"), permanent=workload.TRAIN_PERMANENT_REASONS)


if __name__ == "__main__":
    sys.exit(main())
