"""When the fraud model is retrained: `fraud_retrain` runs `fraud_training` (training.py) when
matured labels show the model catching less fraud, at most once per label delay.

Recall is read on FINAL weekly windows only (30 days after the week, when every chargeback has
arrived) and compared with the first final window of the version; a provisional window's recall
still moves as labels arrive and never counts. Drift does not retrain this model: its labels take
30 days to mature, so a retrain when the payments drift would train on labels from before the
drift and learn nothing of it (the monitor's fraud_drift alert still flags it, monitors.py).
`parity triggers history fraud` shows every decision and its evidence.
"""

from datetime import timedelta

from parity import RetrainPolicy

fraud_retrain = RetrainPolicy(
    name="fraud_retrain",
    model="fraud",
    job="fraud_training",
    # Flagged by the monitor, not retrained on: the drifted weeks' labels are a month away.
    drift_fire_at=None,
    # Half the recall of the version's first matured week lost fires: a week's fraud comes
    # from a handful of fraudsters, and one the model half-misses moves recall by a third, which
    # is noise; losing half is a pattern the model misses. Within 20 % clears.
    metric="recall",
    metric_drop=0.50,
    metric_clear=0.20,
    # No retrain for 90 days is a retrain anyway: the chargeback patterns age.
    schedule=timedelta(days=90),
    # Windows are weekly (fraud_monitor): one matured week that bad is evidence enough.
    sustain=1,
    # A retrain sooner than the label delay after the last would train on mostly the same
    # matured rows: it could not learn what the last one missed.
    cooldown=timedelta(days=30),
    max_concurrent=1,
)
