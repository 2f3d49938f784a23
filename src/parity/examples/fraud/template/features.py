"""Feature views and the feature service of the fraud model."""

from datetime import timedelta

from entities import account, device

from parity import Bool, FeatureService, FeatureView, Field, FileSource, Float64, Int32, Int64, String

account_profile = FeatureView(
    name="account_profile",
    entities=[account],
    schema=[
        Field(name="credit_limit", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="account_age_days", dtype=Int64),
        Field(name="kyc_level", dtype=Int32, description="1 = email only ... 3 = full KYC"),
    ],
    source=FileSource(
        path="data/accounts.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    ),
    ttl=None,  # a profile stays valid until it changes
    description="Slowly changing account attributes, one snapshot per change.",
)

device_profile = FeatureView(
    name="device_profile",
    entities=[device],
    schema=[
        Field(name="device_risk_score", dtype=Float64),
        Field(name="is_emulator", dtype=Bool),
        Field(name="os", dtype=String),
    ],
    source=FileSource(
        path="data/devices.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    ),
    ttl=None,
    description="Device fingerprinting results, re-scored from time to time.",
)

account_txn_stats = FeatureView(
    name="account_txn_stats",
    entities=[account],
    schema=[
        Field(name="txn_count_1d", dtype=Int64),
        Field(name="txn_amount_1d", dtype=Float64),
        Field(name="txn_count_7d", dtype=Int64),
        Field(name="avg_amount_7d", dtype=Float64),
        Field(name="distinct_devices_7d", dtype=Int64),
    ],
    source=FileSource(
        path="data/account_txn_stats.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    ),
    ttl=timedelta(days=2),
    freshness_slo=timedelta(hours=26),  # nightly, with two hours to spare
    description="Nightly batch aggregates of each account's transactions.",
)

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        account_txn_stats,
        account_profile[["credit_limit", "account_age_days", "kyc_level"]],
        device_profile[["device_risk_score", "is_emulator"]],
    ],
    description="Features of the transaction fraud classifier.",
    owner="risk-team@example.com",
)
