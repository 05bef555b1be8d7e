"""The workloads' side of the operator contract (defined in ``mlops_operator.api.workload``).

Config comes in as one JSON document: the file named by ``MLOPS_CONFIG_FILE`` (the operator
mounts it from a ConfigMap, or for a TrainingJob from the pod's own annotation through a
downwardAPI volume) or the ``MLOPS_CONFIG`` environment variable. The result goes
out as compact JSON (at most 4 KiB) to the termination-message path, which the kubelet
copies into the pod's status where the operator reads it. Users' own training images follow
the same contract.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import pydantic

from mlops_operator.api import workload

M = TypeVar("M", bound=pydantic.BaseModel)


class WorkloadError(Exception):
    """A failure whose message tells the user what to fix; ``reason`` is one CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def load_config(model: type[M], environ: dict[str, str] | None = None) -> M:
    env = os.environ if environ is None else environ
    if env.get(workload.CONFIG_FILE_ENV):
        raw = pathlib.Path(env[workload.CONFIG_FILE_ENV]).read_text(encoding="utf-8")
    elif env.get(workload.CONFIG_ENV):
        raw = env[workload.CONFIG_ENV]
    else:
        raise WorkloadError("MissingConfig", f"set {workload.CONFIG_FILE_ENV} or {workload.CONFIG_ENV}")
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        raise WorkloadError("InvalidConfig", str(exc)) from exc


def config_with_flags(model: type[M], environ: dict[str, str], flags: dict[str, Any]) -> dict[str, Any]:
    """The mounted config of ``model`` (when the pod has one) as a dict, overridden by the
    command-line flags that were given (not None): the pod's way and the local way in one."""
    data: dict[str, Any] = {}
    if environ.get(workload.CONFIG_FILE_ENV) or environ.get(workload.CONFIG_ENV):
        data = load_config(model, environ).model_dump()
    data.update({k: v for k, v in flags.items() if v is not None})
    return data


def validate_config(model: type[M], data: dict[str, Any], *, required: str, hint: str) -> M:
    """``data`` as ``model``; ``MissingConfig`` (with ``hint``) without ``required``."""
    if required not in data:
        raise WorkloadError("MissingConfig", hint)
    try:
        return model.model_validate(data)
    except Exception as exc:
        raise WorkloadError("InvalidConfig", str(exc)) from exc


def compact(result: dict[str, Any], limit: int = workload.RESULT_LIMIT) -> str:
    """Serialise ``result`` within ``limit`` bytes, dropping the largest optional parts first."""
    text = json.dumps(result, separators=(",", ":"), sort_keys=True, default=str)
    if len(text.encode()) <= limit:
        return text
    trimmed = dict(result)
    # Drop the largest top-level values (never the essentials) until it fits.
    essentials = {"ok", "reason", "error", "digest", "modelUri", "metrics", "objectiveValue", "rows"}
    for key in sorted(trimmed, key=lambda k: -len(json.dumps(trimmed[k], default=str))):
        if key in essentials:
            continue
        trimmed.pop(key)
        trimmed["truncated"] = True
        text = json.dumps(trimmed, separators=(",", ":"), sort_keys=True, default=str)
        if len(text.encode()) <= limit:
            return text
    return text.encode()[:limit].decode(errors="ignore")


def write_result(result: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    text = compact(result)
    path = env.get(workload.RESULT_PATH_ENV, workload.TERMINATION_MESSAGE_PATH)
    try:
        pathlib.Path(path).write_text(text, encoding="utf-8")
    except OSError:
        pass  # Running outside a pod: stdout still carries the result.
    print(text, flush=True)
    return text


def main_wrapper(run: Callable[[], dict[str, Any]]) -> int:
    """Run a workload; write its result or its failure; return the process exit code."""
    try:
        result = run()
    except WorkloadError as exc:
        write_result({"ok": False, "reason": exc.reason, "error": exc.message})
        return 1
    except MemoryError:
        write_result({"ok": False, "reason": "OutOfMemory", "error": "the workload ran out of memory"})
        return 1
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        write_result({"ok": False, "reason": "InternalError", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    write_result({"ok": True, **result})
    return 0


def server_main(run: Callable[[], int]) -> int:
    """A long-running server's process: logs at INFO (with level and logger), then ``run``'s exit
    code. A ``WorkloadError`` (a bad config, a refused model, a port it cannot bind) is written as
    the result, and as JSON on stderr for a person at a terminal, and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run()
    except WorkloadError as exc:
        write_result({"ok": False, "reason": exc.reason, "error": exc.message})
        print(json.dumps({"error": exc.message, "reason": exc.reason}), file=sys.stderr)
        return 1
