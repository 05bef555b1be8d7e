"""The Dataset's prepare workload: ``python -m mlops_workloads.prepare``.

Collects the sources, validates them against the schema, cleans, splits, fits the
preprocessor on the train split and writes an immutable version directory named by its
content digest (see the shared data contract in ARCHITECTURE.md). The modules follow the
steps: ``sources`` → ``validate`` → ``clean`` → ``split`` → ``features`` → ``digest`` /
``stats`` → ``output``; ``pipeline.prepare`` runs them in order.
"""

PERMANENT_EXIT_CODE = 3
"""Exit code of a failure that retrying cannot fix (the Job's podFailurePolicy fails at once)."""

PERMANENT_REASONS = frozenset(
    {
        "ChecksumMismatch",
        "SchemaMismatch",
        "SchemaViolation",
        "EmptyAfterCleaning",
        "SplitTooSmall",
        "NoFeatures",
        "InvalidConfig",
        "MissingConfig",
    }
)
