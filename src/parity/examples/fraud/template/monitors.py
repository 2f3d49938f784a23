"""What to watch for the fraud model: its predictions against the chargebacks that arrive later.

The model server logs each prediction with its request id; send `txn-<transaction_id>` as the
request id (`"id"`, one transaction per request; the traffic simulator does) so its label finds it.
"""

from datetime import timedelta

import numpy as np

from parity import AlertRule, LabelSource, Monitor

THRESHOLD = 0.5  # score at or above which a transaction is flagged as fraud


def dollar_weighted_recall(labels, scores, rows):
    """Fraud dollars caught / fraud dollars: the share of the fraudulent amount that was scored
    at or above the decision threshold; None (undefined) when the rows hold no fraud."""
    amount = np.asarray(rows.column("amount").to_numpy(zero_copy_only=False), dtype=float)
    fraud = amount[labels].sum()
    caught = amount[labels & (scores >= THRESHOLD)].sum()
    return float(caught / fraud) if fraud > 0 else None


fraud_monitor = Monitor(
    name="fraud_monitor",
    model="fraud",
    window=timedelta(days=7),  # a week of payments: every weekday, and thousands of rows
    labels=LabelSource(
        query=(
            "SELECT 'txn-' || transaction_id AS request_id, is_fraud, amount, "
            "label_timestamp FROM 'data/chargebacks.parquet'"
        ),
        label="is_fraud",
        join_keys=("request_id",),
        label_timestamp_field="label_timestamp",
    ),
    # chargebacks arrive 2-20 days after the payment; a legit payment is known after 30 days
    label_delay=timedelta(days=30),
    decision_threshold=THRESHOLD,
    top_k=100,
    metrics=[dollar_weighted_recall],
    alerts=[
        # Half the columns drifting in a week fires (a whole week is sustained evidence
        # already); it clears after a week with fewer than a third drifting.
        AlertRule(
            name="fraud_drift", signal="drift_share", fire_at=0.5, clear_at=0.3, sustain=1
        ),
        # A final window catching less than 60% of the fraud dollars fires at once.
        AlertRule(
            name="fraud_dollars_missed",
            signal="metric:dollar_weighted_recall",
            fire_at=0.6,
            clear_at=0.7,
            direction="below",
            sustain=1,
        ),
    ],
)
