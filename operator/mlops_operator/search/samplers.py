"""Samplers: where a new configuration's parameters come from.

A sampler answers ``propose(configs, ids)``: parameters for the new configurations ``ids``
given what is known about the earlier ones. Proposing ``[a, b]`` in one call must give the
same answer as proposing ``a``, recording it as running, then proposing ``b``, because that
is what the history looks like after a restart between the two. Grid and random search
satisfy this trivially (a pure function of the configuration id); the model-based samplers
(``tpe``, ``cma``) do by reseeding per configuration and treating pending configurations the
same whether they were proposed in this call or read back from the cluster.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from mlops_operator.api import sweep
from mlops_operator.search import space, trials


class Sampler(Protocol):
    """Proposes parameters for new configurations."""

    @property
    def capacity(self) -> int | None:
        """How many distinct configurations exist (a grid's size), None when unbounded."""
        ...

    def propose(self, configs: Sequence[trials.Config], ids: Sequence[int]) -> list[trials.Proposal]: ...


class RandomSampler:
    """Independent uniform (log-uniform) draws, seeded by (seed, configuration id)."""

    def __init__(self, parameters: Sequence[sweep.SearchParameter], *, seed: int) -> None:
        self.parameters = list(parameters)
        self.seed = seed

    @property
    def capacity(self) -> int | None:
        return None

    def params_for(self, config_id: int) -> dict[str, object]:
        rng = random.Random(space.derive_seed(self.seed, "random", config_id))
        return space.sample_all(self.parameters, rng)

    def propose(self, configs: Sequence[trials.Config], ids: Sequence[int]) -> list[trials.Proposal]:
        return [trials.Proposal(params=self.params_for(cid)) for cid in ids]


class GridSampler:
    """Every combination exactly once, in ``itertools.product`` order: configuration k is point k."""

    def __init__(self, parameters: Sequence[sweep.SearchParameter], *, points: int | None) -> None:
        self.parameters = list(parameters)
        self.points = points
        self._size = space.grid_size(self.parameters, points)

    @property
    def capacity(self) -> int | None:
        return self._size

    def propose(self, configs: Sequence[trials.Config], ids: Sequence[int]) -> list[trials.Proposal]:
        return [trials.Proposal(params=space.grid_point(self.parameters, self.points, cid)) for cid in ids]
