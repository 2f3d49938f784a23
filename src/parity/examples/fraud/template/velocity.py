"""Streaming velocity features and a request-time ratio: the fraud model's fastest signals.

Transactions arrive on a Redis Stream (`parity ingest --source transactions`); each applied batch
is also appended offline next to data/transactions.parquet, so training sets see the same events.
"""

from datetime import timedelta

from entities import account
from features import account_profile, account_txn_stats, device_profile

from parity import (
    Aggregation,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    RequestSource,
    StreamSource,
    on_demand_feature_view,
)

transactions = StreamSource(
    name="transactions",
    batch_source=FileSource(
        path="data/transactions*.parquet", timestamp_field="event_timestamp"
    ),
    lateness=timedelta(hours=1),
    description="Card transactions as they happen.",
)

account_velocity = FeatureView(
    name="account_velocity",
    entities=[account],
    schema=[Field(name="amount", dtype=Float64), Field(name="device_id", dtype=Int64)],
    source=transactions,
    tile_interval=timedelta(minutes=1),  # a 5-minute window then spans 4 to 5 minutes
    aggregations=[
        Aggregation(column="amount", function="count", window=timedelta(minutes=5)),
        Aggregation(column="amount", function="sum", window=timedelta(hours=1)),
        Aggregation(column="device_id", function="count_distinct", window=timedelta(minutes=10)),
        Aggregation(column="amount", function="mean", window=timedelta(days=30)),
    ],
    description="Transactions in the last minutes, distinct devices, the 30-day mean amount.",
)

transaction = RequestSource(
    name="transaction", schema=[Field(name="amount", dtype=Float64)]
)


@on_demand_feature_view(
    sources=[account_velocity, transaction],
    schema=[Field(name="amount_to_mean_30d", dtype=Float64)],
)
def amount_vs_history(row):
    """The transaction's amount relative to the account's 30-day mean amount."""
    mean = row["amount_mean_30d"]
    return {"amount_to_mean_30d": row["amount"] / mean if mean else None}


fraud_model_v2 = FeatureService(
    name="fraud_model_v2",
    features=[
        account_txn_stats,
        account_profile[["credit_limit", "account_age_days", "kyc_level"]],
        device_profile[["device_risk_score", "is_emulator"]],
        account_velocity,
        amount_vs_history,
    ],
    description="fraud_model_v1 plus streaming velocity and the amount ratio.",
    owner="risk-team@example.com",
)
