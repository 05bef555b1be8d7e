"""Search-space arithmetic every algorithm shares: sampling, grids, unit-cube maps, rungs.

Pure and dependency-free (no numpy, no Optuna), so grid, random and the multi-fidelity
schedulers run in the operator without importing anything heavy. Randomness always comes
from ``random.Random(derive_seed(seed, ...))`` keyed by what is being drawn (the
configuration id), never from a generator whose position depends on how many draws came
before: the k-th configuration is the same whether the operator ran all along or restarted.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

from mlops_operator.api import sweep

SEED_MAX = 2**31 - 2


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one purpose, stable across processes (``hash()`` of a str is not)."""
    blob = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % SEED_MAX + 1


def seed_from_uid(uid: str) -> int:
    """The default seed of a sweep without one: stable for the object's whole life."""
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "big") % (2**31 - 1)


def _is_int(p: sweep.SearchParameter) -> bool:
    return p.type == "int"


def _quantise(p: sweep.SearchParameter, value: float) -> int | float:
    """Snap to the parameter's step grid (and integers for int), inside [low, high]."""
    assert p.low is not None and p.high is not None
    low, high = p.low, p.high
    step = p.step if p.step is not None else (1.0 if _is_int(p) else None)
    if step is not None:
        k = round((value - low) / step)
        k = max(0, min(k, math.floor((high - low) / step + 1e-9)))
        value = low + k * step
    value = min(max(value, low), high)
    if _is_int(p):
        return round(value)
    return float(round(value, 12)) if step is not None else float(value)


def sample(p: sweep.SearchParameter, rng: random.Random) -> Any:
    """One value drawn uniformly (log-uniformly with ``log``), respecting type and step."""
    if p.type == "categorical":
        return rng.choice(list(p.values or []))
    assert p.low is not None and p.high is not None
    if p.step is not None:
        count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
        return _quantise(p, p.low + rng.randrange(count) * p.step)
    if _is_int(p):
        if p.log:
            # As Optuna does: log-uniform over [low - 0.5, high + 0.5), then round.
            x = math.exp(rng.uniform(math.log(p.low - 0.5 if p.low > 0.5 else p.low), math.log(p.high + 0.5)))
            return _quantise(p, x)
        return rng.randint(int(p.low), int(p.high))
    if p.log:
        return float(min(max(math.exp(rng.uniform(math.log(p.low), math.log(p.high))), p.low), p.high))
    return float(rng.uniform(p.low, p.high))


def sample_all(parameters: Sequence[sweep.SearchParameter], rng: random.Random) -> dict[str, Any]:
    return {p.name: sample(p, rng) for p in parameters}


def contains(p: sweep.SearchParameter, value: Any) -> bool:
    """Whether ``value`` is a value this parameter can take (used on rebuilt history)."""
    if p.type == "categorical":
        return any(type(v) is type(value) and v == value for v in (p.values or []))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    assert p.low is not None and p.high is not None
    if _is_int(p) and not float(value).is_integer():
        return False
    return p.low - 1e-9 <= value <= p.high + 1e-9


# --------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------


def grid_values(p: sweep.SearchParameter, points: int | None) -> list[Any]:
    """Every value of one grid dimension, in increasing order (categorical: as listed)."""
    if p.type == "categorical":
        return list(p.values or [])
    assert p.low is not None and p.high is not None
    if p.step is not None or (_is_int(p) and points is None):
        step = p.step if p.step is not None else 1.0
        count = math.floor((p.high - p.low) / step + 1e-9) + 1
        return [_quantise(p, p.low + k * step) for k in range(count)]
    if points is None:
        raise ValueError(
            f"searchSpace[{p.name}]: a float grid dimension needs a step or algorithm.gridPoints"
        )
    if p.log:
        lo, hi = math.log(p.low), math.log(p.high)
        raw = [math.exp(lo + (hi - lo) * k / (points - 1)) for k in range(points)]
    else:
        raw = [p.low + (p.high - p.low) * k / (points - 1) for k in range(points)]
    values: list[Any] = []
    for x in raw:
        v = _quantise(p, x) if _is_int(p) else float(round(min(max(x, p.low), p.high), 12))
        if v not in values:
            values.append(v)
    return values


def grid_size(parameters: Sequence[sweep.SearchParameter], points: int | None) -> int:
    return math.prod(len(grid_values(p, points)) for p in parameters)


def grid_point(parameters: Sequence[sweep.SearchParameter], points: int | None, index: int) -> dict[str, Any]:
    """The ``index``-th combination in ``itertools.product`` order (the last parameter varies fastest)."""
    dims = [grid_values(p, points) for p in parameters]
    out: dict[str, Any] = {}
    rest = index
    for p, values in zip(reversed(parameters), reversed(dims), strict=True):
        rest, k = divmod(rest, len(values))
        out[p.name] = values[k]
    if rest:
        raise IndexError(f"grid point {index} is past the grid's {math.prod(len(d) for d in dims)} points")
    return {p.name: out[p.name] for p in parameters}


def grid(parameters: Sequence[sweep.SearchParameter], points: int | None) -> list[dict[str, Any]]:
    """The whole grid (tests and small spaces; the sampler indexes it lazily)."""
    dims = [grid_values(p, points) for p in parameters]
    return [dict(zip([p.name for p in parameters], combo, strict=True)) for combo in itertools.product(*dims)]


# --------------------------------------------------------------------------------------------
# Unit cube (CMA-ES works in [0, 1]^d)
# --------------------------------------------------------------------------------------------


def _unit_bounds(p: sweep.SearchParameter) -> tuple[float, float]:
    assert p.low is not None and p.high is not None
    if p.log:
        lo, hi = p.low, p.high
        if _is_int(p):
            lo, hi = max(lo - 0.5, lo / 2), hi + 0.5
        return math.log(lo), math.log(hi)
    half = (p.step if p.step is not None else 1.0) / 2 if (_is_int(p) or p.step is not None) else 0.0
    return p.low - half, p.high + half


def to_unit(p: sweep.SearchParameter, value: float) -> float:
    lo, hi = _unit_bounds(p)
    x = math.log(value) if p.log else float(value)
    return min(max((x - lo) / (hi - lo), 0.0), 1.0)


def from_unit(p: sweep.SearchParameter, u: float) -> int | float:
    lo, hi = _unit_bounds(p)
    x = lo + min(max(u, 0.0), 1.0) * (hi - lo)
    return _quantise(p, math.exp(x) if p.log else x)


# --------------------------------------------------------------------------------------------
# Rungs
# --------------------------------------------------------------------------------------------


def rung_budgets(p: sweep.SearchParameter, reduction_factor: int) -> list[int | float]:
    """Budgets low, low*eta, low*eta^2, ... with the last rung exactly high.

    A rung whose budget would come within a factor sqrt(eta) of high is merged into the top
    rung, so the top rung is never a near-duplicate of the one below it.
    """
    assert p.low is not None and p.high is not None
    budgets: list[float] = []
    b = p.low
    while b * math.sqrt(reduction_factor) < p.high * (1 - 1e-9):
        budgets.append(b)
        b *= reduction_factor
    budgets.append(p.high)
    out: list[int | float] = []
    for value in budgets:
        q = _quantise(p, value)
        if not out or q > out[-1]:
            out.append(q)
    return out


def budget_parameter(spec: sweep.HyperparameterSweepSpec) -> sweep.SearchParameter | None:
    if spec.algorithm.budget is None:
        return None
    return next((p for p in spec.search_space if p.name == spec.algorithm.budget.parameter), None)


def sampled_parameters(spec: sweep.HyperparameterSweepSpec) -> list[sweep.SearchParameter]:
    """The parameters the sampler draws: all but the budget."""
    budget = spec.algorithm.budget.parameter if spec.algorithm.budget else None
    return [p for p in spec.search_space if p.name != budget]


def problems(spec: sweep.HyperparameterSweepSpec) -> list[str]:
    """What makes a search space unusable that the CRD's CEL rules cannot see; each names the field."""
    out: list[str] = []
    for p in spec.search_space:
        out.extend(sweep.parameter_problems(p))
    names = [p.name for p in spec.search_space]
    if len(set(names)) != len(names):
        out.append("searchSpace: parameter names must be unique")
    if out:
        return out
    algorithm = spec.algorithm
    budgeted = algorithm.name in sweep.MULTI_FIDELITY or spec.early_stopping is not None
    if budgeted and algorithm.budget is None:
        out.append("algorithm.budget: required by successiveHalving, hyperband and earlyStopping")
    if algorithm.budget is not None:
        bp = budget_parameter(spec)
        if bp is None:
            out.append(f"algorithm.budget.parameter: {algorithm.budget.parameter} is not in searchSpace")
        elif bp.type == "categorical":
            out.append(f"algorithm.budget.parameter: {bp.name} must be an int or float parameter")
        elif bp.low is not None and bp.low <= 0:
            out.append(f"searchSpace[{bp.name}].low: a budget must be positive")
        elif len(rung_budgets(bp, algorithm.budget.reduction_factor)) < 2:
            out.append(
                f"searchSpace[{bp.name}]: the budget range [{bp.low:g}, {bp.high:g}] gives a single rung "
                f"with reductionFactor {algorithm.budget.reduction_factor}; widen it to at least a factor "
                f"{algorithm.budget.reduction_factor}"
            )
    sampled = sampled_parameters(spec)
    if not sampled:
        out.append("searchSpace: nothing to search besides the budget parameter")
    if algorithm.name == "grid":
        for p in sampled:
            if p.type == "float" and p.step is None and algorithm.grid_points is None:
                out.append(
                    f"searchSpace[{p.name}]: a float grid dimension needs a step or algorithm.gridPoints"
                )
    if algorithm.name == "cmaes" and not any(p.type != "categorical" for p in sampled):
        out.append("searchSpace: cmaes needs at least one int or float parameter besides the budget")
    return out
