"""``mlops watch``: live progress of data preparation, training runs, sweeps and serving.

One frame is a pure function of the listed objects and ``now`` (``frame``), redrawn every
``--interval`` seconds: the screen is cleared on a terminal (where running items get a moving
bar), and on a pipe only changed frames are printed, so ``mlops watch | tee log`` stays readable.
``--until-done`` exits once nothing is preparing, training or searching: 0 when nothing failed,
1 otherwise (handy in CI and demos).
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from mlops_operator.cli import chain, fmt, kube

ACTIVE = {
    "Dataset": {"Pending", "Preparing"},
    "TrainingJob": {"Pending", "WaitingForData", "Queued", "Running"},
    "HyperparameterSweep": {"Pending", "Running"},
}
BAR = 24


@dataclasses.dataclass
class Line:
    section: str
    name: str
    phase: str
    fraction: float | None  # None: running, amount unknown
    text: str


def _phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def _elapsed(obj: dict[str, Any], now: datetime.datetime) -> float | None:
    status = obj.get("status") or {}
    start = fmt.parse_time(status.get("startTime")) or fmt.parse_time(
        (obj.get("metadata") or {}).get("creationTimestamp")
    )
    end = fmt.parse_time(status.get("completionTime"))
    if start is None:
        return None
    return ((end or now) - start).total_seconds()


def _terminal_fraction(phase: str) -> float | None:
    if phase in {"Ready", "Succeeded"}:
        return 1.0
    if phase in {"Failed", "Suspended", "Pending", "WaitingForData", "Queued"}:
        return 0.0
    return None


def sweep_fraction(obj: dict[str, Any]) -> tuple[float | None, str]:
    """(finished / planned, "finished/planned") from status.progress or the trial counts."""
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    progress = status.get("progress")
    if isinstance(progress, str) and "/" in progress:
        done_text, _, total_text = progress.partition("/")
        try:
            finished, planned = int(done_text), int(total_text)
        except ValueError:
            pass
        else:
            return (finished / planned if planned else 0.0), progress
    trials = status.get("trials") or {}
    finished = sum(int(trials.get(k) or 0) for k in ("succeeded", "failed", "pruned", "stopped"))
    planned = int(spec.get("maxTrials") or 0)
    return (finished / planned if planned else None), f"{finished}/{planned or '?'}"


def lines(
    *,
    datasets: list[dict[str, Any]],
    trainingjobs: list[dict[str, Any]],
    sweeps: list[dict[str, Any]],
    deployments: list[dict[str, Any]],
    now: datetime.datetime,
) -> list[Line]:
    out: list[Line] = []
    for obj in datasets:
        phase = _phase(obj)
        text = chain.dataset_detail(obj) if phase == "Ready" else fmt.duration(_elapsed(obj, now))
        out.append(Line("Datasets", kube.name_of(obj), phase, _terminal_fraction(phase), text))
    for obj in trainingjobs:
        if chain.sweep_of_trial(obj):
            continue
        phase = _phase(obj)
        text = fmt.duration(_elapsed(obj, now))
        status = obj.get("status") or {}
        if phase == "Succeeded" and status.get("objectiveValue") is not None:
            text += f" · {status.get('objectiveMetric', 'objective')} {fmt.number(status['objectiveValue'])}"
        elif phase not in {"Running", "Succeeded"} and (status.get("reason") or status.get("message")):
            text += f" · {status.get('reason') or status.get('message')}"
        out.append(Line("TrainingJobs", kube.name_of(obj), phase, _terminal_fraction(phase), text))
    for obj in sweeps:
        phase = _phase(obj)
        fraction, progress = sweep_fraction(obj)
        status = obj.get("status") or {}
        trials = status.get("trials") or {}
        text = f"{progress} trials"
        if trials.get("running"):
            text += f" · {trials['running']} running"
        if trials.get("failed"):
            text += f" · {trials['failed']} failed"
        best = status.get("bestTrial") or {}
        if best.get("objectiveValue") is not None:
            text += f" · best {fmt.number(best['objectiveValue'])}"
        if phase == "Succeeded":
            fraction = 1.0
        out.append(Line("Sweeps", kube.name_of(obj), phase, fraction, text))
    for obj in deployments:
        phase = _phase(obj)
        status = obj.get("status") or {}
        ready, desired = int(status.get("readyReplicas") or 0), int(status.get("desiredReplicas") or 0)
        fraction = ready / desired if desired else (1.0 if phase == "Ready" else 0.0)
        text = f"{ready}/{desired} ready"
        canary = status.get("canary") or {}
        if canary.get("state") in {"Progressing", "RolledBack"}:
            text += f" · canary {canary['state']}"
        out.append(Line("ModelDeployments", kube.name_of(obj), phase, fraction, text))
    return out


def frame(items: list[Line], *, colour: bool = False, tick: int = 0, header: str = "") -> str:
    if not items:
        return (header + "\n" if header else "") + "No Datasets, TrainingJobs, sweeps or ModelDeployments.\n"
    name_width = max(len(i.name) for i in items)
    phase_width = max(len(i.phase) for i in items)
    out = [header] if header else []
    section = None
    for item in items:
        if item.section != section:
            section = item.section
            out.append(fmt.colour(section, "bold", enabled=colour))
        phase = fmt.colour(item.phase.ljust(phase_width), fmt.phase_colour(item.phase), enabled=colour)
        progress = fmt.bar(item.fraction, BAR, frame=tick)
        out.append(f"  {item.name.ljust(name_width)}  {phase}  {progress}  {item.text}")
    return "\n".join(out) + "\n"


def done(items: list[Line]) -> bool:
    by_section = {"Datasets": "Dataset", "TrainingJobs": "TrainingJob", "Sweeps": "HyperparameterSweep"}
    return not any(item.phase in ACTIVE.get(by_section.get(item.section, ""), set()) for item in items)


def run(
    session: kube.Session,
    *,
    interval: float,
    once: bool,
    until_done: bool,
    colour: bool,
    out: TextIO = sys.stdout,
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    sleep: Callable[[float], None] = time.sleep,
    max_frames: int | None = None,
) -> int:
    tty = out.isatty()
    previous = None
    tick = 0
    where = session.namespace or "all namespaces"
    while True:
        now = clock()
        items = lines(
            datasets=session.list("Dataset"),
            trainingjobs=session.list("TrainingJob"),
            sweeps=session.list("HyperparameterSweep"),
            deployments=session.list("ModelDeployment"),
            now=now,
        )
        header = f"mlops watch · {where} · {now.strftime('%H:%M:%S')}"
        if not once:
            header += f" · every {interval:g}s, Ctrl-C stops"
        text = frame(items, colour=colour, tick=tick if tty else 0, header=header)
        body = text.split("\n", 1)[1]
        if tty:
            out.write("\x1b[H\x1b[2J" + text)
        elif body != previous:
            out.write(text)
        out.flush()
        previous = body
        tick += 1
        finished = done(items)
        if once or (until_done and finished) or (max_frames is not None and tick >= max_frames):
            if until_done and finished:
                return 1 if any(i.phase == "Failed" for i in items) else 0
            return 0
        sleep(interval)
