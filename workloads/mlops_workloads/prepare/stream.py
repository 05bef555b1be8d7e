"""The prepare workload for data larger than the pod's memory: the same steps, streamed.

``pipeline.prepare`` hands a Dataset over to :func:`prepare` when every source is a file
(CSV or Parquet, or a directory of them) and the files hold more rows than
``spec.scale.inMemoryRows`` (:func:`should_stream`). The data then goes through pyarrow
record batches three times, each pass re-opening the files, so that memory holds one batch,
the samples and 16 bytes per row, never the table:

1. *profile*: rows and missing values per source, and a uniform sample of raw rows (the
   ``sampleRows`` rows with the smallest seeded key of their position) on which the column
   types and the task are inferred by ``validate.validate`` itself;
2. *clean*: every batch typed and checked exactly as ``validate``/``clean`` do a whole frame
   (violations, rows without a target, exact duplicates by a 128-bit row hash, drop
   imputation); what is kept is a bit per row and the class of each kept row;
3. *write*: the kept rows typed again and written to their split's Parquet file, while
   exact train statistics and the samples (train rows for the preprocessor and baseline,
   all kept rows for the leakage checks) are collected.

The split is ``split.assign``'s result over the kept rows' classes (computed with less
memory by ``stream_ops.assign``), so both paths put the same rows in the same splits, and
the digest is read back from the written files in ``digest.compute``'s canonical form. When
the samples hold every row, a streamed version is byte for byte the in-memory one, digest
included; when the preprocessor had to be fitted on a sample, ``scale.sampleRows`` joins the
digest's preparation spec (see ``api.dataset.Scale``).
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlops_operator.api import dataset as api
from mlops_workloads import runtime
from mlops_workloads import storage as storage_mod
from mlops_workloads.prepare import documents as documents_mod
from mlops_workloads.prepare import features as features_mod
from mlops_workloads.prepare import output, pipeline, sources, stats
from mlops_workloads.prepare import retention as retention_mod
from mlops_workloads.prepare import stream_ops as ops
from mlops_workloads.prepare import stream_passes as passes
from mlops_workloads.prepare import validate as validate_mod

LOG = logging.getLogger("mlops_workloads.prepare")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv",)
CSV_PROBE_BYTES = 1 << 20  # read at a time when counting a CSV file's lines
CSV_BLOCK_BYTES = 8 << 20  # a CSV batch: about 100,000 rows of 20 numbers
# What each seeded key is for: the raw sample, the preprocessor's sample, the leakage sample.
PURPOSE_FIT, PURPOSE_CHECKS = 2, 3  # stream_passes.PURPOSE_PROFILE is 1


# ---------------------------------------------------------------------------------------------
# Which path, and the files of a source
# ---------------------------------------------------------------------------------------------


def _store(source: api.Source, config: api.PrepareConfig) -> storage_mod.Store:
    """Where a file source is: a mounted path, or an object/prefix in S3 (the Dataset's spec.s3)."""
    assert source.file is not None
    return storage_mod.open_store(
        source.file.uri, connection=config.spec.s3, pvc_root=config.pvc_root, secrets_root=config.secrets_root
    )


def _is_dir(store: storage_mod.Store) -> bool:
    """A directory, or an S3 prefix (a URI that is not one object)."""
    return store.local_path().is_dir() if not store.remote else not store.is_file()


def _files(
    store: storage_mod.Store, fmt: api.FileFormat | None, *, where: str
) -> tuple[list[str], api.FileFormat]:
    path = store.uri
    if not _is_dir(store):
        return [store.path], fmt or sources.infer_format(store.path)
    found = store.files()  # sorted; hidden (.*, _*) ones skipped
    parquet = [p for p in found if p.lower().endswith(PARQUET_SUFFIXES)]
    csv = [p for p in found if p.lower().endswith(CSV_SUFFIXES)]
    if fmt is None and parquet and csv:
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: the directory {path} holds both Parquet and CSV files; set file.format to pick one",
        )
    fmt = fmt or ("parquet" if parquet else "csv")
    chosen = parquet if fmt == "parquet" else csv
    if not chosen:
        raise runtime.WorkloadError(
            "SourceUnreadable", f"{where}: the directory {path} holds no {fmt} files; check the URI"
        )
    return chosen, fmt


def file_dataset(source: api.Source, config: api.PrepareConfig, *, where: str | None = None) -> ds.Dataset:
    """The pyarrow dataset of a file source: one file, or every Parquet/CSV file under a directory.

    Files of a directory are taken in sorted path order, hidden ones (``.*``, ``_*``) skipped.
    CSV columns are read as text with pandas' missing-value markers as null: a late value
    that does not fit a type guessed from the first block can never fail the scan, and the
    types are inferred later, on the sample (see :func:`_sample_frame`).
    """
    assert source.file is not None
    where = where or source.file.uri
    store = _store(source, config)
    files, fmt = _files(store, source.file.format, where=where)
    if fmt == "parquet":
        return ds.dataset(files, format="parquet", filesystem=store.fs)
    text = ds.CsvFileFormat(
        convert_options=pacsv.ConvertOptions(null_values=list(passes.CSV_NULLS), strings_can_be_null=True),
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
    )
    names = ds.dataset(files[:1], format=text, filesystem=store.fs).schema.names
    return ds.dataset(
        files, format=text, schema=pa.schema([(n, pa.string()) for n in names]), filesystem=store.fs
    )


def _rows(source: api.Source, config: api.PrepareConfig) -> int | None:
    """Input rows of a file source; None when it streams regardless (a directory).

    Parquet: the footer's count. CSV: the lines after the header, counted a MiB at a time
    (about a second per GiB; a quoted field spanning lines counts twice, which only matters
    for a file within a few rows of the threshold). An estimate from the size would flip a
    file of exactly ``inMemoryRows`` rows to the other path by chance.
    """
    assert source.file is not None
    store = _store(source, config)
    if _is_dir(store):
        return None
    if (source.file.format or sources.infer_format(store.path)) == "parquet":
        with store.fs.open_input_file(store.path) as footer:
            return int(pq.read_metadata(footer).num_rows)
    lines, last = 0, b"\n"
    with store.fs.open_input_stream(store.path) as handle:
        while chunk := handle.read(CSV_PROBE_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)


def should_stream(config: api.PrepareConfig) -> bool:
    """True for file sources with more rows than ``scale.inMemoryRows`` (or a directory among them).

    Anything that keeps the files from being sized (a missing file, a broken footer) leaves
    the decision to the in-memory path, whose messages report it.
    """
    spec = config.spec
    if not all(s.file is not None for s in spec.sources):
        return False
    total = 0
    try:
        for source in spec.sources:
            rows = _rows(source, config)
            if rows is None:
                return True
            total += rows
    except (OSError, ValueError, pa.ArrowException):
        return False
    return total > spec.scale.in_memory_rows


# ---------------------------------------------------------------------------------------------
# The sources as batches
# ---------------------------------------------------------------------------------------------


def _inputs(config: api.PrepareConfig) -> list[passes.Input]:
    inputs: list[passes.Input] = []
    for index, source in enumerate(config.spec.sources):
        where = sources.label(index, source)
        try:
            dataset = file_dataset(source, config, where=where)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise runtime.WorkloadError(
                "SourceUnreadable", f"{where}: cannot read: {type(exc).__name__}: {exc}"[:900]
            ) from exc
        names = {str(n).strip(): str(n) for n in dataset.schema.names}
        if len(names) != len(dataset.schema.names):
            stripped = [str(n).strip() for n in dataset.schema.names]
            dupes = sorted({c for c in stripped if stripped.count(c) > 1})
            raise runtime.WorkloadError("SchemaMismatch", f"{where}: duplicate column names {dupes}")
        fmt = source.file.format if source.file is not None else None
        csv = not isinstance(dataset.format, ds.ParquetFileFormat) if fmt is None else fmt == "csv"
        inputs.append(passes.Input(where=where, dataset=dataset, csv=csv, raw_names=names))
    first = list(inputs[0].raw_names)
    for inp in inputs[1:]:
        if set(inp.raw_names) != set(first):
            missing, extra = sorted(set(first) - set(inp.raw_names)), sorted(set(inp.raw_names) - set(first))
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{inp.where} does not have the columns of {inputs[0].where}: missing "
                f"{missing}, extra {extra}; "
                "concatenated sources must have the same columns",
            )
    return inputs


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------


def _input_warnings(
    sample: validate_mod.Validated,
    *,
    schema: api.DatasetSchema,
    violations: dict[str, dict[str, int]],
) -> list[str]:
    """``validate``'s warnings, with the exact counts of the whole data where it counts values."""
    notes = [w for w in sample.warnings if w.startswith("spec.schema.exclude names ")]
    declared = {c.name for c in schema.columns}
    by_name = {c.name: c for c in [*sample.features, sample.target]}
    for name in sample.frame.columns:  # data order, the target where it stands, as validate goes
        column = by_name[str(name)]
        if column.name in declared:
            continue
        wrong = violations.get(column.name, {}).get("type", 0)
        if column.dtype in ("float", "int") and wrong:
            notes.append(
                f"column {column.name!r} was inferred as {column.dtype}; {wrong} values are not numbers"
            )
        if column.dtype == "string":
            notes += [
                w for w in sample.warnings if w.startswith(f"column {column.name!r} looks like an identifier")
            ]
    return notes


def _baseline(
    written: passes.Written,
    *,
    features: list[validate_mod.Column],
    target: validate_mod.Column,
    task: api.Task,
    train_classes: dict[Any, int],
    sampled: bool,
) -> dict[str, Any]:
    """``stats.baseline`` of the train sample, with exact rows, missing shares and moments."""
    base = stats.baseline(written.fit_sample, features=features, target=target, task=task)
    if not sampled:
        return base
    rows = written.rows["train"]
    base["rows"] = rows
    for column in [*features, target]:
        entry = base["target"] if column is target else base["features"].get(column.name)
        if entry is None:
            continue
        entry["missing"] = written.missing_train[column.name] / rows if rows else 0.0
        moment = written.moments.get(column.name)
        if entry["type"] == "numeric" and moment is not None and moment.count and entry["edges"]:
            entry["edges"][0] = min(entry["edges"][0], moment.low)
            entry["edges"][-1] = max(entry["edges"][-1], moment.high)
            entry.update(mean=moment.mean, std=moment.std, min=entry["edges"][0], max=entry["edges"][-1])
    if task == "classification" and rows:
        pairs = sorted(
            ((str(k), n / rows) for k, n in train_classes.items() if n), key=lambda p: (-p[1], p[0])
        )
        top = dict(pairs[: stats.BASELINE_MAX_CATEGORIES])
        rest = sum(v for _, v in pairs[stats.BASELINE_MAX_CATEGORIES :])
        if rest:
            top[stats.OTHER] = rest
        base["target"]["proportions"] = top
    return base


def prepare(config: api.PrepareConfig, *, scratch_dir: str | None = None) -> dict[str, Any]:
    """Prepare one version of the Dataset from file sources too large to load; returns its summary."""
    begun = time.perf_counter()
    clock = (begun, time.process_time())
    spec = config.spec
    scale, seed = spec.scale, spec.split.seed
    inputs = _inputs(config)
    present = list(inputs[0].raw_names)
    excluded = set(spec.data_schema.exclude)
    names = [n for n in present if n not in excluded]
    profile = passes.profile(inputs, names, scale=scale, seed=seed)
    rows_in = sum(profile.rows)
    clock = pipeline._step(f"profile ({rows_in} rows, streaming)", clock)

    # Types and task from the sample: validate() itself, with the excluded columns still there
    # so that its warnings about them are the in-memory ones.
    sample_raw = profile.sample
    for name in spec.data_schema.exclude:
        if name in present:
            sample_raw[name] = pd.Series(np.full(len(sample_raw), np.nan))
    sample = validate_mod.validate(sample_raw, spec.data_schema, task_hint=None)
    task, target, features = sample.task, sample.target, sample.features
    columns = [*features, target]
    for rule in spec.cleaning.imputation.columns:
        if rule.name not in names or rule.name == target.name:
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"spec.cleaning.imputation.columns names {rule.name!r}, which is not a feature column "
                "of the data",
            )
    features_mod.build(features, spec)  # the preprocessor's errors (no features, mean of text) now
    drop_columns = [c.name for c in features if spec.cleaning.imputation.for_column(c.name)[0] == "drop"]

    cleaned = passes.clean(
        inputs,
        columns=columns,
        target=target.name,
        spec=spec,
        drop_columns=drop_columns,
        classes=task == "classification",
    )
    clock = pipeline._step(f"clean ({cleaned.rows} rows kept)", clock)
    if cleaned.violating and spec.data_schema.on_violation == "fail":
        described = validate_mod.Validated(
            frame=pd.DataFrame(),
            features=features,
            target=target,
            task=task,
            violations=cleaned.violations,
            violating=np.zeros(0, dtype=bool),
            missing=cleaned.missing,
            warnings=[],
            examples=cleaned.examples,
        ).describe_violations()
        raise runtime.WorkloadError(
            "SchemaViolation",
            f"{cleaned.violating} of {rows_in} rows violate the schema: {described}; fix the data or the "
            "declared columns, or set spec.schema.onViolation: drop to remove such rows",
        )
    if cleaned.rows == 0:
        reasons = ", ".join(f"{n} {k}" for k, n in cleaned.dropped.items() if n) or "the sources hold no rows"
        raise runtime.WorkloadError(
            "EmptyAfterCleaning",
            f"no rows are left of {rows_in} after cleaning (dropped: {reasons}); check the sources, "
            "relax the schema, or impute instead of dropping missing values",
        )

    # The split: split.assign's result on the kept rows' classes, numbered as factorize(sort=True) would.
    order = sorted(cleaned.labels, key=lambda v: (str(type(v)), v))
    remap = np.empty(len(order), dtype=np.int32)
    for rank, label in enumerate(order):
        remap[cleaned.labels[label]] = rank
    codes = remap[cleaned.codes] if order else cleaned.codes  # regression: all 0, one "class"
    counts = np.bincount(codes, minlength=len(order))
    balance = (
        sorted(
            ((label, int(counts[rank])) for rank, label in enumerate(order)), key=lambda p: (-p[1], str(p[0]))
        )
        if task == "classification"
        else []
    )
    notes = _input_warnings(sample, schema=spec.data_schema, violations=cleaned.violations)
    stratify = spec.split.stratify if spec.split.stratify is not None else task == "classification"
    if stratify and task == "regression":
        notes.append("spec.split.stratify is ignored for a regression target")
        stratify = False
    fractions = (spec.split.train, spec.split.validation, spec.split.test)
    wanted = sum(1 for f in fractions if f > 0)
    if stratify:
        small = [(str(order[i]), int(n)) for i, n in enumerate(counts) if n < wanted]
        if small:
            shown = ", ".join(f"{name!r} has {n}" for name, n in small[:5])
            raise runtime.WorkloadError(
                "SplitTooSmall",
                f"a stratified split into {wanted} parts needs at least {wanted} rows per class, "
                f"but class {shown} row(s); add rows, remove or merge rare classes, or set "
                "spec.split.stratify: false",
            )
    assignment = ops.assign(codes if stratify else None, size=cleaned.rows, fractions=fractions, seed=seed)
    train_rows = np.flatnonzero(assignment == 0)
    fit_mask = np.zeros(cleaned.rows, dtype=bool)
    fit_keys = ops.index_keys(0, len(train_rows), key=ops.seed_word(seed, PURPOSE_FIT))
    fit_mask[train_rows[ops.smallest(fit_keys, scale.sample_rows)]] = True
    check_keys = ops.index_keys(0, cleaned.rows, key=ops.seed_word(seed, PURPOSE_CHECKS))
    check_mask = ops.smallest(check_keys, scale.sample_rows)
    del fit_keys, check_keys, train_rows
    in_train: list[int] = np.bincount(codes[assignment == 0], minlength=len(order)).tolist() if order else []
    train_classes = {order[c]: n for c, n in enumerate(in_train)}
    clock = pipeline._step("split", clock)

    store = storage_mod.open_store(
        spec.storage, connection=spec.s3, pvc_root=config.pvc_root, secrets_root=config.secrets_root
    )
    with tempfile.TemporaryDirectory(prefix="mlops-prepare-", dir=scratch_dir) as scratch:
        parent = pathlib.Path(scratch) if store.remote else store.local_path()
        stack: list[output.StreamingSplits] = []
        try:
            written = passes.write(
                inputs,
                parent,
                columns=columns,
                cleaned=cleaned,
                assignment=assignment,
                fit_mask=fit_mask,
                check_mask=check_mask,
                spec=spec,
                stack=stack,
            )
            clock = pipeline._step("write splits", clock)
            sampled = written.rows["train"] > len(written.fit_sample)
            preparation = spec.preparation()
            if sampled:
                preparation["scale"] = {"sampleRows": scale.sample_rows}
            digest = ops.digest_files(
                written.files, columns=columns, preparation=preparation, rows=written.rows
            )
            clock = pipeline._step("digest", clock)
            summary = _finish(
                config,
                store,
                stack[0],
                scratch=pathlib.Path(scratch),
                digest=digest,
                preparation=preparation,
                written=written,
                cleaned=cleaned,
                profile=profile,
                features=features,
                target=target,
                task=task,
                notes=notes,
                balance=balance,
                train_classes=train_classes,
                stratify=stratify,
                sampled=sampled,
                clock=clock,
            )
        finally:
            for writer in stack:
                writer.discard()
    summary["seconds"] = round(time.perf_counter() - begun, 3)
    return summary


def _finish(
    config: api.PrepareConfig,
    store: storage_mod.Store,
    writer: output.StreamingSplits,
    *,
    scratch: pathlib.Path,
    digest: str,
    preparation: dict[str, Any],
    written: passes.Written,
    cleaned: passes.Cleaned,
    profile: passes.Profile,
    features: list[validate_mod.Column],
    target: validate_mod.Column,
    task: api.Task,
    notes: list[str],
    balance: list[tuple[Any, int]],
    train_classes: dict[Any, int],
    stratify: bool,
    sampled: bool,
    clock: tuple[float, float],
) -> dict[str, Any]:
    """Fit the preprocessor on the sample, write the documents, publish; the in-memory summary."""
    spec = config.spec
    notes = list(notes)
    checks = stats.warnings_for(
        written.check_sample,
        features=features,
        target=target,
        task=task,
        balance=balance,
        missing=cleaned.missing,
        rows_in=sum(profile.rows),
    )
    # A column constant in the sample but not in the data is not constant.
    varying = {name for name, c in written.constancy.items() if c.varies}
    false = {f"column {name!r} is constant: it carries no information" for name in varying}
    notes += [n for n in checks if n not in false]
    fitted = features_mod.fit(written.fit_sample, columns=features, target=target.name, task=task, spec=spec)
    notes += fitted.warnings
    if task == "classification" and not stratify:
        absent = {label for label, n in train_classes.items() if n == 0}
        if absent:
            notes.append(f"classes {sorted(map(str, absent))[:5]} have no rows in the train split; stratify")
    clock = pipeline._step(f"fit preprocessor ({len(written.fit_sample)} sampled train rows)", clock)

    version = store.join(digest)
    outcome = documents_mod.Outcome(
        config=config,
        digest=digest,
        version_uri=version.uri,
        rows={
            "input": sum(profile.rows),
            "output": sum(written.rows.values()),
            "dropped": sum(cleaned.dropped.values()),
            **written.rows,
        },
        split_rows=dict(written.rows),
        dropped=cleaned.dropped,
        violations=cleaned.violations,
        missing=cleaned.missing,
        balance=balance,
        notes=notes,
        features=features,
        target=target,
        task=task,
        source_rows=profile.rows,
        feature_names_out=fitted.feature_names_out,
        preparation=preparation,
    )
    categories = {name: pd.DataFrame({name: d.values}) for name, d in written.categories.items()}
    documents = documents_mod.documents(
        outcome,
        values_of=lambda c: categories.get(c.name, pd.DataFrame({c.name: []})),
        baseline=_baseline(
            written, features=features, target=target, task=task, train_classes=train_classes, sampled=sampled
        ),
    )

    def fill(folder: pathlib.Path) -> None:
        writer.fill(folder, preprocessor=fitted.preprocessor, documents=documents)

    written_now = output.publish(store, digest, fill=fill, scratch=scratch)
    clock = pipeline._step("publish" if written_now else "publish (version already present)", clock)
    deleted = retention_mod.prune(config, digest)  # as pipeline.prepare: versions no longer listed
    pipeline._step(f"retention ({len(deleted)} deleted)", clock)
    return documents_mod.summary(outcome, written=written_now, deleted=deleted, seconds=0.0)
