"""The built-in multilayer perceptron: TorchMLPClassifier and TorchMLPRegressor.

Both take the Dataset's preprocessed features (the fitted preprocessor's output, densified
to float32) and look like scikit-learn estimators (``get_params``/``set_params``, ``fit``,
``predict``, ``predict_proba``, ``classes_``), so the training run scores them with the same
metrics code, cross-validates them with the same folds and wraps them in the same
``Pipeline`` as every other estimator.

The network is ``hidden_layers`` x (Linear -> ReLU -> Dropout) and an output layer: one
logit per class (softmax probabilities) or one value (regression, on a target standardised
with the training split's mean and standard deviation). It trains with Adam
(``learning_rate``, ``weight_decay``) on shuffled mini-batches of ``batch_size`` rows for at
most ``epochs`` epochs; with a validation split it stops once the validation loss has not
improved for ``patience`` epochs (0: never stops early) and keeps the weights of the best
epoch. ``torch.manual_seed(random_state)`` and a seeded shuffle make a CPU run reproducible.

In an initialised process group (``nn.distributed``) the network is wrapped in
DistributedDataParallel, each rank trains on its shard of the training rows and the losses
are averaged over all ranks, so every rank stops at the same epoch with the same weights.

Predictions always run on the CPU with the exact module that is exported to ONNX
(``head()``: the network plus softmax or the de-standardisation, both in float64), so what
the server computes from ``model.onnx`` is what the trainer measured.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn import base

from mlops_workloads.nn import distributed
from mlops_workloads.train import device as device_mod

LOG = logging.getLogger("mlops_workloads.nn")
LOG_LINES = 50
"""Progress lines per run: the first epochs, then about this many, and the early stop."""
HISTORY_LIMIT = 200
"""At most this many per-epoch entries go into the model card (evenly thinned, best epoch kept)."""
PREDICT_ROWS = 8192
"""Rows per forward pass when predicting or computing a validation loss."""


def as_matrix(x: Any) -> np.ndarray:
    """Preprocessor output as a dense, C-contiguous float32 matrix (scipy sparse is densified)."""
    if hasattr(x, "toarray"):
        x = x.toarray()
    matrix = np.asarray(x, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {matrix.shape}")
    return np.ascontiguousarray(matrix)


def network(
    n_in: int, n_out: int, *, hidden_layers: int, hidden_units: int, dropout: float
) -> torch.nn.Sequential:
    """hidden_layers x (Linear -> ReLU -> Dropout), then Linear(hidden_units, n_out)."""
    layers: list[torch.nn.Module] = []
    width = n_in
    for _ in range(hidden_layers):
        layers += [torch.nn.Linear(width, hidden_units), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = hidden_units
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


class ClassifierHead(torch.nn.Module):
    """The network with softmax: class probabilities, in the order of ``classes_``.

    The softmax runs in float64, so each row sums to 1 to float64 precision (log-loss and
    callers that check for probabilities expect that; float32 rows are off by ~1e-7).
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x).to(torch.float64), dim=1)


class RegressorHead(torch.nn.Module):
    """The network with the target's de-standardisation, in float64 (so large targets keep digits)."""

    def __init__(self, net: torch.nn.Module, *, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x).squeeze(-1).to(torch.float64) * self.std + self.mean
        return out


def _thin(history: list[dict[str, Any]], best_epoch: int) -> list[dict[str, Any]]:
    if len(history) <= HISTORY_LIMIT:
        return list(history)
    keep = set(np.linspace(0, len(history) - 1, HISTORY_LIMIT - 1).round().astype(int).tolist())
    keep.add(best_epoch - 1)
    return [history[i] for i in sorted(keep) if 0 <= i < len(history)]


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


class _TorchMLP(base.BaseEstimator):  # type: ignore[misc]
    """What the classifier and the regressor share: parameters, the training loop, prediction."""

    def __init__(
        self,
        *,
        hidden_layers: int = 2,
        hidden_units: int = 64,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        epochs: int = 100,
        patience: int = 10,
        random_state: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.hidden_layers = hidden_layers
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.random_state = random_state
        self.device = device

    # -- what the subclasses define -----------------------------------------------------------

    def _targets(self, y: Any, *, fit: bool) -> tuple[torch.Tensor, np.ndarray]:
        """(training targets as a tensor, mask of the rows they belong to)."""
        raise NotImplementedError

    def _outputs(self) -> int:
        raise NotImplementedError

    def _loss(self) -> torch.nn.Module:
        raise NotImplementedError

    def head(self) -> torch.nn.Module:
        """The module that predicts (and is exported to ONNX): on the CPU, in eval mode."""
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------

    def _torch_device(self) -> torch.device:
        dev = torch.device(self.device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"device={self.device!r} but CUDA is not available to PyTorch")
            if dev.index is None:
                dev = torch.device("cuda", distributed.current().local_rank % torch.cuda.device_count())
        return dev

    def fit(self, x: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None) -> _TorchMLP:
        """Train; ``eval_set=(x_val, y_val)`` enables early stopping on the validation loss."""
        matrix = as_matrix(x)
        targets, _ = self._targets(y, fit=True)
        if len(matrix) != len(targets):
            raise ValueError(f"x has {len(matrix)} rows but y has {len(targets)}")
        if len(matrix) == 0:
            raise ValueError("no training rows")
        val: tuple[torch.Tensor, torch.Tensor] | None = None
        if eval_set is not None and len(eval_set[1]) > 0:
            val_y, mask = self._targets(eval_set[1], fit=False)
            val_x = as_matrix(eval_set[0])[mask]
            if len(val_x):
                val = (torch.from_numpy(val_x), val_y)
        self._train(torch.from_numpy(matrix), targets, val)
        return self

    def _train(self, x: torch.Tensor, y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        world = distributed.current()
        dev = self._torch_device()
        seed = 0 if self.random_state is None else int(self.random_state)
        torch.manual_seed(seed)
        self.n_features_in_ = int(x.shape[1])
        net = network(
            self.n_features_in_,
            self._outputs(),
            hidden_layers=self.hidden_layers,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
        ).to(dev)
        model = distributed.wrap(net, dev, world)
        optimiser = torch.optim.Adam(
            model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        loss_fn = self._loss()
        sum_loss = type(loss_fn)(reduction="sum")
        x_dev, y_dev = x.to(dev), y.to(dev)
        val_dev = None
        if val is not None:
            share = distributed.rows(len(val[0]), world)
            val_dev = (val[0][share].to(dev), val[1][share].to(dev))

        history: list[dict[str, Any]] = []
        best_loss, best_epoch, stale = math.inf, 0, 0
        best_state: dict[str, torch.Tensor] | None = None
        started = time.perf_counter()
        every = max(1, self.epochs // LOG_LINES)
        for epoch in range(1, self.epochs + 1):
            model.train()
            order = distributed.shard(len(x_dev), epoch=epoch, seed=seed, world=world).to(dev)
            total = torch.zeros((), dtype=torch.float64, device=dev)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_dev[batch]), y_dev[batch])
                loss.backward()
                optimiser.step()
                total += loss.detach().to(torch.float64) * len(batch)
            train_loss = distributed.mean(total, len(order), world)
            if not math.isfinite(train_loss):
                raise ValueError(
                    f"the training loss is {train_loss} at epoch {epoch}: training diverged; "
                    "lower learning_rate"
                )
            val_loss = None
            if val_dev is not None:
                val_loss = distributed.mean(
                    self._summed_loss(net, sum_loss, *val_dev), len(val_dev[0]), world
                )
            history.append({"epoch": epoch, "train": _round(train_loss), "validation": _round(val_loss)})
            if epoch <= 3 or epoch % every == 0 or epoch == self.epochs:
                LOG.info(
                    "rank %d/%d epoch %d/%d train_loss=%.6g validation_loss=%s",
                    world.rank,
                    world.size,
                    epoch,
                    self.epochs,
                    train_loss,
                    "n/a" if val_loss is None else f"{val_loss:.6g}",
                )
            if val_loss is None:
                best_epoch = epoch
                continue
            if val_loss < best_loss:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if self.patience and stale >= self.patience:
                    LOG.info(
                        "rank %d: early stop at epoch %d, best epoch %d (validation_loss=%.6g)",
                        world.rank,
                        epoch,
                        best_epoch,
                        best_loss,
                    )
                    break
        self.fit_seconds_ = time.perf_counter() - started
        self.device_ = device_mod.torch_name(next(net.parameters()).device)
        if best_state is not None:
            net.load_state_dict(best_state)
        self.network_ = net.to("cpu").eval()
        self.epochs_trained_ = len(history)
        self.best_epoch_ = best_epoch
        self.best_validation_loss_ = _round(best_loss) if best_state is not None else None
        self.world_size_ = world.size
        self.history_ = history

    @staticmethod
    def _summed_loss(
        net: torch.nn.Module, loss: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        net.eval()
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        with torch.no_grad():
            for start in range(0, len(x), PREDICT_ROWS):
                stop = start + PREDICT_ROWS
                total += loss(net(x[start:stop]), y[start:stop]).to(torch.float64)
        return total

    def history(self) -> list[dict[str, Any]]:
        """The per-epoch train/validation losses, at most ``HISTORY_LIMIT`` entries."""
        return _thin(self.history_, self.best_epoch_)

    def _forward(self, x: Any) -> np.ndarray:
        matrix = as_matrix(x)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {matrix.shape[1]}")
        head = self.head()
        with torch.inference_mode():
            parts = [
                head(torch.from_numpy(matrix[start : start + PREDICT_ROWS])).numpy()
                for start in range(0, len(matrix), PREDICT_ROWS)
            ]
        if not parts:
            return np.zeros((0, self._outputs()) if self._outputs() > 1 else (0,), dtype=np.float64)
        return np.concatenate(parts).astype(np.float64)


class TorchMLPClassifier(base.ClassifierMixin, _TorchMLP):  # type: ignore[misc]
    """A PyTorch MLP classifier (softmax over the classes seen in the training split)."""

    def _targets(self, y: Any, *, fit: bool) -> tuple[torch.Tensor, np.ndarray]:
        labels = np.asarray(y)
        if fit:
            self.classes_ = np.unique(labels)
            if len(self.classes_) < 2:
                raise ValueError(f"a classifier needs two classes at least, got {self.classes_.tolist()}")
        index = np.searchsorted(self.classes_, labels)
        index = np.clip(index, 0, len(self.classes_) - 1)
        known = self.classes_[index] == labels  # a validation label unseen in training scores nothing
        if fit and not known.all():
            raise ValueError("labels outside classes_")
        return torch.from_numpy(index[known].astype(np.int64)), known

    def _outputs(self) -> int:
        return len(self.classes_)

    def _loss(self) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss()

    def head(self) -> torch.nn.Module:
        return ClassifierHead(self.network_).eval()

    @property
    def labels(self) -> Sequence[Any]:
        """``classes_`` as plain Python values, in the order of the probability columns."""
        return [c.item() if hasattr(c, "item") else c for c in self.classes_]

    def predict_proba(self, x: Any) -> np.ndarray:
        return self._forward(x)

    def predict(self, x: Any) -> np.ndarray:
        proba = self.predict_proba(x)
        out: np.ndarray = self.classes_[proba.argmax(axis=1)]
        return out


class TorchMLPRegressor(base.RegressorMixin, _TorchMLP):  # type: ignore[misc]
    """A PyTorch MLP regressor (one output; the target standardised on the training split)."""

    def _targets(self, y: Any, *, fit: bool) -> tuple[torch.Tensor, np.ndarray]:
        values = np.asarray(y, dtype=np.float64)
        if fit:
            mean, std = float(values.mean()), float(values.std())
            self.y_mean_ = mean if math.isfinite(mean) else 0.0
            self.y_std_ = std if math.isfinite(std) and std > 0 else 1.0
        known = np.isfinite(values)
        if fit and not known.all():
            raise ValueError("the target has missing or infinite values")
        scaled = ((values[known] - self.y_mean_) / self.y_std_).astype(np.float32).reshape(-1, 1)
        return torch.from_numpy(scaled), known

    def _outputs(self) -> int:
        return 1

    def _loss(self) -> torch.nn.Module:
        return torch.nn.MSELoss()

    def head(self) -> torch.nn.Module:
        return RegressorHead(self.network_, mean=self.y_mean_, std=self.y_std_).eval()

    def predict(self, x: Any) -> np.ndarray:
        return self._forward(x)
