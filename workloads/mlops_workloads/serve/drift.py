"""Population Stability Index of recent inputs against the training baseline.

Each feature keeps a ring buffer of the bin index of its last ``window`` values and the
count per bin, so adding a batch costs one vectorised binning and an O(rows) count update,
and the PSI is ready at any moment in O(bins). Bins come from ``baseline.json``:
numeric features bin by the baseline's quantile edges, categorical ones by value (values
never seen in training share one extra bin whose baseline share is ~0, so a new category
shows up as drift at once).

A request's columns are not binned on its path: ``add`` keeps a reference to them, and they are
folded into the windows (one binning of all of them together) when ``FOLD_ROWS`` rows are held
or when the scores are read, so a single-row request pays an append, not a dozen small numpy
calls. The scores are the same as with a fold per request: a ring holds the last ``window``
values in order either way.

PSI = Σ (actual - expected) · ln(actual / expected), with both shares floored at
``EPSILON`` so empty bins stay finite. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate,
> 0.2 significant. The overall score is the maximum over features: one drifting feature is
enough to distrust the model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

EPSILON = 1e-4
FOLD_ROWS = 512  # rows held before they are folded into the windows (bounded memory)


@dataclasses.dataclass
class _FeatureWindow:
    name: str
    expected: np.ndarray  # baseline share per bin (the last bin of categoricals: "unseen")
    edges: np.ndarray | None  # numeric inner cut points; None for categoricals
    categories: dict[Any, int] | None
    ring: np.ndarray
    counts: np.ndarray
    filled: int = 0
    head: int = 0

    def bins(self, values: np.ndarray) -> np.ndarray:
        if self.edges is not None:
            numeric = np.asarray(values, dtype=np.float64)
            idx = np.searchsorted(self.edges, numeric, side="right")
            # Missing values go to the last bin's neighbour: they are drift too when the
            # baseline had none, so they count in the top bin rather than vanish.
            idx[np.isnan(numeric)] = len(self.expected) - 1
            return idx.astype(np.int32)
        assert self.categories is not None
        unseen = len(self.expected) - 1
        lookup = self.categories
        return np.fromiter(
            (lookup.get(_key(v), unseen) for v in values.tolist()), dtype=np.int32, count=len(values)
        )

    def add(self, values: np.ndarray) -> None:
        idx = self.bins(values)
        size = len(self.ring)
        if len(idx) >= size:
            idx = idx[-size:]
            self.ring[:] = idx
            self.counts[:] = np.bincount(idx, minlength=len(self.counts))
            self.filled = size
            self.head = 0
            return
        n = len(idx)
        positions = (self.head + np.arange(n)) % size
        if self.filled == size:
            np.subtract.at(self.counts, self.ring[positions], 1)
        else:
            overflow = max(0, self.filled + n - size)
            if overflow:
                np.subtract.at(self.counts, self.ring[positions[n - overflow :]], 1)
            self.filled = min(size, self.filled + n)
        self.ring[positions] = idx
        np.add.at(self.counts, idx, 1)
        self.head = (self.head + n) % size

    def psi(self) -> float:
        if self.filled == 0:
            return 0.0
        actual = np.maximum(self.counts / self.filled, EPSILON)
        expected = np.maximum(self.expected, EPSILON)
        return float(np.sum((actual - expected) * np.log(actual / expected)))


def _key(value: Any) -> Any:
    # Baseline keys are JSON object keys, hence strings; compare values as strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _numeric(name: str, spec: dict[str, Any], window: int) -> _FeatureWindow:
    edges = np.asarray(spec.get("edges") or [], dtype=np.float64)
    proportions = np.asarray(spec.get("proportions") or [], dtype=np.float64)
    if len(proportions) == len(edges) + 1:
        inner = edges  # edges are the cut points between bins
    elif len(proportions) == len(edges) - 1 and len(edges) >= 2:
        inner = edges[1:-1]  # edges include the outer bounds; values outside fall in the end bins
    else:
        raise ValueError(
            f"baseline of {name!r}: {len(edges)} edges do not fit {len(proportions)} proportions"
        )
    total = proportions.sum()
    expected = proportions / total if total > 0 else proportions
    bins = len(expected)
    return _FeatureWindow(
        name=name,
        expected=expected,
        edges=inner,
        categories=None,
        ring=np.zeros(window, dtype=np.int32),
        counts=np.zeros(bins, dtype=np.int64),
    )


def _categorical(name: str, spec: dict[str, Any], window: int) -> _FeatureWindow:
    props = spec.get("proportions") or {}
    if not isinstance(props, dict):
        raise ValueError(f"baseline of {name!r}: categorical proportions must be an object")
    keys = [str(k) for k in props]
    shares = np.asarray([float(v) for v in props.values()] + [0.0], dtype=np.float64)
    total = shares.sum()
    expected = shares / total if total > 0 else shares
    return _FeatureWindow(
        name=name,
        expected=expected,
        edges=None,
        categories={k: i for i, k in enumerate(keys)},
        ring=np.zeros(window, dtype=np.int32),
        counts=np.zeros(len(shares), dtype=np.int64),
    )


class DriftMonitor:
    """PSI per feature over the last ``window`` rows; features without a baseline are skipped."""

    def __init__(self, baseline: dict[str, Any], *, features: tuple[str, ...], window: int = 1000) -> None:
        if window < 1:
            raise ValueError("the drift window must hold at least one row")
        self.window = window
        self._held: list[dict[str, np.ndarray]] = []
        self._held_rows = 0
        self._features: dict[str, _FeatureWindow] = {}
        stats = baseline.get("features", baseline) if isinstance(baseline, dict) else {}
        for name in features:
            spec = stats.get(name) if isinstance(stats, dict) else None
            if not isinstance(spec, dict):
                continue
            if spec.get("type") == "numeric":
                self._features[name] = _numeric(name, spec, window)
            elif spec.get("type") == "categorical":
                self._features[name] = _categorical(name, spec, window)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self._features)

    @property
    def rows(self) -> int:
        self.flush()
        return max((f.filled for f in self._features.values()), default=0)

    def add(self, columns: dict[str, np.ndarray]) -> None:
        """Count a batch's rows (held by reference until the next fold: the arrays must not change)."""
        if not self._features or not columns:
            return
        self._held.append(columns)
        self._held_rows += max(len(v) for v in columns.values())
        if self._held_rows >= FOLD_ROWS:
            self.flush()

    def flush(self) -> None:
        """Fold the rows held into the windows."""
        if not self._held:
            return
        held, self._held, self._held_rows = self._held, [], 0
        for name, fw in self._features.items():
            parts = [v for cols in held if (v := cols.get(name)) is not None and len(v)]
            if parts:
                fw.add(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def scores(self) -> dict[str, float]:
        self.flush()
        return {name: fw.psi() for name, fw in self._features.items()}

    @staticmethod
    def overall(scores: dict[str, float]) -> float:
        finite = [s for s in scores.values() if math.isfinite(s)]
        return max(finite, default=0.0)
