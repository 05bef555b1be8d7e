"""api.rightsizing, pure: quantities, the suggestion from measured use, the largest over trials."""

from __future__ import annotations

import pytest

from mlops_operator.api import rightsizing


@pytest.mark.parametrize(
    ("text", "cores"),
    [("500m", 0.5), ("2", 2.0), ("1.5", 1.5), ("100m", 0.1), ("250000u", 0.25), ("2e-1", 0.2)],
)
def test_cpu_quantities(text: str, cores: float) -> None:
    assert rightsizing.cpu_cores(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1G", 10**9), ("128974848", 128974848), ("1.5Ki", 1536)],
)
def test_memory_quantities(text: str, size: int) -> None:
    assert rightsizing.memory_bytes(text) == size


def test_a_bad_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        rightsizing.quantity("lots")


@pytest.mark.parametrize(
    ("cores", "cpu"),
    [
        (0.25, "300m"),  # 0.3 exactly: no float noise pushing it to 400m
        (0.26, "400m"),  # 0.312 rounds up to the next 100m
        (0.0, "100m"),  # at least 100m
        (0.01, "100m"),
        (1.0, "1200m"),
        (2.5, "3"),  # whole cores without the m
    ],
)
def test_cpu_is_cores_used_with_headroom_rounded_up_to_100m(cores: float, cpu: str) -> None:
    assert rightsizing.suggest({"cpuCores": cores, "peakMemoryBytes": 2**30})["cpu"] == cpu


@pytest.mark.parametrize(
    ("peak", "memory"),
    [
        (100 * 2**20, "128Mi"),  # 125Mi rounded up to 16Mi
        (2**20, "64Mi"),  # at least 64Mi
        (int(819.2 * 2**20), "1Gi"),  # x1.25 = 1024Mi exactly
        (1000 * 2**20, "1264Mi"),  # 1250Mi -> 1264Mi
    ],
)
def test_memory_is_the_peak_with_headroom_rounded_up_to_16mi(peak: int, memory: str) -> None:
    assert rightsizing.suggest({"cpuCores": 0.5, "peakMemoryBytes": peak})["memory"] == memory


def test_gpu_stays_as_requested_unless_measured_idle() -> None:
    used = {"cpuCores": 1.0, "peakMemoryBytes": 2**30}
    assert rightsizing.suggest(used, gpu=1)["gpu"] == 1  # utilisation not measured: keep it
    busy = {**used, "gpuUtilizationMean": 40.0, "gpuUtilizationMax": 95.0}
    idle = {**used, "gpuUtilizationMean": 0.0, "gpuUtilizationMax": 0.0}
    assert rightsizing.suggest(busy, gpu=2)["gpu"] == 2
    assert rightsizing.suggest(idle, gpu=1)["gpu"] == 0
    assert rightsizing.suggest(used)["gpu"] == 0


def test_nothing_measured_suggests_nothing() -> None:
    assert rightsizing.suggest(None) == {} and rightsizing.suggest({}) == {}
    assert rightsizing.suggest({"source": "rusage", "cpuCores": "fast", "peakMemoryBytes": True}) == {}
    assert rightsizing.suggest({"cpuCores": float("nan"), "peakMemoryBytes": -1}) == {}
    # One figure measured: only that one is suggested (and the GPUs as requested).
    assert rightsizing.suggest({"cpuCores": 0.5}, gpu=1) == {"cpu": "600m", "gpu": 1}


def test_largest_over_suggestions_compares_quantities() -> None:
    assert rightsizing.largest(
        [
            {"cpu": "900m", "memory": "1Gi", "gpu": 0},
            None,
            {"cpu": "2", "memory": "640Mi", "gpu": 1},
            {"cpu": "bad", "memory": "1040Mi"},
        ]
    ) == {"cpu": "2", "memory": "1040Mi", "gpu": 1}
    assert rightsizing.largest([]) == {}


def test_largest_used_takes_each_figure_and_joins_the_sources() -> None:
    assert rightsizing.largest_used(
        [
            {"cpuSeconds": 10.0, "cpuCores": 0.9, "peakMemoryBytes": 300, "source": "cgroup2"},
            {"cpuSeconds": 30.0, "cpuCores": 0.4, "peakMemoryBytes": 200, "source": "cgroup2"},
            {"cpuCores": 0.5, "source": "rusage", "gpuUtilizationMax": 12.5},
            {},
        ]
    ) == {
        "cpuSeconds": 30.0,
        "cpuCores": 0.9,
        "peakMemoryBytes": 300,
        "gpuUtilizationMax": 12.5,
        "source": "cgroup2+rusage",
    }
