"""How many trials (and how much training) each sweep algorithm needs to reach a target score.

Anchor: random search, run side by side in the same process on the same problem. Each
algorithm is driven exactly as the operator drives it (``search.make(spec, seed)`` and
``suggest(history, 1)`` on a history rebuilt every step), and every trial is a real
scikit-learn fit: an ``MLPClassifier`` (one of the TrainingJob registry's estimators) on the
bundled digits dataset, scored by log loss on a fixed validation split (a continuous score:
accuracy on 540 validation rows moves in steps of 0.2% and saturates). The budget parameter
of successive halving is ``max_iter`` (training epochs): 2, 6, 18, 54 with reductionFactor 3.
Random search and TPE train every trial with the full 54 epochs.

For each algorithm and seed the sweep runs until one trial's validation log loss reaches the
target (or ``--max-epochs`` of training are spent: the cap is compute, not trials, so cheap
low-rung trials are not cut short), one trial at a time. Reported per algorithm, as medians over the
seeds: trials run, training epochs spent (the compute measure that matters for halving, whose
early rungs are cheap), and wall time; then the ratios random / algorithm (> 1: fewer needed).

    .venv/bin/python benchmarks/search_efficiency.py                 # 10 seeds, target 0.062
    .venv/bin/python benchmarks/search_efficiency.py --seeds 3 --target 0.07
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per fit: comparable timings on a shared box

import argparse
import dataclasses
import statistics
import time
import warnings
from typing import Any

from mlops_operator import search
from mlops_operator.api import sweep
from mlops_operator.search import trials

FULL_EPOCHS = 54
SPACE: list[dict[str, Any]] = [
    {"name": "alpha", "type": "float", "low": 1e-6, "high": 1.0, "log": True},
    {"name": "learning_rate_init", "type": "float", "low": 1e-4, "high": 0.5, "log": True},
    {"name": "batch_size", "type": "int", "low": 16, "high": 256, "log": True},
    {"name": "activation", "type": "categorical", "values": ["relu", "tanh", "logistic"]},
    {"name": "max_iter", "type": "int", "low": 2, "high": FULL_EPOCHS},
]
ALGORITHMS: dict[str, dict[str, Any]] = {
    "random": {"name": "random"},
    "tpe": {"name": "tpe", "startupTrials": 10},
    "successiveHalving": {
        "name": "successiveHalving",
        "budget": {"parameter": "max_iter", "reductionFactor": 3},
    },
    "hyperband": {"name": "hyperband", "budget": {"parameter": "max_iter", "reductionFactor": 3}},
    "successiveHalving+tpe": {
        "name": "successiveHalving",
        "sampler": "tpe",
        "budget": {"parameter": "max_iter", "reductionFactor": 3},
    },
}


def spec_for(algorithm: dict[str, Any]) -> sweep.HyperparameterSweepSpec:
    space = SPACE
    if "budget" not in algorithm:  # without a budget, every trial trains the full 54 epochs
        space = [p for p in SPACE if p["name"] != "max_iter"]
    return sweep.HyperparameterSweepSpec.model_validate(
        {
            "trialTemplate": {
                "datasetRef": {"name": "digits"},
                "model": {
                    "estimator": "MLPClassifier",
                    "params": {"hidden_layer_sizes": [32], "random_state": 0},
                },
            },
            "searchSpace": space,
            "objective": {"metric": "log_loss", "direction": "minimize"},
            "algorithm": algorithm,
        }
    )


@dataclasses.dataclass
class Problem:
    """The digits data, split once; ``fit`` trains one trial and returns its validation log loss."""

    x_train: Any
    x_val: Any
    y_train: Any
    y_val: Any

    @classmethod
    def load(cls) -> Problem:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            x / 16.0, y, test_size=0.3, random_state=0, stratify=y
        )
        return cls(x_train, x_val, y_train, y_val)

    def fit(self, params: dict[str, Any]) -> float:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.metrics import log_loss
        from sklearn.neural_network import MLPClassifier

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, **params)
            model.fit(self.x_train, self.y_train)
        return float(log_loss(self.y_val, model.predict_proba(self.x_val)))


@dataclasses.dataclass
class Run:
    trials: int
    epochs: int
    seconds: float
    reached: bool
    best: float


def run(problem: Problem, name: str, seed: int, *, target: float, max_epochs: int, max_trials: int) -> Run:
    algorithm = search.make(spec_for(ALGORITHMS[name]), seed=seed)
    history: list[trials.Trial] = []
    epochs, best, started = 0, float("inf"), time.perf_counter()
    for index in range(max_trials):
        (suggestion,) = algorithm.suggest(history, 1)
        params = algorithm.trial_params(suggestion)
        params.setdefault("max_iter", FULL_EPOCHS)
        value = problem.fit(params)
        epochs += int(params["max_iter"])
        best = min(best, value)
        history.append(
            trials.Trial(
                index=index,
                params=suggestion.params,
                state="Succeeded",
                value=value,
                config=suggestion.config,
                rung=suggestion.rung,
                generation=suggestion.generation,
                finished=f"{index:08d}",
            )
        )
        if value <= target:
            return Run(index + 1, epochs, time.perf_counter() - started, True, best)
        if epochs >= max_epochs:
            break
    return Run(len(history), epochs, time.perf_counter() - started, False, best)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--target", type=float, default=0.062, help="validation log loss to reach (or go below)"
    )
    parser.add_argument(
        "--max-epochs", type=int, default=200 * FULL_EPOCHS, help="compute budget per run (200 full trials)"
    )
    parser.add_argument("--max-trials", type=int, default=2000)
    parser.add_argument(
        "--algorithms", default="random,tpe,successiveHalving,hyperband,successiveHalving+tpe"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.algorithms.split(",") if n.strip()]
    if "random" not in names:
        names.insert(0, "random")
    problem = Problem.load()
    print(
        f"digits, MLPClassifier(32), target validation log loss <= {args.target}, {args.seeds} seeds, "
        f"at most {args.max_epochs} epochs per run; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    results: dict[str, list[Run]] = {}
    for name in names:
        results[name] = []
        for seed in range(args.seeds):
            r = run(
                problem,
                name,
                seed,
                target=args.target,
                max_epochs=args.max_epochs,
                max_trials=args.max_trials,
            )
            results[name].append(r)
            mark = "" if r.reached else " (not reached)"
            print(
                f"  {name:<22} seed {seed}: {r.trials:4d} trials, {r.epochs:6d} epochs, "
                f"{r.seconds:6.1f}s, best {r.best:.4f}{mark}",
                flush=True,
            )
    print()
    print(
        f"{'algorithm':<22} {'trials':>8} {'epochs':>8} {'seconds':>8} {'reached':>8}   (medians over seeds)"
    )
    medians: dict[str, tuple[float, float, float]] = {}
    for name, runs in results.items():
        medians[name] = (
            statistics.median(r.trials for r in runs),
            statistics.median(r.epochs for r in runs),
            statistics.median(r.seconds for r in runs),
        )
        reached = sum(r.reached for r in runs)
        t, e, s = medians[name]
        print(f"{name:<22} {t:8.1f} {e:8.1f} {s:8.1f} {reached:>5}/{len(runs)}")
    print()
    anchor = medians["random"]
    for name in names:
        if name == "random":
            continue
        t, e, s = medians[name]
        print(
            f"random / {name}: {anchor[0] / t:.2f}x trials, {anchor[1] / e:.2f}x epochs, "
            f"{anchor[2] / s:.2f}x time"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
