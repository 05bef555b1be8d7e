"""``python -m mlops_workloads.prepare``: run the prepare workload under the runtime contract.

Data errors (a wrong checksum, a schema mismatch, ...) exit with ``PERMANENT_EXIT_CODE`` (3) so
that the Job's podFailurePolicy fails the Job at once instead of retrying what cannot
succeed; anything else (an unreachable URL, a lost node) exits 1 and is retried up to the
spec's backoffLimit.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from mlops_operator.api import dataset as api
from mlops_operator.api import workload
from mlops_workloads import runtime
from mlops_workloads.prepare import pipeline


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    failure: dict[str, str] = {}

    def run() -> dict[str, Any]:
        try:
            config = runtime.load_config(api.PrepareConfig)
            return pipeline.prepare(config)
        except runtime.WorkloadError as exc:
            failure["reason"] = exc.reason
            raise

    code = runtime.main_wrapper(run)
    return workload.exit_code(code, failure.get("reason"), permanent=workload.PREPARE_PERMANENT_REASONS)


if __name__ == "__main__":
    sys.exit(main())
