"""TPE through Optuna's ``TPESampler``, driven with the ask/tell interface on a rebuilt study.

Optuna's TPE keeps no state beyond its random generator: it reads the study's trials on each
``ask``. So the sweep rebuilds an in-memory study from its history on every pass (completed
configurations as COMPLETE, stopped ones as PRUNED with their rung values as intermediate
values, running ones as RUNNING, failed ones as FAIL), and asks once per new configuration with
a sampler seeded by (seed, configuration id). ``constant_liar`` makes TPE steer parallel asks
away from running configurations; since a configuration asked earlier in the same call is a
RUNNING trial exactly like one read back after a restart, the k-th suggestion does not depend
on when the operator restarted. Optuna is imported lazily: only sweeps that use TPE pay for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from mlops_operator.api import sweep
from mlops_operator.search import space, trials

DEFAULT_STARTUP_TRIALS = 10


def distributions(parameters: Sequence[sweep.SearchParameter]) -> dict[str, Any]:
    """Optuna distributions for the parameters (int/float with log and step, categorical)."""
    from optuna import distributions as od

    out: dict[str, Any] = {}
    for p in parameters:
        if p.type == "categorical":
            out[p.name] = od.CategoricalDistribution(list(p.values or []))
            continue
        assert p.low is not None and p.high is not None
        if p.type == "int":
            step = int(p.step) if p.step is not None else 1
            high = int(p.low) + (int(p.high) - int(p.low)) // step * step
            out[p.name] = od.IntDistribution(int(p.low), high, log=p.log, step=step)
        else:
            top = float(space.grid_values(p, None)[-1]) if p.step is not None else p.high
            out[p.name] = od.FloatDistribution(p.low, top, log=p.log, step=p.step)
    return out


def frozen_trials(
    configs: Sequence[trials.Config], dists: dict[str, Any], parameters: Sequence[sweep.SearchParameter]
) -> list[Any]:
    """The history as Optuna FrozenTrials; configurations outside the current space are left out."""
    import optuna

    state_of = {
        "Complete": optuna.trial.TrialState.COMPLETE,
        "Pruned": optuna.trial.TrialState.PRUNED,
        "Running": optuna.trial.TrialState.RUNNING,
        "Failed": optuna.trial.TrialState.FAIL,
    }
    out = []
    for config in configs:
        params = {p.name: config.params.get(p.name) for p in parameters}
        if any(p.name not in config.params or not space.contains(p, params[p.name]) for p in parameters):
            continue
        state = state_of[config.state]
        value = config.value if config.state == "Complete" else None
        if state == optuna.trial.TrialState.COMPLETE and value is None:
            state = optuna.trial.TrialState.FAIL
        try:
            out.append(
                optuna.trial.create_trial(
                    state=state,
                    value=value,
                    params=params,
                    distributions=dists,
                    intermediate_values={int(r): float(v) for r, v in config.values.items()},
                )
            )
        except ValueError:
            continue  # A value the current distributions refuse; it cannot inform TPE.
    return out


class TPESampler:
    """Optuna's multivariate TPE over the non-budget parameters."""

    def __init__(
        self,
        parameters: Sequence[sweep.SearchParameter],
        *,
        direction: trials.Direction,
        seed: int,
        startup_trials: int | None = None,
    ) -> None:
        self.parameters = list(parameters)
        self.direction = direction
        self.seed = seed
        self.startup_trials = startup_trials or DEFAULT_STARTUP_TRIALS

    @property
    def capacity(self) -> int | None:
        return None

    def propose(self, configs: Sequence[trials.Config], ids: Sequence[int]) -> list[trials.Proposal]:
        if not ids:
            return []
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = distributions(self.parameters)
        study = optuna.create_study(direction=self.direction)
        study.add_trials(frozen_trials(configs, dists, self.parameters))
        out: list[trials.Proposal] = []
        for cid in ids:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.sampler = optuna.samplers.TPESampler(
                    seed=space.derive_seed(self.seed, "tpe", cid),
                    n_startup_trials=self.startup_trials,
                    multivariate=True,
                    constant_liar=True,
                )
                trial = study.ask(dists)
            out.append(trials.Proposal(params={p.name: trial.params[p.name] for p in self.parameters}))
        return out
