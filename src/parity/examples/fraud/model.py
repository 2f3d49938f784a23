"""The fraud example's model: gradient-boosted trees on the fraud_model_v1 features plus the
transaction amount, scoring the probability that a transaction is fraud.

`python -m parity.examples.fraud.model --dataset NAME` trains it on a recorded training set and
registers it (`make demo` does). Needs the `ml` extra (scikit-learn, pandas).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion

FEATURES = (
    "txn_count_1d",
    "txn_amount_1d",
    "txn_count_7d",
    "avg_amount_7d",
    "distinct_devices_7d",
    "credit_limit",
    "account_age_days",
    "kyc_level",
    "device_risk_score",
    "is_emulator",
)
DEVICE_FEATURES = ("device_risk_score", "is_emulator")  # the bad candidate goes without them
REQUEST_INPUTS = ("amount",)  # sent with the prediction request, not fetched
LABEL = "is_fraud"


class FraudScorer:
    """A pyfunc model: `predict(frame)` is the probability of fraud for each row."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict(self, frame: Any) -> Any:
        return self.classifier.predict_proba(frame)[:, 1]


def inputs(frame: Any, features: tuple[str, ...] = FEATURES) -> Any:
    """The model's input columns as float64 (missing values stay NaN; the trees handle them)."""
    return frame[list(features + REQUEST_INPUTS)].astype("float64")


def train(
    frame: Any,
    *,
    test_fraction: float = 0.2,
    seed: int = 7,
    features: tuple[str, ...] = FEATURES,
) -> tuple[FraudScorer, dict[str, float]]:
    """Fit on the earliest rows, measure on the latest `test_fraction` (time order, no peeking),
    using `features` (and the request's amount) as inputs."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score

    frame = frame.sort_values("event_timestamp", kind="stable")
    cut = int(len(frame) * (1 - test_fraction))
    train_rows, test_rows = frame.iloc[:cut], frame.iloc[cut:]
    classifier = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=seed)
    classifier.fit(inputs(train_rows, features), train_rows[LABEL].astype(int))
    scorer = FraudScorer(classifier)
    truth = test_rows[LABEL].astype(int).to_numpy()
    scores = scorer.predict(inputs(test_rows, features))
    metrics = {"train_rows": float(len(train_rows)), "test_rows": float(len(test_rows))}
    if 0 < truth.sum() < len(truth):  # both classes present: the scores are defined
        metrics["test_auc"] = float(roc_auc_score(truth, scores))
        metrics["test_average_precision"] = float(average_precision_score(truth, scores))
    metrics["test_fraud_rate"] = float(np.mean(truth)) if len(truth) else 0.0
    return scorer, metrics


def train_and_register(
    store: FeatureStore,
    dataset: str,
    *,
    name: str = "fraud",
    alias: str | None = "champion",
    drop: tuple[str, ...] = (),
    seed: int = 7,
) -> ModelVersion:
    """Train on the recorded training set `dataset` without the features in `drop`, and register
    the model with its lineage (its signature lists the inputs it uses)."""
    import pandas as pd

    unknown = sorted(set(drop) - set(FEATURES))
    if unknown:
        raise ValueError(f"drop={unknown}: the model's features are {list(FEATURES)}")
    features = tuple(f for f in FEATURES if f not in drop)
    record = store.datasets.get(dataset)
    frame = pd.read_parquet(record.path)
    scorer, metrics = train(frame, features=features, seed=seed)
    tags = {"team": "risk"} | ({"without": ",".join(drop)} if drop else {})
    return store.models.register_model(
        name,
        scorer,
        flavor="pyfunc",
        training_dataset=dataset,
        metrics=metrics,
        params={"estimator": "HistGradientBoostingClassifier", "max_iter": 150, "seed": seed},
        tags=tags,
        description="Probability that a card transaction is fraud.",
        sample_input=inputs(frame.head(5), features),
        alias=alias,
    )


def main(argv: list[str] | None = None) -> None:
    from parity.examples.fraud import model  # this module by its importable name, not __main__
    from parity.feature_store import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--dataset", required=True, help="Recorded training set to train on.")
    parser.add_argument("--name", default="fraud")
    parser.add_argument("--alias", default="champion")
    parser.add_argument(
        "--without",
        choices=("device",),
        help="Train without a group of features: 'device' drops " + ", ".join(DEVICE_FEATURES),
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="The random seed (early stopping's validation split)."
    )
    args = parser.parse_args(argv)
    drop = DEVICE_FEATURES if args.without == "device" else ()
    with FeatureStore(args.repo) as store:
        version = model.train_and_register(
            store, args.dataset, name=args.name, alias=args.alias, drop=drop, seed=args.seed
        )
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(version.metrics.items()))
    print(f"Registered {version.ref} as {args.name}@{args.alias} ({shown})")
    if drop:
        print(f"  inputs: without {', '.join(drop)}")
    print(f"  lineage: service {version.feature_service}, dataset {version.training_dataset} ")
    print(f"  (fingerprint {version.dataset_fingerprint}, registry v{version.registry_version})")


if __name__ == "__main__":
    main()
