"""The feature server: HTTP over the FeatureStore, Feast-compatible JSON, errors as 4xx JSON."""
