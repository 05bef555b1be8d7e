"""Building blocks of the streaming prepare, each bounded by a batch, a sample or a hash per row.

``stream`` runs the passes; this module holds what they are made of, so that each piece can
be tested (and trusted) on its own:

- ``mix64`` / ``index_keys``: splitmix64, the seeded key of a row position. The sample is the
  ``k`` rows with the smallest keys, the same rows whatever the batch size or file layout.
- ``row_hashes`` / ``SeenRows``: a 128-bit hash of each typed row and the set of hashes seen
  so far, as sorted numpy runs (16 bytes per kept row, no Python object per row). Two rows
  are duplicates when both 64-bit halves agree: with 10^7 rows a false match has a chance
  of about 10^-25, where one 64-bit hash would have 10^-6.
- ``type_batch``: the in-memory validation's conversion and constraint checks applied to one
  batch with column types fixed in advance (``validate.coerce`` and the same constraint
  helpers, so a value is a violation in a batch exactly when it is one in a whole frame).
- ``assign``: ``split.assign``'s result with temporaries of one class, not of every row.
- ``Moments`` / ``SmallestDistinct`` / ``Constancy``: exact running statistics.
- ``digest_files``: ``digest.compute``'s canonical bytes, read back from the written split
  files one column at a time, so a streamed version has the digest an in-memory one with
  the same rows would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.util import hash_array

from mlops_workloads import runtime
from mlops_workloads.prepare import digest as digest_mod
from mlops_workloads.prepare import split as split_mod
from mlops_workloads.prepare import validate as validate_mod

U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NA_SALT = np.uint64(0xD6E8FEB86659FD93)
# Two different siphash keys for text: the halves of a row hash must be independent.
_TEXT_KEYS = ("mlops-prepare-h1", "mlops-prepare-h2")
EXAMPLES = 3  # example values per violating column, as validate keeps them


def mix64(values: U64Array) -> U64Array:
    """splitmix64's finalizer: a bijection of 64-bit words that spreads every input bit."""
    with np.errstate(over="ignore"):
        x = values ^ (values >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def seed_word(seed: int, purpose: int) -> np.uint64:
    """A 64-bit key for one use (``purpose``) of the split seed."""
    word = np.array([(seed * 0x100000001B3 + purpose * 0x9E3779B1) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    return np.uint64(mix64(word)[0])


def index_keys(start: int, count: int, *, key: np.uint64) -> U64Array:
    """The sampling keys of rows ``start .. start+count-1``: distinct, uniform, seed-dependent."""
    positions = np.arange(start, start + count, dtype=np.uint64)
    return mix64(positions ^ key)


def smallest(keys: U64Array, k: int) -> BoolArray:
    """A mask of the ``k`` smallest keys (all of them when there are at most ``k``)."""
    out = np.zeros(len(keys), dtype=bool)
    if len(keys) <= k:
        out[:] = True
        return out
    out[np.argpartition(keys, k - 1)[:k]] = True
    return out


# ---------------------------------------------------------------------------------------------
# Row hashes and the set of rows already seen
# ---------------------------------------------------------------------------------------------


def _column_words(series: pd.Series) -> tuple[U64Array, U64Array]:
    """Two 64-bit words per value of one typed column, equal exactly when the values are.

    Missing values are equal to each other and to nothing else; ``-0.0`` equals ``0.0``,
    as ``DataFrame.duplicated`` has them.
    """
    dtype = series.dtype
    if pd.api.types.is_float_dtype(dtype) and isinstance(dtype, np.dtype):
        values = series.to_numpy(dtype=np.float64) + 0.0
        values[np.isnan(values)] = np.nan  # one NaN bit pattern
        words = mix64(values.view(np.uint64))
        return words, mix64(words ^ _GOLDEN)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        missing = series.isna().to_numpy()
        data = series.to_numpy(dtype=np.int64, na_value=0).view(np.uint64)
        flag = missing.astype(np.uint64) * _NA_SALT
        return mix64(data) ^ flag, mix64(data ^ _GOLDEN) + flag
    text = series.to_numpy(dtype=object, na_value=None)
    first = np.asarray(hash_array(text, hash_key=_TEXT_KEYS[0]), dtype=np.uint64)
    second = np.asarray(hash_array(text, hash_key=_TEXT_KEYS[1]), dtype=np.uint64)
    return first, second


def row_hashes(frame: pd.DataFrame) -> tuple[U64Array, U64Array]:
    """A 128-bit hash (two uint64 arrays) of every row of a typed frame."""
    size = len(frame)
    h1 = np.full(size, 0x243F6A8885A308D3, dtype=np.uint64)
    h2 = np.full(size, 0x13198A2E03707344, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for position, name in enumerate(frame.columns):
            a, b = _column_words(frame[name])
            salt = np.uint64(position + 1)
            h1 = mix64(h1 * _GOLDEN + a + salt)
            h2 = mix64((h2 ^ b) * _M1 + salt)
    return h1, h2


class SeenRows:
    """The 128-bit hashes of the rows kept so far, as sorted runs of numpy arrays.

    Each batch's new hashes become a run; runs are merged while the newest is at least half
    as large as the one before it (a binary counter), up to ``run_max`` entries, so a merge
    never copies more than ``run_max`` hashes and a lookup searches O(log batch + rows /
    run_max) runs. Memory: 16 bytes per row, plus one bounded merge.
    """

    def __init__(self, *, run_max: int = 1 << 22) -> None:
        self.run_max = run_max
        self._runs: list[tuple[U64Array, U64Array]] = []

    def __len__(self) -> int:
        return sum(len(run[0]) for run in self._runs)

    def admit(self, h1: U64Array, h2: U64Array) -> BoolArray:
        """True for the rows seen neither earlier in this batch nor before; those are added."""
        fresh = np.ones(len(h1), dtype=bool)
        # Equal rows inside the batch: only rows whose first half repeats can be equal.
        repeated = np.flatnonzero(pd.Series(h1).duplicated(keep=False).to_numpy())
        if len(repeated):
            pairs = np.empty(len(repeated), dtype=[("a", np.uint64), ("b", np.uint64)])
            pairs["a"], pairs["b"] = h1[repeated], h2[repeated]
            fresh[repeated] = False
            fresh[repeated[np.unique(pairs, return_index=True)[1]]] = True  # the first of equal rows
        candidates = np.flatnonzero(fresh)
        order = np.argsort(h1[candidates], kind="stable")
        candidates = candidates[order]  # sorted by first half: searches walk each run forward
        q1, q2 = h1[candidates], h2[candidates]
        for keys, seconds in self._runs:
            if not len(q1):
                break
            left = np.searchsorted(keys, q1, side="left")
            at = np.minimum(left, len(keys) - 1)
            same_first = (left < len(keys)) & (keys[at] == q1)
            hit = np.zeros(len(q1), dtype=bool)
            hit[same_first] = seconds[at[same_first]] == q2[same_first]
            # A 64-bit collision puts several entries under one first half: look at all of them.
            for index in np.flatnonzero(same_first & ~hit).tolist():
                right = int(np.searchsorted(keys, q1[index], side="right"))
                hit[index] = bool(np.any(seconds[int(left[index]) : right] == q2[index]))
            fresh[candidates[hit]] = False
            candidates, q1, q2 = candidates[~hit], q1[~hit], q2[~hit]
        self._add(q1, q2)
        return fresh

    def _add(self, h1: U64Array, h2: U64Array) -> None:
        """Add a run already sorted by ``h1``."""
        if not len(h1):
            return
        self._runs.append((h1, h2))
        while len(self._runs) > 1:
            (a1, a2), (b1, b2) = self._runs[-1], self._runs[-2]
            if 2 * len(a1) < len(b1) or len(a1) + len(b1) > self.run_max:
                break
            del self._runs[-2:]
            keys = np.concatenate((b1, a1))
            order = np.argsort(keys, kind="stable")  # timsort: two sorted runs merge in linear time
            self._runs.append((keys[order], np.concatenate((b2, a2))[order]))
            del a1, a2, b1, b2, keys, order


# ---------------------------------------------------------------------------------------------
# Typing one batch
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TypedBatch:
    """One batch converted to the final column types, with what validation found in it."""

    frame: pd.DataFrame
    violating: BoolArray
    violations: dict[str, dict[str, int]]
    examples: dict[str, list[str]]
    missing: dict[str, int]


def type_batch(
    raw: pd.DataFrame, columns: list[validate_mod.Column], *, examples_needed: dict[str, int]
) -> TypedBatch:
    """``raw`` converted to ``columns``' types, as ``validate.validate`` converts a whole frame.

    ``examples_needed`` says how many more example values each column's report still wants
    (the report keeps the first three violating values of a column, in data order).
    """
    typed: dict[str, Any] = {}
    violating = np.zeros(len(raw), dtype=bool)
    violations: dict[str, dict[str, int]] = {}
    examples: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    for column in columns:
        source = raw[column.name]
        values, present, bad = validate_mod.coerce(source, column.dtype)
        spec = column.declared
        kinds = validate_mod._constraint_violations(values, present, bad, spec)
        missing_count = int((~present).sum())
        if missing_count:
            missing[column.name] = missing_count
        if any(kinds.values()):
            violations[column.name] = {k: n for k, n in kinds.items() if n}
            row_bad = bad.copy()
            if spec is not None:
                row_bad |= validate_mod._constraint_mask(values, present, spec)
            violating |= row_bad
            wanted = examples_needed.get(column.name, EXAMPLES)
            if wanted > 0:
                examples[column.name] = [str(v) for v in source[row_bad].head(wanted).tolist()]
        typed[column.name] = values
    frame = pd.DataFrame(typed, index=raw.index)
    return TypedBatch(
        frame=frame, violating=violating, violations=violations, examples=examples, missing=missing
    )


def final_dtypes(frame: pd.DataFrame, *, nullable: set[str]) -> pd.DataFrame:
    """``clean.finalize_dtypes`` decided for the whole data: ``nullable`` columns keep Int64/boolean."""
    changes = {}
    for name in frame.columns:
        dtype = str(frame[name].dtype)
        if dtype == "Int64" and name not in nullable:
            changes[name] = "int64"
        elif dtype == "boolean" and name not in nullable:
            changes[name] = "bool"
    return frame.astype(changes) if changes else frame


# ---------------------------------------------------------------------------------------------
# The split
# ---------------------------------------------------------------------------------------------


def assign(
    codes: npt.NDArray[np.int32] | None, *, size: int, fractions: tuple[float, float, float], seed: int
) -> npt.NDArray[np.int8]:
    """``split.assign``'s very result for class codes ``0..k-1`` numbered in sorted label order.

    ``split.assign`` lexsorts every row by (class, random key) and keeps half a dozen
    row-sized temporaries (about 0.6 GiB for 10 million rows); here the rows are grouped by
    class once and each class is ranked by the same keys (a stable sort, so ties fall as the
    lexsort's do), which needs temporaries of the largest class only. ``None``: not
    stratified. The class-size checks are the caller's; the empty-split check is here, as there.
    """
    stratified = codes is not None
    class_sizes = np.bincount(codes) if codes is not None else np.array([size], dtype=np.int64)
    allocations = split_mod.allocate_classes(class_sizes, fractions, stratified=stratified, seed=seed)
    totals = allocations.sum(axis=0)
    empty = [split_mod.SPLITS[i] for i in range(3) if fractions[i] > 0 and totals[i] == 0]
    if empty:
        raise runtime.WorkloadError(
            "SplitTooSmall",
            f"{size} rows are too few for the fractions train={fractions[0]}, validation={fractions[1]}, "
            f"test={fractions[2]}: {', '.join(empty)} would be empty; add rows or set those fractions to 0",
        )
    keys = np.random.default_rng(seed).random(size)
    out = np.empty(size, dtype=np.int8)
    grouped = np.argsort(codes, kind="stable") if codes is not None else None
    start = 0
    for label, count in enumerate(class_sizes.tolist()):
        rows = grouped[start : start + count] if grouped is not None else np.arange(size)
        start += count
        ranked = rows[np.argsort(keys[rows], kind="stable")]
        first, second = int(allocations[label, 0]), int(allocations[label, 1])
        out[ranked[:first]] = 0
        out[ranked[first : first + second]] = 1
        out[ranked[first + second :]] = 2
        del rows, ranked
    return out


# ---------------------------------------------------------------------------------------------
# Exact running statistics
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Moments:
    """Count, mean, sum of squared deviations, min and max of the non-missing values (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    missing: int = 0

    def add(self, series: pd.Series) -> None:
        numbers = np.asarray(series.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)
        values = numbers[~np.isnan(numbers)]
        self.missing += len(numbers) - len(values)
        if not len(values):
            return
        n, mean = len(values), float(values.mean())
        m2 = float(np.sum((values - mean) ** 2))
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0


@dataclasses.dataclass
class SmallestDistinct:
    """The ``limit`` smallest distinct values (as text) of a column: schema.json's category list."""

    limit: int
    values: list[str] = dataclasses.field(default_factory=list)

    def add(self, series: pd.Series) -> None:
        fresh = {str(v) for v in series.dropna().unique()}
        self.values = sorted(fresh.union(self.values))[: self.limit]


@dataclasses.dataclass
class Constancy:
    """Whether a column holds two different non-missing values anywhere (stats' constant check)."""

    first: Any = None
    seen: bool = False
    varies: bool = False

    def add(self, series: pd.Series) -> None:
        if self.varies:
            return
        distinct = series.dropna().unique()
        if len(distinct) > 1:
            self.varies = True
        elif len(distinct) == 1:
            if not self.seen:
                self.first, self.seen = distinct[0], True
            elif bool(distinct[0] != self.first):
                self.varies = True


# ---------------------------------------------------------------------------------------------
# The digest, from the written files
# ---------------------------------------------------------------------------------------------


def _update(sha: Any, blob: bytes) -> None:
    sha.update(len(blob).to_bytes(8, "little"))
    sha.update(blob)


def _length_prefix(sha: Any, length: int) -> None:
    sha.update(length.to_bytes(8, "little"))


def _hash_column(sha: Any, column: pa.ChunkedArray, dtype: str) -> None:
    """``digest._column_bytes`` of one whole column, fed chunk by chunk."""
    rows = len(column)
    _length_prefix(sha, (rows + 7) // 8)
    carry = np.zeros(0, dtype=bool)
    for chunk in column.chunks:
        missing = np.asarray(pc.is_null(chunk, nan_is_null=True).to_numpy(zero_copy_only=False), dtype=bool)
        bits = np.concatenate((carry, missing))
        whole = len(bits) - len(bits) % 8
        sha.update(np.packbits(bits[:whole], bitorder="little").tobytes())
        carry = bits[whole:]
    if len(carry):
        sha.update(np.packbits(carry, bitorder="little").tobytes())
    if dtype in ("float", "int", "bool"):
        _length_prefix(sha, rows * (1 if dtype == "bool" else 8))
        for chunk in column.chunks:
            if dtype == "float":
                numbers = pc.fill_null(chunk.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
                numbers = np.where(np.isnan(numbers), 0.0, numbers) + 0.0
                sha.update(numbers.astype("<f8").tobytes())
            elif dtype == "int":
                ints = pc.fill_null(chunk.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
                sha.update(ints.astype("<i8").tobytes())
            else:
                flags = pc.fill_null(chunk.cast(pa.bool_()), False).to_numpy(zero_copy_only=False)
                sha.update(flags.astype(np.uint8).tobytes())
        return
    texts = [pc.fill_null(chunk.cast(pa.large_string()), "") for chunk in column.chunks]
    spans = []
    for text in texts:
        offsets = np.frombuffer(text.buffers()[1], dtype="<i8", count=len(text) + 1, offset=text.offset * 8)
        spans.append((offsets, int(offsets[-1] - offsets[0])))
    _length_prefix(sha, (rows + 1) * 8 + sum(size for _, size in spans))
    base = 0
    sha.update(np.zeros(1, dtype="<i8").tobytes())
    for offsets, size in spans:
        sha.update((offsets[1:] - offsets[0] + base).astype("<i8").tobytes())
        base += size
    for text, (offsets, size) in zip(texts, spans, strict=True):
        data = text.buffers()[2]
        if size and data is not None:
            sha.update(memoryview(data)[int(offsets[0]) : int(offsets[0]) + size])


def digest_files(
    files: dict[str, pathlib.Path],
    *,
    columns: list[validate_mod.Column],
    preparation: dict[str, Any],
    rows: dict[str, int],
) -> str:
    """What ``digest.compute`` gives for the splits stored in ``files``, one column in memory at a time."""
    sha = hashlib.sha256()
    header = {
        "format": digest_mod.FORMAT,
        "preparation": preparation,
        "columns": [[c.name, c.dtype] for c in columns],
        "rows": rows,
    }
    _update(sha, json.dumps(header, sort_keys=True, separators=(",", ":"), default=str).encode())
    for name in sorted(files):
        parquet = pq.ParquetFile(files[name])
        for column in columns:
            _hash_column(sha, parquet.read(columns=[column.name]).column(0), column.dtype)
    return sha.hexdigest()
