"""The Dataset's prepare workload: ``python -m mlops_workloads.prepare``.

Collects the sources, validates them against the schema, cleans, splits, fits the
preprocessor on the train split and writes an immutable version directory named by its
content digest (see the shared data contract in ARCHITECTURE.md). The modules follow the
steps: ``sources`` → ``validate`` → ``clean`` → ``split`` → ``features`` → ``digest`` /
``stats`` → ``output``; ``pipeline.prepare`` runs them in order. Which failures are permanent
(exit code 3, not retried) is part of the operator contract:
``mlops_operator.api.workload.PREPARE_PERMANENT_REASONS``.
"""
