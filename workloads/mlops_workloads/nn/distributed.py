"""torch.distributed for the built-in networks: the world from torchrun's variables, shards, reductions.

The operator starts ``workers`` pods (an Indexed Job behind a headless Service) with
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set as torchrun
sets them, so ``init_process_group(init_method="env://")`` needs nothing else. The backend
is ``nccl`` when the device is a GPU and ``gloo`` on the CPU.

Every rank must run the same number of optimiser steps in an epoch (DistributedDataParallel
all-reduces the gradients of each backward pass; a rank with one batch more waits forever),
so the training rows are sharded as ``torch.utils.data.DistributedSampler`` does: one
permutation per epoch drawn from the same seed on every rank, padded by wrapping around to
a multiple of the world size, then every ``world``-th index from the rank's offset.
Validation losses are summed over the ranks' disjoint shards and divided by the total row
count, then broadcast from rank 0, so every rank sees the same bits and takes the same
early-stopping decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist

from mlops_workloads import runtime

TIMEOUT = datetime.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the training run."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise runtime.WorkloadError("InvalidConfig", f"${name} must be an integer, got {raw!r}") from None


def from_env(environ: Mapping[str, str] | None = None, *, workers: int = 1) -> World:
    """The world torchrun's variables describe; ``workers`` (the config's) must agree with WORLD_SIZE."""
    env = os.environ if environ is None else environ
    size = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    local = _int(env, "LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise runtime.WorkloadError("InvalidConfig", f"RANK={rank} does not fit WORLD_SIZE={size}")
    if workers not in (1, size):
        raise runtime.WorkloadError(
            "InvalidConfig", f"the config says workers={workers} but WORLD_SIZE={size}"
        )
    if size > 1 and not (env.get("MASTER_ADDR") and env.get("MASTER_PORT")):
        raise runtime.WorkloadError("InvalidConfig", f"WORLD_SIZE={size} needs MASTER_ADDR and MASTER_PORT")
    return World(size=size, rank=rank, local_rank=local)


def current() -> World:
    """The initialised process group's world; a world of one outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        local = _int(os.environ, "LOCAL_RANK", 0)
        return World(size=dist.get_world_size(), rank=dist.get_rank(), local_rank=local)
    return World()


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def session(world: World, device: torch.device) -> Iterator[None]:
    """The process group for the duration of the block (nothing at all for a world of one)."""
    if not world.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend(device),
        init_method="env://",
        world_size=world.size,
        rank=world.rank,
        timeout=TIMEOUT,
    )
    try:
        yield
        # Every rank reaches the teardown before any tears down: a rank that destroys its
        # group while a peer's last collective is still in flight makes gloo abort the peer.
        dist.barrier()
    finally:
        # Whatever still holds the group (a wrapper left in a reference cycle) is freed now,
        # while the group exists, not by the collector at interpreter exit, where gloo's
        # thread teardown can abort the process ("terminate called without an active exception").
        gc.collect()
        dist.destroy_process_group()


def shard(n: int, *, epoch: int, seed: int, world: World) -> torch.Tensor:
    """This rank's training-row indices for one epoch (shuffled; the same count on every rank)."""
    generator = torch.Generator()
    generator.manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    if not world.distributed:
        return order
    total = -(-n // world.size) * world.size
    if total > n:  # pad by wrapping around, as DistributedSampler does
        order = order.repeat(-(-total // n))[:total]
    return order[world.rank : total : world.size]


def rows(n: int, world: World) -> slice:
    """This rank's share of a split that is only evaluated (disjoint; the union is every row)."""
    return slice(world.rank, n, world.size)


def mean(total: torch.Tensor, count: int, world: World) -> float:
    """``sum(total) / sum(count)`` over the ranks, identical on every rank (broadcast from rank 0)."""
    value = total.detach().to(torch.float64)
    pair = torch.stack([value, torch.tensor(float(count), dtype=torch.float64, device=value.device)])
    if world.distributed:
        device = _collective_device()
        pair = pair.to(device)
        dist.all_reduce(pair, op=dist.ReduceOp.SUM)
        dist.broadcast(pair, src=0)
    summed, rows_seen = (float(v) for v in pair.cpu())
    return summed / rows_seen if rows_seen > 0 else float("nan")


def _collective_device() -> torch.device:
    """Where tensors must live for the current backend's collectives (nccl: the current GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def wrap(module: torch.nn.Module, device: torch.device, world: World) -> Any:
    """DistributedDataParallel around ``module`` in a world of several (rank 0's weights everywhere)."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)
