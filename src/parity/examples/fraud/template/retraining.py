"""When the fraud model is retrained: `fraud_retrain` runs `fraud_training` (training.py) when the
payments drift or when matured labels show the model catching less fraud, at most once a week.

Drift is one signal, not one per feature: the share of fraud_model_v1's features whose weekly
window drifted, each weighted by the importance the version recorded. Precision is read on FINAL
weekly windows only (30 days after the week, when every chargeback has arrived) and compared with
the first final window of the version; a provisional window's precision still moves as labels
arrive and never counts. `parity triggers history fraud` shows every decision and its evidence.
"""

from datetime import timedelta

from parity import RetrainPolicy

fraud_retrain = RetrainPolicy(
    name="fraud_retrain",
    model="fraud",
    job="fraud_training",
    # A third of the importance drifting is a new pattern, not noise; it clears under 15 %.
    drift_fire_at=0.3,
    drift_clear_at=0.15,
    weighting="importance",
    # 10 % less precision than the version's first matured week fires; within 5 % clears.
    metric="precision",
    metric_drop=0.10,
    metric_clear=0.05,
    # No retrain for 90 days is a retrain anyway: the chargeback patterns age.
    schedule=timedelta(days=90),
    # Windows are weekly (fraud_monitor): one drifted week is evidence enough to act on.
    sustain=1,
    cooldown=timedelta(days=7),
    max_concurrent=1,
)
