"""The prepare workload end to end: load → validate → clean → split → fit → digest → write.

``prepare(config)`` is what the Job's container runs and what the tests and the benchmark
call in-process; it returns the summary that becomes the termination message (≤ 4 KiB) and,
from there, the Dataset's status. The full report goes to ``report.json`` in the version.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
import time
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_workloads import storage as storage_mod
from mlops_workloads.prepare import clean as clean_mod
from mlops_workloads.prepare import digest as digest_mod
from mlops_workloads.prepare import documents as documents_mod
from mlops_workloads.prepare import features as features_mod
from mlops_workloads.prepare import output, sources, stats
from mlops_workloads.prepare import retention as retention_mod
from mlops_workloads.prepare import split as split_mod
from mlops_workloads.prepare import validate as validate_mod

LOG = logging.getLogger("mlops_workloads.prepare")


def _step(name: str, started: tuple[float, float]) -> tuple[float, float]:
    """Log a step's wall and CPU time (the pod log shows where the time goes)."""
    now = (time.perf_counter(), time.process_time())
    LOG.info("%s done in %.2fs (%.2fs CPU)", name, now[0] - started[0], now[1] - started[1])
    return now


def prepare(config: api.PrepareConfig, *, scratch_dir: str | None = None) -> dict[str, Any]:
    """Prepare one version of the Dataset and return its summary."""
    # Files too large to load go through the streaming prepare (same steps, same summary); it
    # reuses this module's helpers, hence the import here rather than at the top.
    from mlops_workloads.prepare import stream

    if stream.should_stream(config):
        return stream.prepare(config, scratch_dir=scratch_dir)
    begun = time.perf_counter()
    clock = (begun, time.process_time())
    spec = config.spec
    storage = common.StorageLocation.parse(spec.storage)
    with tempfile.TemporaryDirectory(prefix="mlops-prepare-", dir=scratch_dir) as scratch:
        loaded = sources.load(config, scratch=pathlib.Path(scratch))
    rows_in = len(loaded.frame)
    source_rows = loaded.rows_per_source
    source_notes = list(loaded.warnings)  # e.g. a feedback source that adds no rows yet
    clock = _step(f"load ({rows_in} rows)", clock)

    validated = validate_mod.validate(loaded.frame, spec.data_schema, task_hint=loaded.task_hint)
    del loaded
    clock = _step("validate", clock)
    cleaned = clean_mod.clean(validated, spec)
    frame = cleaned.frame
    validated.frame = frame  # the raw typed frame is no longer needed
    clock = _step("clean", clock)

    task, target, features = validated.task, validated.target, validated.features
    columns = [*features, target]
    balance = stats.class_balance(frame[target.name]) if task == "classification" else []
    notes = [*source_notes, *validated.warnings]
    notes += stats.warnings_for(
        frame,
        features=features,
        target=target,
        task=task,
        balance=balance,
        missing=validated.missing,
        rows_in=rows_in,
    )
    stratify = spec.split.stratify if spec.split.stratify is not None else task == "classification"
    if stratify and task == "regression":
        notes.append("spec.split.stratify is ignored for a regression target")
        stratify = False
    fractions = (spec.split.train, spec.split.validation, spec.split.test)
    splits = split_mod.split(
        frame[[c.name for c in columns]],
        target=target.name,
        stratify=stratify,
        fractions=fractions,
        seed=spec.split.seed,
    )
    del frame
    clock = _step("split", clock)

    digest = digest_mod.compute(splits, columns=columns, preparation=spec.preparation())
    clock = _step("digest", clock)
    fitted = features_mod.fit(splits["train"], columns=features, target=target.name, task=task, spec=spec)
    notes += fitted.warnings
    if task == "classification" and not stratify:
        seen = {stats.to_json_scalar(v) for v in splits["train"][target.name].unique()}
        absent = {c for c, _ in balance} - seen
        if absent:
            notes.append(f"classes {sorted(map(str, absent))[:5]} have no rows in the train split; stratify")
    clock = _step("fit preprocessor", clock)

    version = storage.join(digest)
    outcome = documents_mod.Outcome(
        config=config,
        digest=digest,
        version_uri=version.uri(),
        rows={
            "input": rows_in,
            "output": sum(len(s) for s in splits.values()),
            "dropped": cleaned.rows_dropped,
            **{name: len(s) for name, s in splits.items()},
        },
        split_rows={name: len(s) for name, s in splits.items()},
        dropped=cleaned.dropped,
        violations=validated.violations,
        missing=validated.missing,
        balance=balance,
        notes=notes,
        features=features,
        target=target,
        task=task,
        source_rows=source_rows,
        feature_names_out=fitted.feature_names_out,
        preparation=spec.preparation(),
    )
    documents = documents_mod.documents(
        outcome,
        values_of=lambda _column: splits["train"],
        baseline=stats.baseline(splits["train"], features=features, target=target, task=task),
    )
    root = storage_mod.open_store(
        spec.storage, connection=spec.s3, pvc_root=config.pvc_root, secrets_root=config.secrets_root
    )

    def fill(folder: pathlib.Path) -> None:
        output.fill_version(folder, splits=splits, preprocessor=fitted.preprocessor, documents=documents)

    with tempfile.TemporaryDirectory(prefix="mlops-publish-", dir=scratch_dir) as publish_scratch:
        written = output.publish(root, digest, fill=fill, scratch=pathlib.Path(publish_scratch))
    clock = _step("write" if written else "write (version already present)", clock)
    deleted = retention_mod.prune(config, digest)  # the versions the Dataset no longer lists
    _step(f"retention ({len(deleted)} deleted)", clock)

    return documents_mod.summary(
        outcome, written=written, deleted=deleted, seconds=time.perf_counter() - begun
    )
