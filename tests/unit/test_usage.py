"""mlops_workloads.usage: the container's cgroup (v2, v1) from fake files, the getrusage
fallback, the GPU sampler with a fake NVML reader, and the compact ``resourcesUsed``."""

from __future__ import annotations

import pathlib
import threading
import time

import pytest

from mlops_workloads import usage


def v2(root: pathlib.Path, *, peak: int | None = 300 * 2**20, usec: int | None = 4_500_000) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "memory.current").write_text("123456\n")
    if peak is not None:
        (root / "memory.peak").write_text(f"{peak}\n")
    if usec is not None:
        (root / "cpu.stat").write_text(
            f"usage_usec {usec}\nuser_usec 4000000\nsystem_usec 500000\nnr_periods 0\n"
        )
    return root


def v1(root: pathlib.Path, *, machine_root: bool = False, joint: bool = False) -> pathlib.Path:
    memory = root / "memory"
    cpu = root / ("cpu,cpuacct" if joint else "cpuacct")
    for folder in (memory, cpu):
        folder.mkdir(parents=True, exist_ok=True)
        if machine_root:
            (folder / "release_agent").write_text("\n")
    (memory / "memory.max_usage_in_bytes").write_text(f"{200 * 2**20}\n")
    (cpu / "cpuacct.usage").write_text("2500000000\n")  # nanoseconds
    return root


def test_cgroup_v2_reads_the_containers_peak_and_cpu(tmp_path: pathlib.Path) -> None:
    found = usage.counters(v2(tmp_path))
    assert found == usage.Counters("cgroup2", 4.5, 300 * 2**20)


def test_cgroup_v2_without_memory_peak_takes_the_memory_from_getrusage(tmp_path: pathlib.Path) -> None:
    found = usage.counters(v2(tmp_path, peak=None))  # a kernel before 5.19
    assert found.source == "cgroup2+rusage" and found.cpu_seconds == 4.5
    assert found.peak_memory_bytes is not None and found.peak_memory_bytes > 10 * 2**20  # this process


def test_the_machines_root_cgroup_is_never_taken_for_the_container(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cpu.stat").write_text("usage_usec 999999999999\n")  # every process of the machine
    assert usage.cgroup_v2(root) is None and usage.counters(root).source == "rusage"
    assert usage.cgroup_v1(v1(tmp_path / "v1", machine_root=True)) is None


@pytest.mark.parametrize("joint", [False, True])
def test_cgroup_v1_reads_max_usage_and_cpuacct(tmp_path: pathlib.Path, joint: bool) -> None:
    assert usage.counters(v1(tmp_path, joint=joint)) == usage.Counters("cgroup1", 2.5, 200 * 2**20)


def test_without_a_cgroup_getrusage_counts_this_process_and_its_children(tmp_path: pathlib.Path) -> None:
    found = usage.counters(tmp_path / "nothing")
    assert found.source == "rusage"
    assert found.cpu_seconds is not None and found.cpu_seconds > 0
    assert found.peak_memory_bytes is not None and found.peak_memory_bytes > 10 * 2**20


def test_unreadable_counters_fall_back(tmp_path: pathlib.Path) -> None:
    root = v2(tmp_path, peak=None, usec=None)
    (root / "cpu.stat").write_text("usage_usec lots\n")
    (root / "memory.peak").write_text("max\n")
    assert usage.cgroup_v2(root) is None and usage.counters(root).source == "rusage"


def test_measure_is_compact_and_claims_no_gpu_it_did_not_measure(tmp_path: pathlib.Path) -> None:
    used = usage.measure(root=v2(tmp_path), started=100.0, now=110.0, sampler=None)
    assert used == {"source": "cgroup2", "cpuSeconds": 4.5, "cpuCores": 0.45, "peakMemoryBytes": 300 * 2**20}
    real = usage.measure()  # here: no cgroup of a container, no GPU
    assert real["source"] in {"rusage", "cgroup2", "cgroup1", "cgroup2+rusage", "cgroup1+rusage"}
    assert not {k for k in real if k.startswith("gpu")}
    assert real["cpuCores"] >= 0


def test_the_gpu_sampler_keeps_mean_and_max_over_the_gpus(tmp_path: pathlib.Path) -> None:
    readings = iter([[10.0, 30.0], [90.0, 70.0], [0.0, 0.0]])
    done = threading.Event()

    def reader() -> list[float]:
        try:
            return next(readings)
        except StopIteration:
            done.set()
            raise RuntimeError("NVML went away") from None  # ends the sampling, samples kept

    sampler = usage.GpuSampler(lambda: reader, interval=0.001).start()
    assert done.wait(5)
    sampler.stop()
    assert sampler.stats() == (33.3, 80.0)  # per-sample means 20, 80, 0
    used = usage.measure(root=v2(tmp_path), sampler=sampler)
    assert (used["gpuUtilizationMean"], used["gpuUtilizationMax"]) == (33.3, 80.0)


def test_no_nvml_means_no_gpu_figures() -> None:
    sampler = usage.GpuSampler(lambda: None, interval=0.001).start()
    time.sleep(0.01)
    sampler.stop()
    assert sampler.stats() is None
    assert "gpuUtilizationMean" not in usage.measure(sampler=sampler)
    assert usage.nvml_reader() is None  # this machine has no GPU driver


def test_sampling_starts_only_for_a_run_given_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage, "_sampling", usage._Sampling())
    usage.start_gpu_sampling(0)
    assert usage._sampling.sampler is None
    started: list[usage.GpuSampler] = []
    monkeypatch.setattr(usage.GpuSampler, "start", lambda self: started.append(self) or self)
    usage.start_gpu_sampling(1)
    usage.start_gpu_sampling(1)  # once per process
    assert len(started) == 1 and usage._sampling.sampler is started[0]
