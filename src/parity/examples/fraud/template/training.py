"""How the fraud model is retrained: `parity jobs run fraud_training` (or a retrain trigger)
builds a point-in-time-correct training set from the chargebacks whose labels have matured,
trains, and registers the new version as fraud@candidate with its lineage.

A payment's label is final 30 days after it (chargebacks arrive 2-20 days later; a legitimate
payment is known only once none can arrive), so the training set stops 30 days before now:
younger payments would enter as "not fraud" only because their chargeback has not come yet.
The new version is rolled out by fraud_retrain_rollout (rollouts.py), whose shadow gate suits a
retrain that is meant to block more than the champion.
"""

from datetime import timedelta

from parity import LabelSource, TrainedModel, TrainingJob

HOLDOUT = 0.05  # the newest share of the matured rows held out to measure the new version


def train_fraud(frame, context):
    """Gradient-boosted trees on the features of fraud_model_v1 plus the payment's amount (the
    same recipe as the champion's, see parity.examples.fraud.model). `frame` is the training set
    (the matured chargebacks with their point-in-time features); `context` says which run this is
    (context.job_id, context.cutoff, context.dataset, ...) and logs to the job (context.log).
    The newest matured rows are the ones holding a new fraud pattern, so only the newest 5 % are
    held out to measure it (in time order, no peeking): the champion's recipe holds out 20 %,
    which would keep most of a pattern's first matured week out of the fit."""
    from parity.examples.fraud.model import FEATURES, LABEL, REQUEST_INPUTS, inputs, train

    context.log.info(
        "%d payments up to %s (labels final by %s), %.2f%% fraud",
        len(frame),
        context.cutoff.date(),
        context.now.date(),
        100 * float(frame[LABEL].mean()) if len(frame) else 0.0,
    )
    scorer, metrics = train(frame, test_fraction=HOLDOUT)
    # every input counts the same (the request-time amount too) until a model reports its own
    importance = {name: 1.0 for name in FEATURES + REQUEST_INPUTS}
    return TrainedModel(
        model=scorer,
        metrics=metrics,
        params={"estimator": "HistGradientBoostingClassifier", "max_iter": 150, "seed": 7},
        importance=importance,
        sample_input=inputs(frame.head(5)),
        flavor="pyfunc",
        description="Probability that a card transaction is fraud (retrained by fraud_training).",
    )


fraud_training = TrainingJob(
    name="fraud_training",
    model="fraud",
    feature_service="fraud_model_v1",
    labels=LabelSource(
        query=(
            "SELECT transaction_id, account_id, device_id, event_timestamp, amount, is_fraud, "
            "label_timestamp FROM 'data/chargebacks.parquet'"
        ),
        label="is_fraud",
        join_keys=("account_id", "device_id"),
        timestamp_field="event_timestamp",
        label_timestamp_field="label_timestamp",
    ),
    label_delay=timedelta(days=30),
    # Five weeks of matured payments: the newest patterns with a month of the usual ones, and
    # a fit of seconds on the example's data.
    lookback=timedelta(days=35),
    train=train_fraud,
    alias="candidate",
    rollout="fraud_retrain_rollout",
)
