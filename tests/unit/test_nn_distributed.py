"""The PyTorch network on two workers, for real: two processes, gloo on 127.0.0.1, one model written.

Each process is a rank as the operator starts it (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``; the same config file for both) and runs the training
workload's entry point; a spy around the model-directory writers records which rank wrote.
Plus the pieces on their own: the world from the environment, the shards, the reductions.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import _train_data
import pytest
import torch

from mlops_operator.api import trainingjob
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.nn import distributed

RANK_SCRIPT = """
import json, os, sys
from mlops_workloads import runtime
from mlops_workloads.train import __main__ as entry, artifacts

def spy(original):
    def wrapper(*args, **kwargs):
        with open(os.environ["SPY_LOG"], "a", encoding="utf-8") as fh:
            fh.write(os.environ["RANK"] + "\\n")
        return original(*args, **kwargs)
    return wrapper

artifacts.write_onnx_model_dir = spy(artifacts.write_onnx_model_dir)
artifacts.write_model_dir = spy(artifacts.write_model_dir)
sys.exit(entry.main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(data_dir: pathlib.Path, out: pathlib.Path, *, workers: int) -> trainingjob.TrainConfig:
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "ddp", "namespace": "ns"},
            "spec": {
                "datasetRef": {"name": "bc"},
                "model": {
                    "estimator": "TorchMLPClassifier",
                    "params": {"hidden_units": 32, "epochs": 40, "patience": 5, "batch_size": 32},
                },
                "workers": workers,
                "metrics": ["accuracy", "roc_auc"],
                "output": {"storageUri": f"file://{out}"},
            },
        }
    )
    assert trainingjob.validate_spec(tj.spec) == []
    digest = json.loads((data_dir / "manifest.json").read_text())["digest"]
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=rworkload.WorkloadSettings()
    )
    return _train_data.staged(config, out.with_name(f"{out.name}.staging"))


def _start_ranks(tmp_path: pathlib.Path, config: trainingjob.TrainConfig) -> list[subprocess.Popen[str]]:
    (tmp_path / "config.json").write_text(json.dumps(config.to_api()))
    port = _free_port()
    procs: list[subprocess.Popen[str]] = []
    for rank in range(config.workers):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLOPS_", "WORLD_SIZE", "RANK", "MASTER_"))
        }
        env |= {
            "MLOPS_CONFIG_FILE": str(tmp_path / "config.json"),
            "MLOPS_RESULT_PATH": str(tmp_path / f"result-{rank}"),
            "WORLD_SIZE": str(config.workers),
            "RANK": str(rank),
            "LOCAL_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "SPY_LOG": str(tmp_path / "writes.log"),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_SCRIPT],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def test_two_workers_train_one_model_with_gloo(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "breast_cancer")
    out = tmp_path / "model"
    config = _config(data_dir, out, workers=2)
    assert config.workers == 2
    started = time.monotonic()
    procs = _start_ranks(tmp_path, config)
    outputs = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        outputs.append((proc.returncode, stdout, stderr))
    for code, _, stderr in outputs:
        assert code == 0, stderr[-3000:]
    assert "rank 0/2 epoch 1/40" in outputs[0][2] and "rank 1/2 epoch 1/40" in outputs[1][2]  # progress
    print(f"two gloo workers: {time.monotonic() - started:.1f}s")

    results = [json.loads((tmp_path / f"result-{rank}").read_text()) for rank in (0, 1)]
    main, other = results
    assert main["ok"] and other["ok"]
    assert main["worldSize"] == other["worldSize"] == 2
    assert main["framework"] == "pytorch" and main["device"] == "cpu"
    assert main["metrics"]["validation"]["accuracy"] >= 0.9
    assert main["modelUri"] == f"file://{out}/{main['modelVersion']}"
    # Every rank took the same early-stopping decision.
    assert (main["epochs"], main["bestEpoch"]) == (other["epochs"], other["bestEpoch"])
    # The other rank reports a small result and writes nothing.
    assert other["rank"] == 1 and "modelUri" not in other and "metrics" not in other
    assert (tmp_path / "writes.log").read_text().split() == ["0"]
    assert [p.name for p in out.iterdir()] == [main["modelVersion"]]  # rank 0 alone published
    out = _train_data.model_dir(main)
    assert {p.name for p in out.iterdir()} == {
        "model.onnx",
        "preprocessor.skops",
        "schema.json",
        "baseline.json",
        "model_card.json",
    }
    card = json.loads((out / "model_card.json").read_text())
    assert card["worldSize"] == 2 and card["hardware"]["worldSize"] == 2


def test_a_lost_worker_fails_the_run_retryably_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "breast_cancer")
    config = _config(data_dir, tmp_path / "model", workers=2)
    config = config.model_copy(update={"params": {**config.params, "epochs": 10000, "patience": 0}})
    procs = _start_ranks(tmp_path, config)
    try:
        assert procs[1].stderr is not None
        deadline = time.monotonic() + 120
        while "epoch 2/" not in (procs[1].stderr.readline() or "epoch 2/"):  # both ranks are training
            assert time.monotonic() < deadline
        procs[1].kill()
        procs[1].wait(timeout=30)
        procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    result = json.loads((tmp_path / "result-0").read_text())
    assert result["ok"] is False and result["reason"] == "DistributedFailed", result
    assert procs[0].returncode == 1  # retried by the Job's backoffLimit, not a permanent failure
    assert not (tmp_path / "model").exists() and not (tmp_path / "writes.log").exists()
    assert not (tmp_path / "model.staging" / "model_card.json").exists()


def test_world_from_the_environment() -> None:
    assert distributed.from_env({}) == distributed.World(size=1, rank=0, local_rank=0)
    env = {
        "WORLD_SIZE": "4",
        "RANK": "3",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
    }
    world = distributed.from_env(env, workers=4)
    assert world == distributed.World(size=4, rank=3, local_rank=1) and world.distributed and not world.main
    for bad, workers in (
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, 2),
        ({"WORLD_SIZE": "2", "RANK": "0"}, 2),  # no rendezvous address
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, 3),
        ({}, 2),  # the config says two workers, the pod runs alone
        ({"WORLD_SIZE": "two"}, 1),
    ):
        with pytest.raises(runtime.WorkloadError) as info:
            distributed.from_env(bad, workers=workers)
        assert info.value.reason == "InvalidConfig"


@pytest.mark.parametrize(("n", "size"), [(10, 3), (7, 2), (2, 4), (64, 8), (1, 3)])
def test_shards_are_equal_and_cover_every_row(n: int, size: int) -> None:
    shards = [
        distributed.shard(n, epoch=5, seed=1, world=distributed.World(size=size, rank=r)) for r in range(size)
    ]
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every rank
    assert set(torch.cat(shards).tolist()) == set(range(n))
    assert len(shards[0]) == -(-n // size)
    if n >= size:
        # Padding only repeats rows to fill the last round, as DistributedSampler does.
        assert len(torch.cat(shards)) - n < size


def test_shards_are_reshuffled_per_epoch_and_reproducible() -> None:
    one = distributed.World()
    assert torch.equal(
        distributed.shard(50, epoch=1, seed=0, world=one), distributed.shard(50, epoch=1, seed=0, world=one)
    )
    assert not torch.equal(
        distributed.shard(50, epoch=1, seed=0, world=one), distributed.shard(50, epoch=2, seed=0, world=one)
    )
    assert sorted(distributed.shard(50, epoch=3, seed=0, world=one).tolist()) == list(range(50))


def test_mean_and_backend_in_a_world_of_one() -> None:
    assert distributed.mean(torch.tensor(6.0), 4, distributed.World()) == 1.5
    assert distributed.backend(torch.device("cpu")) == "gloo"
    assert distributed.backend(torch.device("cuda", 0)) == "nccl"
    assert distributed.current() == distributed.World()
    assert distributed.rows(10, distributed.World(size=3, rank=1)) == slice(1, 10, 3)
