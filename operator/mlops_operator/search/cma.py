"""CMA-ES with the ``cmaes`` library (the one Optuna's ``CmaEsSampler`` wraps), by ask/tell.

Why not Optuna's ``CmaEsSampler`` itself: it keeps the optimizer *pickled in trial system
attributes*, and a sweep rebuilt from TrainingJobs has no such attributes to restore (and
unpickling anything stored in the cluster would let whoever can edit an annotation run code
in the operator). The optimizer's state is instead a deterministic function of its seed and
the generations told so far, so each pass replays it: every configuration records the
generation it was asked in (an annotation on its TrainingJob), and generation g is told, in
configuration order, as soon as ``population_size`` of its configurations have a value,
exactly as Optuna's sampler does. When the optimizer converges (``should_stop``) it restarts
with twice the population (IPOP-CMA-ES), again deterministically.

Parameters live in the unit cube (log-scaled where asked, int and stepped values rounded on
the way out). Categorical parameters, which CMA-ES cannot model, are drawn uniformly per
configuration, as Optuna's independent fallback does. A one-dimensional space gets a dummy
second dimension, since CMA-ES needs at least two.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from mlops_operator.api import sweep
from mlops_operator.search import space, trials

MAX_RESTARTS = 8


class CmaSampler:
    """CMA-ES over the numeric non-budget parameters."""

    def __init__(
        self,
        parameters: Sequence[sweep.SearchParameter],
        *,
        direction: trials.Direction,
        seed: int,
        population_size: int | None = None,
        startup_trials: int | None = None,
    ) -> None:
        self.numeric = [p for p in parameters if p.type != "categorical"]
        self.categorical = [p for p in parameters if p.type == "categorical"]
        self.direction = direction
        self.seed = seed
        self.dim = max(2, len(self.numeric))
        self.population_size = population_size or 4 + math.floor(3 * math.log(self.dim))
        self.startup_trials = startup_trials or 0

    @property
    def capacity(self) -> int | None:
        return None

    def _new(self, restart: int) -> Any:
        import cmaes
        import numpy as np

        return cmaes.CMA(
            mean=np.full(self.dim, 0.5),
            sigma=1.0 / 6.0,
            bounds=np.array([[0.0, 1.0]] * self.dim),
            seed=space.derive_seed(self.seed, "cma-init", restart),
            population_size=self.population_size * 2**restart,
        )

    def _point(self, params: Any) -> Any:
        import numpy as np

        x = [space.to_unit(p, float(params[p.name])) for p in self.numeric]
        x += [0.5] * (self.dim - len(x))
        return np.array(x)

    def _usable(self, config: trials.Config) -> bool:
        return config.generation is not None and all(
            p.name in config.params and space.contains(p, config.params[p.name]) for p in self.numeric
        )

    def replay(self, configs: Sequence[trials.Config]) -> tuple[Any, int]:
        """The optimizer after every generation that can be told, and the current generation."""
        valued = [
            c
            for c in configs
            if c.state in ("Complete", "Pruned") and c.value is not None and self._usable(c)
        ]
        restart = 0
        optimizer = self._new(restart)
        generation = 0
        while True:
            # The first to finish, so a later completion never changes a generation already told.
            members = sorted(
                (c for c in valued if c.generation == generation), key=lambda c: (c.finished, c.id)
            )
            members = members[: optimizer.population_size]
            if len(members) < optimizer.population_size:
                return optimizer, generation
            # cmaes minimises.
            optimizer.tell(
                [
                    (self._point(c.params), -trials.score(float(c.value or 0.0), self.direction))
                    for c in members
                ]
            )
            generation += 1
            if optimizer.should_stop() and restart < MAX_RESTARTS:
                restart += 1
                optimizer = self._new(restart)

    def propose(self, configs: Sequence[trials.Config], ids: Sequence[int]) -> list[trials.Proposal]:
        if not ids:
            return []
        optimizer, generation = self.replay(configs)
        finished = sum(1 for c in configs if c.state in ("Complete", "Pruned"))
        out: list[trials.Proposal] = []
        for cid in ids:
            rng = random.Random(space.derive_seed(self.seed, "cma-categorical", cid))
            params: dict[str, Any] = {}
            if finished < self.startup_trials:
                params.update(
                    space.sample_all(self.numeric, random.Random(space.derive_seed(self.seed, "cma", cid)))
                )
                gen: int | None = None
            else:
                optimizer.reseed_rng(space.derive_seed(self.seed, "cma-ask", cid))
                x = optimizer.ask()
                params.update(
                    {p.name: space.from_unit(p, float(u)) for p, u in zip(self.numeric, x, strict=False)}
                )
                gen = generation
            params.update(space.sample_all(self.categorical, rng))
            out.append(trials.Proposal(params=params, generation=gen))
        return out
