"""Schedulers: which trial runs next, new configurations or promotions to a higher budget.

- ``single``: one trial per configuration (grid, random, tpe, cmaes without early stopping).
- ``halving``: asynchronous successive halving (ASHA, Li et al. 2020). Every configuration
  starts at the lowest rung; whenever a slot frees, a configuration that is in the top
  ``1/eta`` of the trials finished at its rung and has not been promoted yet runs again at
  the next rung (budget times eta), deepest rungs first; otherwise a new configuration starts.
  No rung waits for stragglers, so ``parallelism`` slots stay busy.
- ``hyperband``: asynchronous Hyperband: configurations are dealt to brackets that start at
  rung 0, 1, ... R (more aggressive to none), in Hyperband's proportions, and halve within
  their bracket.
- ``median``: the median stopping rule on the rungs: a configuration climbs rung by rung and
  is stopped at rung r (from ``startStep``) when its value is worse than the median of the
  other configurations' values at r that finished before it (once ``minTrials`` of them have).
  Comparing only with those that finished earlier makes each decision final: later trials
  cannot revive a stopped configuration.

Every decision is computed from the history (values, rungs and completion order), never from
memory, so a restarted operator makes the same decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Sequence
from typing import Literal

from mlops_operator.search import samplers, trials

Mode = Literal["single", "halving", "hyperband", "median"]


@functools.lru_cache(maxsize=32)
def hyperband_cycle(top_rung: int, eta: int) -> tuple[int, ...]:
    """The bracket (its first rung) of configuration k is ``cycle[k % len(cycle)]``.

    Bracket b has ``ceil((R+1)/(R-b+1) * eta^(R-b))`` configurations per Hyperband iteration
    (Li et al. 2018); they are interleaved by smooth weighted round robin so that any prefix
    of configurations is spread over the brackets in those proportions.
    """
    r = top_rung
    slots: list[tuple[float, int]] = []
    for b in range(r + 1):
        count = math.ceil((r + 1) / (r - b + 1) * eta ** (r - b))
        slots.extend(((k + 0.5) / count, b) for k in range(count))
    slots.sort()
    return tuple(b for _, b in slots)


@dataclasses.dataclass(frozen=True)
class Scheduler:
    direction: trials.Direction
    budgets: tuple[int | float, ...] = ()
    mode: Mode = "single"
    eta: int = 3
    min_trials: int = 5
    start_step: int = 0

    @property
    def top_rung(self) -> int:
        return max(len(self.budgets) - 1, 0)

    def first_rung(self, config_id: int) -> int:
        if self.mode != "hyperband":
            return 0
        cycle = hyperband_cycle(self.top_rung, self.eta)
        return cycle[config_id % len(cycle)]

    def budget(self, rung: int) -> int | float | None:
        return self.budgets[rung] if self.budgets else None

    # -- decisions --------------------------------------------------------------------------

    def _by_config(self, history: Sequence[trials.Trial]) -> dict[int, list[trials.Trial]]:
        grouped: dict[int, list[trials.Trial]] = {}
        for t in history:
            grouped.setdefault(t.config_id, []).append(t)
        for ts in grouped.values():
            ts.sort(key=lambda t: (t.rung, t.index))
        return grouped

    def _rank_key(self, t: trials.Trial) -> tuple[float, int]:
        return (-trials.score(float(t.value or 0.0), self.direction), t.config_id)

    def promotions(self, history: Sequence[trials.Trial]) -> list[trials.Trial]:
        """Finished trials whose configuration should run at the next rung, most urgent first."""
        if self.mode == "single" or not self.budgets:
            return []
        grouped = self._by_config(history)
        # A configuration can move on only from its latest trial, when that succeeded below the top.
        waiting = {
            cid: ts[-1] for cid, ts in grouped.items() if ts[-1].scored and ts[-1].rung < self.top_rung
        }
        if self.mode == "median":
            stopped = self._median_stopped(history)
            go = [t for cid, t in waiting.items() if cid not in stopped]
            return sorted(go, key=lambda t: t.finish_key())
        found: list[tuple[int, int, int, trials.Trial]] = []
        for (bracket, rung), members in self._rungs(history).items():
            ranked = sorted(members, key=self._rank_key)
            for rank, t in enumerate(ranked[: len(ranked) // self.eta]):
                if waiting.get(t.config_id) is t:
                    found.append((-rung, bracket, rank, t))
        found.sort(key=lambda f: (f[0], f[1], f[2]))
        return [f[3] for f in found]

    def _rungs(self, history: Sequence[trials.Trial]) -> dict[tuple[int, int], list[trials.Trial]]:
        """Succeeded trials per (bracket, rung)."""
        out: dict[tuple[int, int], list[trials.Trial]] = {}
        for t in history:
            if t.scored:
                out.setdefault((self.first_rung(t.config_id), t.rung), []).append(t)
        return out

    def _median_stopped(self, history: Sequence[trials.Trial]) -> set[int]:
        """Configurations the median rule stopped (final decisions, see the module docstring)."""
        by_rung: dict[int, list[trials.Trial]] = {}
        for t in history:
            if t.scored:
                by_rung.setdefault(t.rung, []).append(t)
        stopped: set[int] = set()
        for rung, members in by_rung.items():
            if rung < self.start_step or rung >= self.top_rung:
                continue
            ordered = sorted(members, key=lambda t: t.finish_key())
            for i, t in enumerate(ordered):
                earlier = [trials.score(float(e.value or 0.0), self.direction) for e in ordered[:i]]
                if len(earlier) >= self.min_trials and trials.score(
                    float(t.value or 0.0), self.direction
                ) < statistics.median(earlier):
                    stopped.add(t.config_id)
        return stopped

    def pruned(self, history: Sequence[trials.Trial]) -> set[int]:
        """Configurations stopped below the top rung (successive halving: not promoted so far)."""
        if self.mode == "single" or not self.budgets:
            return set()
        grouped = self._by_config(history)
        below = {cid for cid, ts in grouped.items() if ts[-1].scored and ts[-1].rung < self.top_rung}
        if self.mode == "median":
            return below & self._median_stopped(history)
        return below - {t.config_id for t in self.promotions(history)}

    # -- suggestions ------------------------------------------------------------------------

    def suggest(
        self, history: Sequence[trials.Trial], n: int, sampler: samplers.Sampler
    ) -> list[trials.Suggestion]:
        """Up to ``n`` trials to start: promotions first, then new configurations."""
        if n <= 0:
            return []
        out = [
            trials.Suggestion(
                config=t.config_id,
                params=dict(t.params),
                rung=t.rung + 1,
                budget=self.budget(t.rung + 1),
                generation=t.generation,
            )
            for t in self.promotions(history)[:n]
        ]
        start = trials.next_config_id(history)
        count = n - len(out)
        if sampler.capacity is not None:
            count = min(count, sampler.capacity - start)
        if count <= 0:
            return out
        # The sampler sees the promotions just decided as running, as it would after a restart.
        pending = [
            trials.Trial(
                index=-1 - i,
                params=s.params,
                state="Pending",
                config=s.config,
                rung=s.rung,
                generation=s.generation,
            )
            for i, s in enumerate(out)
        ]
        view = trials.configs([*history, *pending], top_rung=self.top_rung)
        ids = list(range(start, start + count))
        for cid, proposal in zip(ids, sampler.propose(view, ids), strict=True):
            rung = self.first_rung(cid)
            out.append(
                trials.Suggestion(
                    config=cid,
                    params=proposal.params,
                    rung=rung,
                    budget=self.budget(rung),
                    generation=proposal.generation,
                )
            )
        return out
