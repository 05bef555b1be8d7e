"""What a training run used: CPU seconds, peak memory and, when it had one, the GPU.

Every finished run reports it (``resourcesUsed`` in its result and ``resources.used`` in its
model card) so that ``status.suggestedResources`` can say what to request next time
(``mlops_operator.api.rightsizing``). The figures are the container's, not the process's,
when the container's cgroup is where the process sees it (a pod: the kubelet's own counters,
so a data loader's worker processes and native threads count too):

- cgroup v2 (``/sys/fs/cgroup`` is the container's cgroup under its own cgroup namespace):
  ``memory.peak`` and ``cpu.stat``'s ``usage_usec``;
- cgroup v1 (the container's cgroups mounted at ``/sys/fs/cgroup/<controller>``):
  ``memory.max_usage_in_bytes`` and ``cpuacct.usage``;
- elsewhere (a laptop, a test, a host's root cgroup, which counts every process of the
  machine): ``getrusage`` of this process and its waited-for children.

``source`` says which (``cgroup2``, ``cgroup1``, ``rusage``; ``cgroup2+rusage`` when the
kernel has no ``memory.peak`` and the memory is the process's). CPU cores are CPU seconds over
the wall seconds since the process started.

GPUs: the peak memory torch allocated (summed over devices) when the code made torch use
CUDA, and the utilisation NVML reports (``pynvml``, else ``cuda.bindings.nvml`` that torch's
wheels bring), sampled once a second by a daemon thread while the run trains, mean and max.
Without a GPU, or without NVML, there are no GPU figures: nothing is claimed that was not
measured. Standard library only (torch and NVML when a GPU run needs them): the trainer
contract imports this module and must stay fast.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mlops_operator.api import rightsizing

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
SAMPLE_SECONDS = 1.0


def process_age() -> float:
    """Seconds since this process started (Linux; 0 elsewhere), so the wall time counts imports too."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


STARTED = time.monotonic() - process_age()
"""When this process started, on the monotonic clock."""


@dataclasses.dataclass(frozen=True)
class Counters:
    """CPU seconds and peak memory as one source counts them (None: it does not count that)."""

    source: str
    cpu_seconds: float | None
    peak_memory_bytes: int | None


def _read_int(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _usage_usec(path: pathlib.Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def cgroup_v2(root: pathlib.Path = CGROUP_ROOT) -> Counters | None:
    """The container's cgroup v2 counters, or None when ``root`` is not a container's cgroup v2.

    The root cgroup of a machine has no ``memory.current``: a host's ``/sys/fs/cgroup`` (which
    counts every process) is never taken for the container.
    """
    if not (root / "cgroup.controllers").is_file() or not (root / "memory.current").is_file():
        return None
    usec = _usage_usec(root / "cpu.stat")
    peak = _read_int(root / "memory.peak")  # Linux 5.19+
    if usec is None and peak is None:
        return None
    return Counters("cgroup2", None if usec is None else usec / 1e6, peak)


def cgroup_v1(root: pathlib.Path = CGROUP_ROOT) -> Counters | None:
    """The container's cgroup v1 counters, or None when they are not there.

    A hierarchy's root cgroup (it has ``release_agent``) is the machine's, not a container's.
    """
    memory = root / "memory"
    peak = None
    if not (memory / "release_agent").exists():
        peak = _read_int(memory / "memory.max_usage_in_bytes")
    nanos = None
    for name in ("cpuacct", "cpu,cpuacct"):
        folder = root / name
        if (folder / "cpuacct.usage").is_file() and not (folder / "release_agent").exists():
            nanos = _read_int(folder / "cpuacct.usage")
            break
    if nanos is None and peak is None:
        return None
    return Counters("cgroup1", None if nanos is None else nanos / 1e9, peak)


def rusage() -> Counters:
    """This process's and its waited-for children's CPU time and largest resident set."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    peak_kib = max(int(own.ru_maxrss), int(children.ru_maxrss))  # Linux reports KiB
    return Counters("rusage", cpu, peak_kib * 1024)


def counters(root: pathlib.Path = CGROUP_ROOT) -> Counters:
    """The best counters here: the container's cgroup (v2, then v1), else getrusage; a figure the
    cgroup does not count comes from getrusage (``source`` then says ``+rusage``)."""
    found = cgroup_v2(root) or cgroup_v1(root)
    if found is None:
        return rusage()
    if found.cpu_seconds is not None and found.peak_memory_bytes is not None:
        return found
    own = rusage()
    return Counters(
        f"{found.source}+rusage",
        found.cpu_seconds if found.cpu_seconds is not None else own.cpu_seconds,
        found.peak_memory_bytes if found.peak_memory_bytes is not None else own.peak_memory_bytes,
    )


# ---------------------------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------------------------

Reader = Callable[[], list[float]]
"""Returns the utilisation (percent) of each GPU this container sees."""


def _pynvml_reader() -> Reader | None:
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return None
    if not handles:
        return None
    return lambda: [float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles]


def _cuda_bindings_reader() -> Reader | None:
    try:
        from cuda.bindings import nvml  # type: ignore[import-not-found,import-untyped,unused-ignore]

        nvml.init_v2()
        handles = [nvml.device_get_handle_by_index_v2(i) for i in range(nvml.device_get_count_v2())]
    except Exception:
        return None
    if not handles:
        return None
    return lambda: [float(nvml.device_get_utilization_rates(h).gpu) for h in handles]


def nvml_reader() -> Reader | None:
    """A reader of the GPUs' utilisation through NVML, or None (no GPU, no driver, no binding)."""
    return _pynvml_reader() or _cuda_bindings_reader()


class GpuSampler:
    """Samples the GPUs' utilisation (mean over the GPUs) every ``interval`` seconds on a daemon thread.

    ``reader`` is made on the thread (NVML's initialisation never delays the run); a reader that
    cannot be made, or that fails, ends the sampling with the samples taken so far.
    """

    def __init__(
        self, make_reader: Callable[[], Reader | None] = nvml_reader, interval: float = SAMPLE_SECONDS
    ) -> None:
        self._make_reader = make_reader
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.count = 0
        self.total = 0.0
        self.peak = 0.0

    def start(self) -> GpuSampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlops-gpu-usage", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        reader = self._make_reader()
        while reader is not None and not self._stop.is_set():
            try:
                values = reader()
            except Exception:
                return
            if values:
                value = sum(values) / len(values)
                with self._lock:
                    self.count += 1
                    self.total += value
                    self.peak = max(self.peak, value)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._interval + 1)

    def stats(self) -> tuple[float, float] | None:
        """(mean, max) utilisation in percent over the samples; None without a sample."""
        with self._lock:
            if not self.count:
                return None
            return round(self.total / self.count, 1), round(self.peak, 1)


@dataclasses.dataclass
class _Sampling:
    """The process's one sampler (``start_gpu_sampling``), None until a run given GPUs starts it."""

    sampler: GpuSampler | None = None


_sampling = _Sampling()


def start_gpu_sampling(gpus: int) -> None:
    """Start sampling the GPUs' utilisation once per process, when the run was given GPUs."""
    if gpus > 0 and _sampling.sampler is None:
        _sampling.sampler = GpuSampler().start()


def _torch_peak_memory() -> int | None:
    """The peak memory torch allocated, summed over its devices, when the code made it use CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        return int(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# The measure
# ---------------------------------------------------------------------------------------------


def measure(
    *,
    root: pathlib.Path = CGROUP_ROOT,
    started: float | None = None,
    sampler: GpuSampler | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """``resourcesUsed``: ``cpuSeconds``, ``cpuCores``, ``peakMemoryBytes``, ``source`` and, when
    measured, ``gpuPeakMemoryBytes``, ``gpuUtilizationMean`` and ``gpuUtilizationMax`` (percent).

    ``started`` defaults to the process's start and ``sampler`` to the one
    ``start_gpu_sampling`` started (it keeps sampling: a later measure sees more).
    """
    found = counters(root)
    wall = (time.monotonic() if now is None else now) - (STARTED if started is None else started)
    out: dict[str, Any] = {rightsizing.SOURCE: found.source}
    if found.cpu_seconds is not None:
        out[rightsizing.CPU_SECONDS] = round(found.cpu_seconds, 3)
        if wall > 0:
            out[rightsizing.CPU_CORES] = round(found.cpu_seconds / wall, 3)
    if found.peak_memory_bytes is not None:
        out[rightsizing.PEAK_MEMORY] = found.peak_memory_bytes
    gpu_memory = _torch_peak_memory()
    if gpu_memory is not None:
        out[rightsizing.GPU_PEAK_MEMORY] = gpu_memory
    active = sampler if sampler is not None else _sampling.sampler
    stats = active.stats() if active is not None else None
    if stats is not None:
        out[rightsizing.GPU_UTILIZATION_MEAN], out[rightsizing.GPU_UTILIZATION_MAX] = stats
    return out
