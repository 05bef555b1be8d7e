"""``python -m mlops_workloads.evaluate``: run the evaluation under the runtime contract.

Config: ``EvaluateConfig`` (``mlops_operator.api.retrain``) from MLOPS_CONFIG_FILE / MLOPS_CONFIG;
the result goes to the termination message (or ``$MLOPS_RESULT_PATH``). Failures a retry cannot
fix (a bad config, a missing or untrusted model, a Dataset version without rows to score, a
model that cannot score them: ``PERMANENT_REASONS``) exit with ``PERMANENT_EXIT_CODE`` (3), so
the Job's podFailurePolicy fails it at once; anything else (an unreachable store) exits 1 and
is retried.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from mlops_operator.api import retrain, workload
from mlops_workloads import runtime
from mlops_workloads.evaluate import run

PERMANENT_REASONS = frozenset(
    {
        "InvalidConfig",
        "MissingConfig",
        "NothingToEvaluate",
        "EvaluationFailed",
        "TaskMismatch",
        "ModelNotFound",
        "InvalidModel",
        "InvalidSchema",
        "UntrustedModel",
        "InvalidArtifact",
        "LibraryMissing",
        "DatasetNotFound",
        "DatasetIncomplete",
        "DatasetEmpty",
        "SchemaMismatch",
        "SourceUnreadable",
    }
)
"""Failure reasons of the evaluation workload that exit with ``PERMANENT_EXIT_CODE``."""


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    failure: dict[str, str] = {}

    def evaluate() -> dict[str, Any]:
        try:
            return run.evaluate(runtime.load_config(retrain.EvaluateConfig))
        except runtime.WorkloadError as exc:
            failure["reason"] = exc.reason
            raise

    code = runtime.main_wrapper(evaluate)
    return workload.exit_code(code, failure.get("reason"), permanent=PERMANENT_REASONS)


if __name__ == "__main__":
    sys.exit(main())
