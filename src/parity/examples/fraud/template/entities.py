"""Entities of the fraud-detection example: who and what the features describe."""

from parity import Entity, Int64

account = Entity(
    name="account",
    join_keys=["account_id"],
    value_type=Int64,
    description="A customer account that owns cards and makes transactions.",
    owner="risk-team@example.com",
)

device = Entity(
    name="device",
    join_keys=["device_id"],
    value_type=Int64,
    description="A phone or browser a transaction was made from.",
    owner="risk-team@example.com",
)
