"""Fraud-detection example: a seeded synthetic data set of accounts, devices and payments."""

from parity.examples.fraud.data import FraudDataSummary, generate

__all__ = ["FraudDataSummary", "generate"]
