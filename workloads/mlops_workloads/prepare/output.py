"""Writing a version directory: atomically, deterministically, once.

The directory is built under a temporary name next to its final place and renamed into
``<storage>/<digest>/`` in one step, so a reader never sees half a version and a retried
pod never mixes two attempts. Since the name is the content hash, an existing directory
with a manifest already holds exactly this version and is left alone.

Parquet files are byte-identical for identical data: no index, fixed compression, fixed
row-group size, no timestamps (pyarrow writes none), and the column order of the schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import skops.io as sio

from mlops_workloads import runtime, storage

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "row_group_size": 1 << 20,
    "version": "2.6",
    "write_statistics": True,
}
MANIFEST = "manifest.json"


def write_parquet(frame: pd.DataFrame, path: pathlib.Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Dictionary pages pay off for text columns only; on floats the writer tries and gives up.
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, path, use_dictionary=text or False, **PARQUET_OPTIONS)


def write_json(value: Any, path: pathlib.Path) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def fill_version(
    folder: pathlib.Path,
    *,
    splits: dict[str, pd.DataFrame],
    preprocessor: Any,
    documents: dict[str, Any],
) -> None:
    """Write a version's files into ``folder``, the manifest last."""
    for name, frame in splits.items():
        write_parquet(frame, folder / f"{name}.parquet")
    sio.dump(preprocessor, folder / "preprocessor.skops")
    for name, value in documents.items():
        if name != MANIFEST:
            write_json(value, folder / name)
    write_json(documents[MANIFEST], folder / MANIFEST)  # last: its presence marks a complete version


def publish(
    root: storage.Store, digest: str, *, fill: Callable[[pathlib.Path], None], scratch: pathlib.Path
) -> bool:
    """Put version ``digest`` under ``root`` once; returns whether it was written now (not reused).

    Local storage: ``fill`` writes a staging directory beside the final one, renamed into place
    (:func:`write_version`). Object storage has no rename: ``fill`` writes a local scratch
    directory that is uploaded with the manifest last, so a reader that checks the manifest
    first never sees half a version; a retried pod overwrites an incomplete upload.
    """
    if not root.remote:
        _, written = _write_local(root.local_path(), digest, fill=fill)
        return written
    target = root.join(digest)
    if target.is_file(MANIFEST):
        return False
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f"version-{digest[:12]}-", dir=scratch))
    try:
        fill(staging)
        target.upload(staging, marker=MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def write_version(
    root: pathlib.Path,
    digest: str,
    *,
    splits: dict[str, pd.DataFrame],
    preprocessor: Any,
    documents: dict[str, Any],
) -> tuple[pathlib.Path, bool]:
    """Write ``root/<digest>/``; returns (its path, whether it was written now rather than reused)."""

    def fill(folder: pathlib.Path) -> None:
        fill_version(folder, splits=splits, preprocessor=preprocessor, documents=documents)

    return _write_local(root, digest, fill=fill)


def _write_local(
    root: pathlib.Path, digest: str, *, fill: Callable[[pathlib.Path], None]
) -> tuple[pathlib.Path, bool]:
    final = root / digest
    if (final / MANIFEST).is_file():
        return final, False
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    except OSError as exc:
        raise runtime.WorkloadError(
            "StorageUnwritable", f"cannot write under {root}: {exc}; check the volume and its permissions"
        ) from exc
    try:
        os.chmod(staging, 0o755)
        fill(staging)
        if final.exists():  # a leftover without a manifest: an interrupted older attempt
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if (final / MANIFEST).is_file():  # another pod won the race with the same content
            return final, False
        raise runtime.WorkloadError("StorageUnwritable", f"cannot write {final}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, True


# ---------------------------------------------------------------------------------------------
# Streaming: the splits are written as rows arrive, the digest is known only at the end
# ---------------------------------------------------------------------------------------------


def row_group_rows(columns: int, *, budget_bytes: int = 64 << 20) -> int:
    """Rows per row group of a streamed split: a power of two near ``budget_bytes`` of 8-byte values.

    The streaming writer holds up to one row group per split in memory, so the size follows
    the width (a 20-column table gets 262,144 rows, a 2,000-column one 4,096) instead of the
    in-memory writer's fixed 1,048,576. It depends on the column count only, so the file
    layout never depends on the batch size.
    """
    rows = budget_bytes // (8 * max(1, columns))
    return int(min(PARQUET_OPTIONS["row_group_size"], max(4096, 1 << max(0, rows.bit_length() - 1))))


class StreamingSplits:
    """The split files of a version, written as rows stream in, before the digest is known.

    Each split is written through one ``ParquetWriter`` into a staging directory under
    ``parent`` (for local storage the storage root itself, so moving the files into the
    version is a rename), with rows buffered into row groups of ``row_group`` rows, the
    schema's column order and :data:`PARQUET_OPTIONS`. :meth:`close_splits` finishes the
    files so that the digest can be read from them; :meth:`fill` then moves them into the
    folder that :func:`publish` hands out and adds the preprocessor and the documents, the
    manifest last. Leaving the ``with`` block removes the staging directory.
    """

    def __init__(
        self,
        parent: pathlib.Path,
        *,
        schema: pa.Schema,
        splits: tuple[str, ...],
        row_group: int,
    ) -> None:
        self.row_group = row_group
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = pathlib.Path(tempfile.mkdtemp(prefix=".stream-", dir=parent))
        except OSError as exc:
            raise runtime.WorkloadError(
                "StorageUnwritable",
                f"cannot write under {parent}: {exc}; check the volume and its permissions",
            ) from exc
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
        self.files = {name: self.staging / f"{name}.parquet" for name in splits}
        self.rows = dict.fromkeys(splits, 0)
        self._pending: dict[str, list[pa.Table]] = {name: [] for name in splits}
        self._pending_rows = dict.fromkeys(splits, 0)
        self._writers: dict[str, pq.ParquetWriter] = {}
        try:
            for name, path in self.files.items():
                self._writers[name] = pq.ParquetWriter(path, schema, use_dictionary=text or False, **options)
        except OSError as exc:
            self.discard()
            raise runtime.WorkloadError("StorageUnwritable", f"cannot write {self.staging}: {exc}") from exc

    def __enter__(self) -> StreamingSplits:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self.discard()

    def write(self, split: str, table: pa.Table) -> None:
        """Add rows to ``split``; full row groups go to the file at once."""
        if not table.num_rows:
            return
        self.rows[split] += table.num_rows
        self._pending[split].append(table)
        self._pending_rows[split] += table.num_rows
        if self._pending_rows[split] >= self.row_group:
            self._flush(split, final=False)

    def _flush(self, split: str, *, final: bool) -> None:
        pending = self._pending[split]
        if not pending:
            return
        combined = pa.concat_tables(pending).combine_chunks()
        full = combined.num_rows if final else combined.num_rows - combined.num_rows % self.row_group
        try:
            if full:
                self._writers[split].write_table(combined.slice(0, full), row_group_size=self.row_group)
        except OSError as exc:
            raise runtime.WorkloadError(
                "StorageUnwritable", f"cannot write {self.files[split]}: {exc}"
            ) from exc
        rest = combined.slice(full)
        self._pending[split] = [rest] if rest.num_rows else []
        self._pending_rows[split] = rest.num_rows

    def close_splits(self) -> dict[str, pathlib.Path]:
        """Write what is buffered and close the files; returns their (staging) paths."""
        for split, writer in self._writers.items():
            self._flush(split, final=True)
            try:
                writer.close()
            except OSError as exc:
                raise runtime.WorkloadError(
                    "StorageUnwritable", f"cannot write {self.files[split]}: {exc}"
                ) from exc
        self._writers = {}
        return dict(self.files)

    def fill(self, folder: pathlib.Path, *, preprocessor: Any, documents: dict[str, Any]) -> None:
        """Move the closed split files into ``folder`` and write the rest of the version there."""
        for name, path in self.files.items():
            shutil.move(path, folder / f"{name}.parquet")
        fill_version(folder, splits={}, preprocessor=preprocessor, documents=documents)

    def discard(self) -> None:
        """Close the writers and remove the staging directory (what was moved out stays)."""
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        self._writers = {}
        shutil.rmtree(self.staging, ignore_errors=True)
