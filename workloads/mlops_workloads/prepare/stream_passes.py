"""The three passes of the streaming prepare over a Dataset's file sources.

Each pass re-opens the files and reads them batch by batch (``Input.batches``), so what it
keeps is bounded by what it returns: ``profile`` a raw sample, ``clean`` one bit per input
row and one class code per kept row (plus the 16-byte row hashes while it runs), ``write``
the two samples and a row group per split. ``stream`` orders them and writes the documents.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlops_operator.api import dataset as api
from mlops_workloads import runtime
from mlops_workloads.prepare import output, stats
from mlops_workloads.prepare import split as split_mod
from mlops_workloads.prepare import stream_ops as ops
from mlops_workloads.prepare import validate as validate_mod

# pandas' default na_values, which pd.read_csv(engine="pyarrow") hands to pyarrow as null_values.
CSV_NULLS = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"),
    *("<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)
PARQUET_BUFFER = 1 << 20  # bytes read at a time from a Parquet column chunk
PURPOSE_PROFILE = 1  # the seeded key of the raw sample (stream has the others)
SCHEMA_CATEGORIES_MAX = 1000  # as pipeline.SCHEMA_CATEGORIES_MAX
Int32Array = np.ndarray[Any, np.dtype[np.int32]]
Int8Array = np.ndarray[Any, np.dtype[np.int8]]


@dataclasses.dataclass
class Input:
    """One source as the passes read it."""

    where: str
    dataset: ds.Dataset
    csv: bool
    raw_names: dict[str, str]  # column name (stripped) → name in the files
    csv_types: dict[str, pa.DataType] = dataclasses.field(default_factory=dict)

    def batches(self, columns: list[str], *, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The source's rows in file order, ``columns`` only, at most ``batch_rows`` at a time."""
        raw = [self.raw_names[c] for c in columns]
        try:
            if self.csv:
                scanner = self.dataset.scanner(
                    columns=raw,
                    batch_size=batch_rows,
                    use_threads=True,
                    batch_readahead=2,
                    fragment_readahead=1,
                )
                for batch in scanner.to_batches():
                    if batch.num_rows:
                        yield batch.rename_columns(columns)
                return
            yield from self._parquet(raw, columns, batch_rows=batch_rows)
        except (OSError, pa.ArrowException) as exc:
            raise runtime.WorkloadError(
                "SourceUnreadable", f"{self.where}: cannot read: {type(exc).__name__}: {exc}"[:900]
            ) from exc

    def _parquet(self, raw: list[str], columns: list[str], *, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """File by file with ``ParquetFile.iter_batches``, which decodes a row group page by page.

        The dataset scanner decodes whole row groups (and reads ahead several): a file written
        with one huge row group would have to fit in memory. Every file's batches are cast to
        the first file's column types, as a dataset scan would.
        """
        expected = pa.schema([self.dataset.schema.field(name) for name in raw])
        filesystem = self.dataset.filesystem
        for path in self.dataset.files:
            with filesystem.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle, pre_buffer=False, buffer_size=PARQUET_BUFFER)
                for read in parquet.iter_batches(batch_size=batch_rows, columns=raw, use_threads=True):
                    if not read.num_rows:
                        continue
                    same = read.schema.equals(expected, check_metadata=False)
                    yield (read if same else read.cast(expected)).rename_columns(columns)

    def frame(self, batch: pa.RecordBatch) -> pd.DataFrame:
        """A batch as pandas would read it: CSV text cast to the types inferred on the sample."""
        if self.csv and self.csv_types:
            arrays = []
            for name, text in zip(batch.schema.names, batch.columns, strict=True):
                kind = self.csv_types.get(name)
                array = text
                if kind is not None and not (pa.types.is_string(kind) or pa.types.is_null(kind)):
                    try:
                        array = pc.cast(text, kind)
                    except pa.ArrowException:
                        pass  # a value of another type in this batch: coerce reads the text
                arrays.append(array)
            batch = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
        frame: pd.DataFrame = batch.to_pandas()
        return frame


# ---------------------------------------------------------------------------------------------
# Pass 1: profile (rows, missing values, the raw sample the types are inferred on)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Profile:
    rows: list[int]
    sample: pd.DataFrame
    sampled: bool  # the sample left rows out


def profile(inputs: list[Input], columns: list[str], *, scale: api.Scale, seed: int) -> Profile:
    k = scale.sample_rows
    key = ops.seed_word(seed, PURPOSE_PROFILE)
    pieces: list[tuple[int, ops.U64Array, pa.Table]] = []
    held, offset = 0, 0
    threshold = np.uint64(np.iinfo(np.uint64).max)
    rows: list[int] = []
    nulls: list[dict[str, int]] = []
    for index, inp in enumerate(inputs):
        count, missing = 0, dict.fromkeys(columns, 0)
        for batch in inp.batches(columns, batch_rows=scale.batch_rows):
            keys = ops.index_keys(offset, batch.num_rows, key=key)
            for name, array in zip(columns, batch.columns, strict=True):
                missing[name] += array.null_count
            take = np.flatnonzero(keys <= threshold)
            if len(take):
                pieces.append((index, keys[take], pa.Table.from_batches([batch.take(pa.array(take))])))
                held += len(take)
            if held >= 2 * k:
                pieces, threshold = _prune(pieces, k)
                held = k
            offset += batch.num_rows
            count += batch.num_rows
        rows.append(count)
        nulls.append(missing)
    if held > k:
        pieces, threshold = _prune(pieces, k)
    frames = [
        _sample_frame(inp, [t for i, _, t in pieces if i == index], columns=columns, nulls=nulls[index])
        for index, inp in enumerate(inputs)
    ]
    sample = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return Profile(rows=rows, sample=sample, sampled=sum(rows) > k)


def _prune(
    pieces: list[tuple[int, ops.U64Array, pa.Table]], k: int
) -> tuple[list[tuple[int, ops.U64Array, pa.Table]], np.uint64]:
    """Keep the rows with the ``k`` smallest keys (keys are distinct: positions are)."""
    threshold = np.partition(np.concatenate([keys for _, keys, _ in pieces]), k - 1)[k - 1]
    kept = []
    for index, keys, table in pieces:
        take = np.flatnonzero(keys <= threshold)
        if len(take):
            kept.append((index, keys[take], table.take(pa.array(take))))
    return kept, np.uint64(threshold)


def _sample_frame(
    inp: Input, tables: list[pa.Table], *, columns: list[str], nulls: dict[str, int]
) -> pd.DataFrame:
    """One source's sampled rows with the dtypes a whole-file read gives its columns.

    CSV text goes through pyarrow's CSV reader, as ``pd.read_csv(engine="pyarrow")`` reads
    the whole file, and the types found become the source's per-batch types. An integer
    column with a missing value anywhere in the source is float64 in a whole-file read, so
    it is here, even when the sample happens to hold no gap.
    """
    schema = pa.schema([(c, inp.dataset.schema.field(inp.raw_names[c]).type) for c in columns])
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if inp.csv:
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        options = pacsv.ConvertOptions(null_values=list(CSV_NULLS), strings_can_be_null=True)
        table = pacsv.read_csv(io.BytesIO(buffer.getvalue()), convert_options=options)
        inp.csv_types = {f.name: f.type for f in table.schema}
    frame: pd.DataFrame = table.to_pandas()
    for field in table.schema:
        integral = pa.types.is_integer(field.type) and frame[field.name].dtype.kind in "iu"
        if integral and nulls.get(field.name, 0):
            frame[field.name] = frame[field.name].astype("float64")
    return frame


# ---------------------------------------------------------------------------------------------
# Pass 2: clean
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cleaned:
    keep: ops.BoolArray  # per input row
    codes: Int32Array  # per kept row: the class, numbered in first-seen order
    labels: dict[Any, int]  # class label → code
    dropped: dict[str, int]
    violations: dict[str, dict[str, int]]
    examples: dict[str, list[str]]
    missing: dict[str, int]
    violating: int
    nullable: set[str]  # int/bool columns with a missing value in a kept row

    @property
    def rows(self) -> int:
        return len(self.codes)


def clean(
    inputs: list[Input],
    *,
    columns: list[validate_mod.Column],
    target: str,
    spec: api.DatasetSpec,
    drop_columns: list[str],
    classes: bool,
) -> Cleaned:
    """The cleaning pass; ``classes``: number the target's classes (classification only)."""
    names = [c.name for c in columns]
    fail = spec.data_schema.on_violation == "fail"
    seen = ops.SeenRows()
    keeps: list[ops.BoolArray] = []
    codes: list[Int32Array] = []
    labels: dict[Any, int] = {}
    dropped = {"violations": 0, "missingTarget": 0, "duplicates": 0, "missingValues": 0}
    violations: dict[str, dict[str, int]] = {}
    examples: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    nullable: set[str] = set()
    violating = 0
    for inp in inputs:
        for batch in inp.batches(names, batch_rows=spec.scale.batch_rows):
            needed = {n: ops.EXAMPLES - len(examples.get(n, [])) for n in names}
            typed = ops.type_batch(inp.frame(batch), columns, examples_needed=needed)
            for name, kinds in typed.violations.items():
                merged = violations.setdefault(name, {})
                for kind, count in kinds.items():
                    merged[kind] = merged.get(kind, 0) + count
            for name, values in typed.examples.items():
                examples.setdefault(name, []).extend(values)
            for name, count in typed.missing.items():
                missing[name] = missing.get(name, 0) + count
            violating += int(typed.violating.sum())
            if fail and violating:
                continue  # the Dataset fails: only the counts of the message are still needed
            frame = typed.frame
            keep = ~typed.violating
            no_target = keep & frame[target].isna().to_numpy()
            keep &= ~no_target
            dropped["missingTarget"] += int(no_target.sum())
            if spec.cleaning.drop_duplicates:
                rows = np.flatnonzero(keep)
                h1, h2 = ops.row_hashes(frame.iloc[rows])
                fresh = seen.admit(h1, h2)
                keep[rows[~fresh]] = False
                dropped["duplicates"] += int((~fresh).sum())
            if drop_columns:
                rows = np.flatnonzero(keep)
                incomplete = frame.iloc[rows][drop_columns].isna().any(axis=1).to_numpy()
                keep[rows[incomplete]] = False
                dropped["missingValues"] += int(incomplete.sum())
            kept = frame.loc[keep]
            gaps = [c.name for c in columns if c.dtype in ("int", "bool") and c.name not in nullable]
            nullable.update(name for name in gaps if kept[name].isna().any())
            if classes and len(kept):
                batch_codes, uniques = pd.factorize(kept[target])
                lookup = np.array(
                    [labels.setdefault(stats.to_json_scalar(u), len(labels)) for u in uniques], dtype=np.int32
                )
                codes.append(lookup[batch_codes])
            else:
                codes.append(np.zeros(len(kept), dtype=np.int32))
            keeps.append(keep)
    dropped["violations"] = violating
    return Cleaned(
        keep=np.concatenate(keeps) if keeps else np.zeros(0, dtype=bool),
        codes=np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32),
        labels=labels,
        dropped=dropped,
        violations=violations,
        examples=examples,
        missing=missing,
        violating=violating,
        nullable=nullable,
    )


# ---------------------------------------------------------------------------------------------
# Pass 3: write the splits, collect the samples and the exact train statistics
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Written:
    files: dict[str, pathlib.Path]
    rows: dict[str, int]
    fit_sample: pd.DataFrame
    check_sample: pd.DataFrame
    moments: dict[str, ops.Moments]  # numeric columns of the train split (target included)
    missing_train: dict[str, int]
    categories: dict[str, ops.SmallestDistinct]
    constancy: dict[str, ops.Constancy]  # features, over every kept row


def write(
    inputs: list[Input],
    writer_parent: pathlib.Path,
    *,
    columns: list[validate_mod.Column],
    cleaned: Cleaned,
    assignment: Int8Array,
    fit_mask: ops.BoolArray,
    check_mask: ops.BoolArray,
    spec: api.DatasetSpec,
    stack: list[output.StreamingSplits],
) -> Written:
    names = [c.name for c in columns]
    features = columns[:-1]
    moments = {c.name: ops.Moments() for c in columns if c.dtype in ("float", "int")}
    missing_train = {c.name: 0 for c in columns}
    categories = {
        c.name: ops.SmallestDistinct(limit=SCHEMA_CATEGORIES_MAX) for c in features if c.dtype == "category"
    }
    constancy = {c.name: ops.Constancy() for c in features}
    fit_parts: list[pd.DataFrame] = []
    check_parts: list[pd.DataFrame] = []
    writer: output.StreamingSplits | None = None
    schema: pa.Schema | None = None
    at_input, at_kept = 0, 0
    for inp in inputs:
        for batch in inp.batches(names, batch_rows=spec.scale.batch_rows):
            keep = cleaned.keep[at_input : at_input + batch.num_rows]
            at_input += batch.num_rows
            if not keep.any():
                continue
            typed = ops.type_batch(inp.frame(batch), columns, examples_needed={})
            kept = ops.final_dtypes(typed.frame.loc[keep].reset_index(drop=True), nullable=cleaned.nullable)
            where = assignment[at_kept : at_kept + len(kept)]
            fits, checks = fit_mask[at_kept : at_kept + len(kept)], check_mask[at_kept : at_kept + len(kept)]
            at_kept += len(kept)
            if writer is None:
                schema = pa.Schema.from_pandas(kept.iloc[:0], preserve_index=False)
                writer = output.StreamingSplits(
                    writer_parent,
                    schema=schema,
                    splits=split_mod.SPLITS,
                    row_group=output.row_group_rows(len(names)),
                )
                stack.append(writer)
            for index, name in enumerate(split_mod.SPLITS):
                part = kept.loc[where == index]
                writer.write(name, pa.Table.from_pandas(part, schema=schema, preserve_index=False))
            train = kept.loc[where == 0]
            for name, moment in moments.items():
                moment.add(train[name])
            for name in missing_train:
                missing_train[name] += int(train[name].isna().sum())
            for name, distinct in categories.items():
                distinct.add(train[name])
            for name, constant in constancy.items():
                constant.add(kept[name])
            if fits.any():
                fit_parts.append(kept.loc[fits])
            if checks.any():
                check_parts.append(kept.loc[checks])
    assert writer is not None  # there are kept rows: EmptyAfterCleaning was checked
    files = writer.close_splits()

    def joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(parts, ignore_index=True) if len(parts) != 1 else parts[0].reset_index(drop=True)

    return Written(
        files=files,
        rows=dict(writer.rows),
        fit_sample=joined(fit_parts) if fit_parts else kept.iloc[:0],
        check_sample=joined(check_parts) if check_parts else kept.iloc[:0],
        moments=moments,
        missing_train=missing_train,
        categories=categories,
        constancy=constancy,
    )
