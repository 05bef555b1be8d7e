"""Your own training code as a TrainingJob trainer: a scikit-learn MLP trained epoch by epoch.

It uses only the trainer contract (``mlops_workloads``: config, log_epoch, report, load_skops)
plus numpy, pandas, scikit-learn and skops, which the CPU workloads image has. Params (all
optional): epochs (the budget a sweep's successive halving or median stopping cuts short),
hidden_units, alpha, learning_rate_init. Run it by hand with
``MLOPS_CONFIG_FILE=config.json MLOPS_RESULT_PATH=result.json python train.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn import metrics, neural_network, pipeline

import mlops_workloads as mw

cfg = mw.config()
params = cfg.params
epochs = int(params.get("epochs", 20))
target = cfg.data.target
classifier = cfg.task == "classification"

preprocess = mw.load_skops(cfg.data.preprocessor)  # fitted on train; trusted types only
splits = {name: pd.read_parquet(getattr(cfg.data, name)) for name in ("train", "validation", "test")}
x = {name: preprocess.transform(frame.drop(columns=[target])) for name, frame in splits.items()}
y = {name: frame[target].to_numpy() for name, frame in splits.items()}

Model = neural_network.MLPClassifier if classifier else neural_network.MLPRegressor
mlp = Model(
    hidden_layer_sizes=(int(params.get("hidden_units", 32)),),
    alpha=float(params.get("alpha", 1e-4)),
    learning_rate_init=float(params.get("learning_rate_init", 1e-3)),
    random_state=cfg.seed,
)


def scores(split: str) -> dict[str, float]:
    predicted = mlp.predict(x[split])
    if classifier:
        return {
            "accuracy": float(metrics.accuracy_score(y[split], predicted)),
            "f1_macro": float(metrics.f1_score(y[split], predicted, average="macro")),
        }
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(y[split], predicted))),
        "mae": float(metrics.mean_absolute_error(y[split], predicted)),
        "r2": float(metrics.r2_score(y[split], predicted)),
    }


classes = np.unique(y["train"]) if classifier else None
for epoch in range(1, epochs + 1):  # one partial_fit = one pass over the training split
    if classifier:
        mlp.partial_fit(x["train"], y["train"], classes=classes)
    else:
        mlp.partial_fit(x["train"], y["train"])
    mw.log_epoch(epoch, loss=mlp.loss_, **scores("validation"))

results = {split: scores(split) for split in ("validation", "test") if len(y[split])}
if cfg.is_chief:  # one servable directory: ONE Pipeline over the raw feature columns
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    model = pipeline.Pipeline([("preprocess", preprocess), ("model", mlp)])
    sio.dump(model, cfg.output_dir / "model.skops")
mw.report(results, epochs=epochs, estimator=type(mlp).__name__)
