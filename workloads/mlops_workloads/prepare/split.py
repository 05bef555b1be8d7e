"""Deterministic, optionally stratified train/validation/test assignment.

Written out rather than chained ``train_test_split`` calls, for three reasons: the split
must be byte-identical for the same seed and data (one numpy ``Generator``, one pass); a
stratified split must give every class at least one row in every non-empty split (or say
clearly that it cannot: ``SplitTooSmall``); and it must stay vectorised for millions of
rows (a lexsort, no per-row Python). Rows keep their original order inside each split.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlops_workloads import runtime

SPLITS = ("train", "validation", "test")
IntArray = npt.NDArray[np.int64]


def allocate(size: int, fractions: tuple[float, float, float], *, at_least_one: bool) -> IntArray:
    """Rows per split for ``size`` rows: largest remainder; non-empty splits get >= 1 when asked."""
    quotas = np.asarray(fractions, dtype=np.float64) * size
    counts = np.floor(quotas).astype(np.int64)
    wanted = np.asarray(fractions) > 0
    if at_least_one:
        counts = np.where(wanted & (counts == 0), 1, counts)
    while counts.sum() > size:  # at most two steps: only bumped zeros overshoot
        counts[int(np.argmax(counts))] -= 1
    remainder = size - int(counts.sum())
    if remainder > 0:
        order = np.argsort(-(quotas - counts) + np.where(wanted, 0.0, 1e9), kind="stable")
        for index in order[:remainder]:
            counts[index] += 1
    return counts


def allocate_classes(
    class_sizes: IntArray, fractions: tuple[float, float, float], *, stratified: bool, seed: int
) -> IntArray:
    """A classes x 3 matrix of rows per (class, split).

    Each class gets its floor quota (at least one row per non-empty split when stratified);
    the leftover rows go, largest fractional part first (ties in a seeded random order), to
    the splits still short of their overall quota, so the split sizes match the fractions
    of the whole data set as closely as a plain split would.
    """
    totals = allocate(int(class_sizes.sum()), fractions, at_least_one=False)
    quotas = class_sizes[:, None].astype(np.float64) * np.asarray(fractions, dtype=np.float64)[None, :]
    counts = np.floor(quotas).astype(np.int64)
    wanted = np.asarray(fractions) > 0
    if stratified:
        counts = np.where(wanted[None, :] & (counts == 0), 1, counts)
        for over in np.flatnonzero(counts.sum(axis=1) > class_sizes).tolist():
            while counts[over].sum() > class_sizes[over]:
                counts[over, int(np.argmax(counts[over]))] -= 1
    left = class_sizes - counts.sum(axis=1)
    deficit = totals - counts.sum(axis=0)
    fractional = np.where(wanted[None, :], quotas - np.floor(quotas), -1.0)
    ties = np.random.default_rng(seed).random(fractional.shape)
    order = np.lexsort((ties.ravel(), -fractional.ravel()))
    for position in order.tolist():  # classes x 3 iterations, never per row
        row, col = divmod(int(position), 3)
        if left[row] > 0 and deficit[col] > 0 and wanted[col]:
            counts[row, col] += 1
            left[row] -= 1
            deficit[col] -= 1
    for short in np.flatnonzero(left > 0).tolist():  # quotas already met (bumped small classes): best fit
        counts[short, int(np.argmax(fractional[short]))] += left[short]
    return counts


def assign(
    labels: pd.Series | None,
    *,
    size: int,
    fractions: tuple[float, float, float],
    seed: int,
) -> npt.NDArray[np.int8]:
    """The split (0 train, 1 validation, 2 test) of each row; stratified by ``labels`` when given."""
    wanted = sum(1 for f in fractions if f > 0)
    if labels is None:
        codes = np.zeros(size, dtype=np.int64)
        names: list[str] = ["all rows"]
    else:
        raw_codes, uniques = pd.factorize(labels, sort=True)
        codes = np.asarray(raw_codes, dtype=np.int64)
        names = [str(u) for u in uniques]
    class_sizes = np.bincount(codes, minlength=len(names))
    if labels is not None:
        small = [(names[i], int(n)) for i, n in enumerate(class_sizes) if n < wanted]
        if small:
            shown = ", ".join(f"{name!r} has {n}" for name, n in small[:5])
            raise runtime.WorkloadError(
                "SplitTooSmall",
                f"a stratified split into {wanted} parts needs at least {wanted} rows per class, "
                f"but class {shown} "
                f"row(s); add rows, remove or merge rare classes, or set spec.split.stratify: false",
            )
    allocations = allocate_classes(class_sizes, fractions, stratified=labels is not None, seed=seed)
    totals = allocations.sum(axis=0)
    empty = [SPLITS[i] for i in range(3) if fractions[i] > 0 and totals[i] == 0]
    if empty:
        raise runtime.WorkloadError(
            "SplitTooSmall",
            f"{size} rows are too few for the fractions train={fractions[0]}, validation={fractions[1]}, "
            f"test={fractions[2]}: {', '.join(empty)} would be empty; add rows or set those fractions to 0",
        )
    rng = np.random.default_rng(seed)
    keys = rng.random(size)
    order = np.lexsort((keys, codes))  # grouped by class, random inside each class
    starts = np.concatenate(([0], np.cumsum(class_sizes)[:-1]))
    sorted_codes = codes[order]
    rank = np.arange(size, dtype=np.int64) - starts[sorted_codes]
    first = allocations[sorted_codes, 0]
    second = first + allocations[sorted_codes, 1]
    assignment = np.empty(size, dtype=np.int8)
    assignment[order] = np.where(rank < first, 0, np.where(rank < second, 1, 2)).astype(np.int8)
    return assignment


def split(
    frame: pd.DataFrame,
    *,
    target: str,
    stratify: bool,
    fractions: tuple[float, float, float],
    seed: int,
) -> dict[str, pd.DataFrame]:
    """``frame`` cut into train/validation/test, each with a fresh 0..n-1 index."""
    labels = frame[target] if stratify else None
    assignment = assign(labels, size=len(frame), fractions=fractions, seed=seed)
    return {name: frame.loc[assignment == index].reset_index(drop=True) for index, name in enumerate(SPLITS)}
