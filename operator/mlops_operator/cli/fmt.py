"""Small text helpers shared by the commands: colours by phase, numbers, durations, bars."""

from __future__ import annotations

import datetime
import math
from typing import Any

from mlops_operator.api import common

GOOD = {"Ready", "Succeeded", "Healthy"}
BAD = {"Failed", "Degraded", "RolledBack"}
IDLE = {"Suspended", "Archived"}
_COLOURS = {"green": "32", "red": "31", "yellow": "33", "grey": "90", "bold": "1"}


def colour(text: str, name: str, *, enabled: bool) -> str:
    return f"\x1b[{_COLOURS[name]}m{text}\x1b[0m" if enabled else text


def phase_colour(phase: str) -> str:
    if phase in GOOD:
        return "green"
    if phase in BAD:
        return "red"
    if phase in IDLE:
        return "grey"
    return "yellow"


def number(value: Any) -> str:
    """A metric value, short: 0.9667, 12.35, 1.2e+04."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def size(n: Any) -> str:
    """Bytes as Kubernetes writes memory: 98Mi, 1.5Gi (binary units)."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
        return "-"
    for unit, scale in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}"
    return f"{int(n)}B"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def parse_time(value: Any) -> datetime.datetime | None:
    return common.parse_rfc3339(value)


def bar(fraction: float | None, width: int, *, frame: int = 0) -> str:
    """``[████░░░░]`` for a known fraction; a moving block for an unknown one (``None``)."""
    if width < 3:
        return ""
    inner = width - 2
    if fraction is None:
        block = max(1, inner // 5)
        span = inner - block
        pos = frame % (2 * span) if span else 0
        pos = pos if pos <= span else 2 * span - pos
        return "[" + "░" * pos + "█" * block + "░" * (inner - pos - block) + "]"
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * inner)
    return "[" + "█" * full + "░" * (inner - full) + "]"
