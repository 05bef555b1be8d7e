"""Rightsizing: the request a run should have asked for, from what it measured it used.

Defined once for both sides because the model card (written by the workload) and the
TrainingJob's ``status.suggestedResources`` (written by the operator) must never disagree: the
workload measures (``mlops_workloads.usage``) and reports ``resourcesUsed`` in its result and
the card's ``resources.used``; the operator copies it into ``status.resourcesUsed`` and both
call ``suggest`` on it. A sweep whose ``trialTemplate.resources.auto`` is true gives its later
trials the ``largest`` suggestion of the trials that finished.

The rules: cpu = the cores used on average (CPU seconds over wall seconds) x ``CPU_HEADROOM``,
rounded up to 100m (at least 100m); memory = the peak x ``MEMORY_HEADROOM``, rounded up to
16Mi (at least 64Mi); gpu = what was requested, unless the GPUs were measured idle the whole
run (never busy in any sample): then 0. Nothing is suggested for a figure that was not measured.

Pure standard library, like ``api.workload``: the trainer contract imports it and must stay fast.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

CPU_HEADROOM = decimal.Decimal("1.2")
MEMORY_HEADROOM = decimal.Decimal("1.25")
CPU_STEP_MILLIS = 100
MIN_CPU_MILLIS = 100
MIB = 2**20
MEMORY_STEP = 16 * MIB
MIN_MEMORY = 64 * MIB

# The keys of ``resourcesUsed`` (the result, the card's ``resources.used``, the status).
CPU_SECONDS = "cpuSeconds"
CPU_CORES = "cpuCores"
PEAK_MEMORY = "peakMemoryBytes"
SOURCE = "source"
GPU_PEAK_MEMORY = "gpuPeakMemoryBytes"
GPU_UTILIZATION_MEAN = "gpuUtilizationMean"
GPU_UTILIZATION_MAX = "gpuUtilizationMax"
USED_KEYS: tuple[str, ...] = (
    CPU_SECONDS,
    CPU_CORES,
    PEAK_MEMORY,
    SOURCE,
    GPU_PEAK_MEMORY,
    GPU_UTILIZATION_MEAN,
    GPU_UTILIZATION_MAX,
)

_QUANTITY = re.compile(
    r"^\+?(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
}


def quantity(text: str) -> decimal.Decimal:
    """A Kubernetes quantity's value (``500m`` -> 0.5, ``2Gi`` -> 2147483648); ValueError otherwise."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = decimal.Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _DECIMAL[suffix]


def cpu_cores(text: str) -> float:
    """A cpu quantity in cores (``250m`` -> 0.25)."""
    return float(quantity(text))


def memory_bytes(text: str) -> int:
    """A memory quantity in bytes, rounded up (``512Mi`` -> 536870912)."""
    return int(quantity(text).to_integral_value(rounding=decimal.ROUND_CEILING))


def cpu_quantity(millis: int) -> str:
    """``1000`` -> ``1``, ``300`` -> ``300m``: whole cores without the m, as people write them."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    """Bytes as ``Gi`` when whole gibibytes, else ``Mi`` (rounded up)."""
    if size and size % 2**30 == 0:
        return f"{size // 2**30}Gi"
    return f"{math.ceil(size / MIB)}Mi"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _round_up(value: decimal.Decimal, step: int) -> int:
    return int((value / step).to_integral_value(rounding=decimal.ROUND_CEILING)) * step


def suggest(used: Mapping[str, Any] | None, *, gpu: int = 0) -> dict[str, Any]:
    """The suggested ``{cpu, memory, gpu}`` for a run that measured ``used`` (a ``resourcesUsed``
    mapping) having requested ``gpu`` GPUs; empty when nothing was measured."""
    if not used:
        return {}
    out: dict[str, Any] = {}
    cores = _number(used.get(CPU_CORES))
    if cores is not None:
        # Decimal from the shortest repr: 0.25 x 1.2 is 0.3 (300m), not 0.30000000000000004 (400m).
        millis = _round_up(decimal.Decimal(repr(cores)) * CPU_HEADROOM * 1000, CPU_STEP_MILLIS)
        out["cpu"] = cpu_quantity(max(MIN_CPU_MILLIS, millis))
    peak = _number(used.get(PEAK_MEMORY))
    if peak is not None and peak > 0:
        size = _round_up(decimal.Decimal(int(peak)) * MEMORY_HEADROOM, MEMORY_STEP)
        out["memory"] = memory_quantity(max(MIN_MEMORY, size))
    if not out:
        return {}
    busiest = _number(used.get(GPU_UTILIZATION_MAX))
    out["gpu"] = 0 if gpu > 0 and busiest == 0 else max(0, int(gpu))
    return out


def largest(suggestions: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The largest cpu, memory and gpu over several suggestions (a sweep's finished trials)."""
    out: dict[str, Any] = {}
    for s in suggestions:
        if not s:
            continue
        for key, parse in (("cpu", cpu_cores), ("memory", memory_bytes)):
            value = s.get(key)
            if isinstance(value, str):
                try:
                    if key not in out or parse(value) > parse(out[key]):
                        out[key] = value
                except ValueError:
                    continue
        g = s.get("gpu")
        if isinstance(g, int) and not isinstance(g, bool) and g >= 0:
            out["gpu"] = max(g, int(out.get("gpu", 0)))
    return out


def largest_used(used: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Each figure's largest value over several ``resourcesUsed`` (the sources joined)."""
    out: dict[str, Any] = {}
    sources: list[str] = []
    for u in used:
        if not u:
            continue
        for key in USED_KEYS:
            if key == SOURCE:
                source = u.get(SOURCE)
                if isinstance(source, str) and source and source not in sources:
                    sources.append(source)
                continue
            value = _number(u.get(key))
            if value is not None and (key not in out or value > out[key]):
                out[key] = u[key]
    if sources:
        out[SOURCE] = "+".join(sorted(sources))[:32]
    return out
