"""Read the Dataset's sources into one DataFrame.

Every source kind ends up as a plain DataFrame with a header row's column names; several
sources are concatenated in order and must have the same columns. Anything that keeps a
source from being read (a missing file, a broken CSV, an HTTP error) is ``SourceUnreadable``
naming the source by its index, and a download whose bytes do not match the declared
SHA-256 is ``ChecksumMismatch``: a pinned checksum is the only lineage an HTTP source has.

A feedback source (``prepare.feedback``: a ModelDeployment's captured and labelled rows) has
the model's input features and the target, so a column the other sources carry but the model
never saw (an identifier) is missing from it: when ``schema.exclude`` removes that column
right after loading anyway, the feedback rows get it empty; otherwise it is
``SchemaMismatch``, naming the column.

Such a Dataset is "the base data plus what people have labelled so far", so a feedback source
with no rows yet (nothing captured, or nothing confirmed or corrected) adds no rows beside other
kinds of sources: it is left out of the concatenation (an empty frame would only change the
dtypes), its count stays 0, its task is no hint, and a warning says why. The rows are exactly
the other sources', so the digest (which covers the spec too) is the same whatever made the
source empty. The features its capture files name, when there are some, are still checked
against the other sources, so that a mismatch shows before the first label. A Dataset of
feedback sources only has nothing else to prepare: there it is ``FeedbackEmpty``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sklearn import datasets as sk_datasets

from mlops_operator.api import dataset as api
from mlops_operator.api import dataset_sources as api_sources
from mlops_workloads import runtime, storage
from mlops_workloads.prepare import feedback, sql

CHUNK = 1 << 20
LOG = logging.getLogger("mlops_workloads.prepare")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The rows of all sources and what the sources themselves say about the task."""

    frame: pd.DataFrame
    task_hint: api.Task | None
    rows_per_source: tuple[int, ...]
    warnings: tuple[str, ...] = ()  # for the report and status.warnings (an empty feedback source)


@dataclasses.dataclass(frozen=True)
class _Read:
    """One source's rows, its task hint, and why it has no rows where it may have none."""

    frame: pd.DataFrame
    hint: api.Task | None
    empty: str | None = None


def label(index: int, source: api.Source) -> str:
    """How messages name a source: ``sources[1] (http https://...)``."""
    kind = source.kind()
    detail = ""
    if source.sklearn is not None:
        detail = source.sklearn.name
    elif source.synthetic is not None:
        detail = f"{source.synthetic.task} x{source.synthetic.samples}"
    elif source.file is not None:
        detail = source.file.uri
    elif source.config_map is not None:
        detail = f"{source.config_map.name}/{source.config_map.key}"
    elif source.http is not None:
        detail = source.http.url
    elif source.sql is not None:
        query = " ".join(source.sql.query.split())
        detail = f"{source.sql.connection_secret_ref.name}: {query[:60]}{'...' if len(query) > 60 else ''}"
    elif source.feedback is not None:
        detail = f"ModelDeployment {source.feedback.model_deployment}"
    return f"sources[{index}] ({'configMap' if kind == 'config_map' else kind} {detail})"


def load(config: api.PrepareConfig, *, scratch: pathlib.Path) -> Loaded:
    """Read every source and concatenate them (same columns required); a feedback source with
    no rows beside other kinds of sources is left out, with a warning (module docstring)."""
    sources_ = config.spec.sources
    merged = any(s.feedback is None for s in sources_)
    reads = [
        _load_one(index, source, config=config, scratch=scratch, allow_empty=merged)
        for index, source in enumerate(sources_)
    ]
    empty = {index for index, read in enumerate(reads) if read.empty is not None}
    notes = tuple(read.empty for read in reads if read.empty is not None)
    for note in notes:
        LOG.warning("%s", note)
    frames = _align_feedback([read.frame for read in reads], config, empty=empty)
    kept = [index for index in range(len(frames)) if index not in empty]  # merged: a non-feedback one
    reference = kept[0]
    first = list(frames[reference].columns)
    for index in kept[1:]:
        frame = frames[index]
        if set(frame.columns) != set(first):
            missing = sorted(set(first) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first))
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{label(index, sources_[index])} does not have the columns of "
                f"{label(reference, sources_[reference])}: missing {missing}, extra {extra}; concatenated "
                "sources must have the same columns",
            )
    hints = {reads[index].hint for index in kept if reads[index].hint is not None}
    rows = tuple(0 if index in empty else len(frame) for index, frame in enumerate(frames))
    chosen = [frames[index] for index in kept]
    combined = chosen[0] if len(chosen) == 1 else pd.concat([f[first] for f in chosen], ignore_index=True)
    return Loaded(
        frame=combined,
        task_hint=hints.pop() if len(hints) == 1 else None,
        rows_per_source=rows,
        warnings=notes,
    )


def _align_feedback(
    frames: list[pd.DataFrame], config: api.PrepareConfig, *, empty: set[int]
) -> list[pd.DataFrame]:
    """Feedback frames with the columns of the first other source: those they lack are added
    empty when ``schema.exclude`` drops them after loading, else ``SchemaMismatch``; the
    columns come in that source's order (the order the features keep). The ``empty`` ones (no
    rows, left out of the concatenation) are only checked, and only when their capture files
    named features (with nothing captured, the frame has the target alone)."""
    sources_ = config.spec.sources
    reference = next((i for i, s in enumerate(sources_) if s.feedback is None), None)
    if reference is None:
        return frames
    columns = list(frames[reference].columns)
    excluded = set(config.spec.data_schema.exclude)
    out = list(frames)
    other = label(reference, sources_[reference])
    for index, (frame, source) in enumerate(zip(frames, sources_, strict=True)):
        if source.feedback is None:
            continue
        if index in empty and not [c for c in frame.columns if c != config.spec.data_schema.target]:
            continue
        lacking = [c for c in columns if c not in frame.columns]
        unfit = [c for c in lacking if c not in excluded]
        if unfit:
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{label(index, source)} has no columns {unfit[:20]} of {other}: the captured rows hold "
                "the model's input features and the target only; add the columns the model does not "
                "read to spec.schema.exclude",
            )
        extra = [c for c in frame.columns if c not in columns]
        if extra:
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{label(index, source)} has features {extra[:20]} that {other} lacks: the model was "
                "trained on other columns than this Dataset's",
            )
        if index in empty:
            continue
        filler = {c: pd.Series([None] * len(frame), index=frame.index, dtype=object) for c in lacking}
        out[index] = frame.assign(**filler)[columns]
    return out


def _load_one(
    index: int, source: api.Source, *, config: api.PrepareConfig, scratch: pathlib.Path, allow_empty: bool
) -> _Read:
    where = label(index, source)
    if source.sklearn is not None:
        return _Read(_sklearn(source.sklearn), source.known_task())
    if source.synthetic is not None:
        return _Read(_synthetic(source.synthetic, where=where), source.synthetic.task)
    if source.file is not None:
        return _Read(read_file_source(source.file, config=config, where=where), None)
    if source.config_map is not None:
        path = pathlib.Path(config.config_map_root) / str(index) / source.config_map.key
        if not path.is_file():
            raise runtime.WorkloadError(
                "SourceUnreadable",
                f"{where}: ConfigMap {source.config_map.name!r} in namespace {config.namespace!r} does not "
                f"exist or has no key {source.config_map.key!r}; create it or fix the name and key",
            )
        return _Read(read_table(path, fmt="csv", where=where), None)
    if source.http is not None:
        path = download(source.http, scratch=scratch, index=index, where=where)
        fmt = source.http.format or infer_format(urllib.parse.urlparse(source.http.url).path)
        return _Read(read_table(path, fmt=fmt, where=where), None)
    if source.sql is not None:
        return _Read(sql.read(source.sql, index=index, where=where, config=config), None)
    if source.feedback is not None:
        read = feedback.read(
            source.feedback, index=index, where=where, config=config, allow_empty=allow_empty
        )
        return _Read(read.frame, read.task, read.empty)
    raise runtime.WorkloadError("InvalidConfig", f"{where} sets no source kind")


def _sklearn(source: api_sources.SklearnSource) -> pd.DataFrame:
    loader: Any = {
        "iris": sk_datasets.load_iris,
        "wine": sk_datasets.load_wine,
        "breast_cancer": sk_datasets.load_breast_cancer,
        "digits": sk_datasets.load_digits,
        "diabetes": sk_datasets.load_diabetes,
    }[source.name]
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    return frame


def _synthetic(source: api_sources.SyntheticSource, *, where: str) -> pd.DataFrame:
    informative = source.informative or source.features
    try:
        if source.task == "classification":
            weights = None
            if source.weights is not None:
                total = float(sum(source.weights))
                if total <= 0:
                    raise ValueError("synthetic.weights must not all be 0")
                weights = [w / total for w in source.weights]
            x, y = sk_datasets.make_classification(
                n_samples=source.samples,
                n_features=source.features,
                n_informative=informative,
                n_redundant=0,
                n_repeated=0,
                n_classes=source.classes,
                n_clusters_per_class=1,
                weights=weights,
                flip_y=source.noise,
                random_state=source.seed,
            )
        else:
            x, y = sk_datasets.make_regression(
                n_samples=source.samples,
                n_features=source.features,
                n_informative=informative,
                noise=source.noise,
                random_state=source.seed,
            )
    except ValueError as exc:
        raise runtime.WorkloadError("InvalidConfig", f"{where}: {exc}") from exc
    width = len(str(source.features - 1))
    frame = pd.DataFrame(np.asarray(x), columns=[f"x{i:0{width}d}" for i in range(source.features)])
    frame["target"] = np.asarray(y)
    return frame


PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv",)


def read_file_source(
    source: api_sources.FileSource, *, config: api.PrepareConfig, where: str
) -> pd.DataFrame:
    """A file source: one file, or every file of its format under a directory or S3 prefix
    (sorted by name, concatenated; they must have the same columns)."""
    store = storage.open_store(
        source.uri, connection=config.spec.s3, pvc_root=config.pvc_root, secrets_root=config.secrets_root
    )
    if not store.remote:
        local = store.local_path()
        if local.is_file() or not local.is_dir():
            return read_table(local, fmt=source.format or infer_format(str(local)), where=where)
    if store.remote and store.is_file():
        return _read_remote(store.fs, store.path, fmt=source.format or infer_format(store.path), where=where)
    suffixes = {"parquet": PARQUET_SUFFIXES, "csv": CSV_SUFFIXES}.get(
        source.format or "", PARQUET_SUFFIXES + CSV_SUFFIXES
    )
    files = store.files(suffixes=suffixes)
    if not files:
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: no {source.format or 'CSV or Parquet'} files at or under {source.uri}; check the URI"
            + (" and the bucket" if store.remote else " and that the volume holds them"),
        )
    frames: list[pd.DataFrame] = []
    for path in files:
        fmt = source.format or infer_format(path)
        frame = (
            _read_remote(store.fs, path, fmt=fmt, where=where)
            if store.remote
            else read_table(pathlib.Path(path), fmt=fmt, where=where)
        )
        if frames and list(frame.columns) != list(frames[0].columns):
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{where}: {path} has columns {list(frame.columns)[:20]}, {files[0]} has "
                f"{list(frames[0].columns)[:20]}; the files under one prefix must have the same columns",
            )
        frames.append(frame)
    LOG.info("%s: read %d files under %s", where, len(files), source.uri)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _read_remote(fs: Any, path: str, *, fmt: api_sources.FileFormat, where: str) -> pd.DataFrame:
    """One object of an object store, read through its pyarrow filesystem."""
    try:
        with fs.open_input_file(path) as handle:
            if fmt == "parquet":
                frame = pq.read_table(handle).to_pandas()
            else:
                frame = pa_csv.read_csv(handle).to_pandas()
    except FileNotFoundError as exc:
        raise runtime.WorkloadError(
            "SourceUnreadable", f"{where}: no object s3://{path}; check the URI and the bucket"
        ) from exc
    except Exception as exc:  # pyarrow raises many types for a broken file or a refused request
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: cannot read s3://{path} as {fmt}: {type(exc).__name__}: {exc}"[:900],
        ) from exc
    return _checked_columns(frame, where=where)


def infer_format(path: str) -> api_sources.FileFormat:
    return "parquet" if path.lower().endswith(PARQUET_SUFFIXES) else "csv"


def read_table(path: pathlib.Path, *, fmt: api_sources.FileFormat, where: str) -> pd.DataFrame:
    """A CSV (header row, comma separated) or Parquet file as a DataFrame."""
    if not path.is_file():
        raise runtime.WorkloadError(
            "SourceUnreadable", f"{where}: no file at {path}; check the URI and that the volume holds it"
        )
    try:
        # pyarrow's CSV reader: multi-threaded, and it reads "", NA, N/A, null, NaN as missing.
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, engine="pyarrow")
    except Exception as exc:  # pandas/pyarrow raise many types for a broken file
        raise runtime.WorkloadError(
            "SourceUnreadable", f"{where}: cannot read {path} as {fmt}: {type(exc).__name__}: {exc}"[:900]
        ) from exc
    return _checked_columns(frame, where=where)


def _checked_columns(frame: pd.DataFrame, *, where: str) -> pd.DataFrame:
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(set(frame.columns)) != len(frame.columns):
        dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        raise runtime.WorkloadError("SchemaMismatch", f"{where}: duplicate column names {dupes}")
    return frame


def download(
    source: api_sources.HttpSource, *, scratch: pathlib.Path, index: int, where: str
) -> pathlib.Path:
    """Fetch ``source.url`` into ``scratch``, hashing as it streams; check the SHA-256 when given."""
    target = scratch / f"source-{index}"
    sha = hashlib.sha256()
    request = urllib.request.Request(source.url, headers={"User-Agent": "mlops-operator-prepare/0.1"})
    try:
        with (
            urllib.request.urlopen(request, timeout=source.timeout_seconds) as response,
            target.open("wb") as out,
        ):
            while chunk := response.read(CHUNK):
                sha.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise runtime.WorkloadError(
            "SourceUnreadable", f"{where}: HTTP {exc.code} {exc.reason}; check the URL"
        ) from exc
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: download failed: {reason}; check the URL and that the pod can reach it",
        ) from exc
    got = sha.hexdigest()
    if source.sha256 and got != source.sha256.lower():
        raise runtime.WorkloadError(
            "ChecksumMismatch",
            f"{where}: downloaded bytes have sha256 {got}, the spec expects {source.sha256.lower()}; "
            "if the file changed on purpose, update the sha256",
        )
    return target
