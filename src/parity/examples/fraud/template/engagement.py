"""The growth team's account engagement features, for their dashboards and campaigns."""

from datetime import timedelta

from entities import account

from parity import FeatureView, Field, FileSource, Int64

account_spend_daily = FeatureView(
    name="account_spend_daily",
    entities=[account],
    schema=[
        Field(name="purchases_1d", dtype=Int64, description="Purchases in the day"),
        Field(name="spend_cents_1d", dtype=Int64, description="Spend in the day, in cents"),
        Field(name="active_days_7d", dtype=Int64, description="Days with a purchase, of the 7"),
    ],
    source=FileSource(
        path="data/account_spend.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    ),
    ttl=timedelta(days=2),
    description="Nightly account engagement: daily purchases, spend and active days.",
    owner="growth-team@example.com",
    tags={"team": "growth"},
)
