#!/usr/bin/env bash
# The main job on the embedded default (SQLite registry, Parquet data), no server needed:
# scaffold the fraud-detection repo, generate its data, plan, apply, list the registry, and build
# a point-in-time-correct training set for the fraud model from the chargeback labels.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export COLUMNS=${COLUMNS:-120}

echo "== parity init fraud_detection (synthetic data: ${DEMO_ACCOUNTS:-2000} accounts, 60 days)"
parity init fraud_detection --accounts "${DEMO_ACCOUNTS:-2000}"
cd fraud_detection
echo
echo "== parity plan"
parity plan
echo
echo "== parity apply"
parity apply --message "fraud model features, first version"
echo
echo "== parity apply (again: nothing changed, so no new version)"
parity apply
echo
echo "== parity registry list"
parity registry list
echo
echo "== parity registry history"
parity registry history
echo
echo "== parity dataset create (features as of each transaction; labels from chargebacks)"
parity dataset create \
  --entities "SELECT transaction_id, account_id, device_id, event_timestamp, amount, is_fraud
              FROM 'data/chargebacks.parquet'" \
  --features fraud_model_v1 \
  --out training/fraud_model_v1.parquet \
  --name fraud_train_v1
echo
echo "== parity materialize-incremental (newest feature values per entity into the SQLite online store)"
parity materialize-incremental 2026-01-01T00:00:00Z
echo
echo "== an online lookup, in-process: get_online_features for two (account, device) pairs"
python - <<'PY'
from datetime import UTC, datetime

from parity import FeatureStore

store = FeatureStore(".", clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))  # "now" = end of the data
response = store.get_online_features(
    "fraud_model_v1", [{"account_id": 1, "device_id": 1}, {"account_id": 2, "device_id": 999999}]
)
for name in response.feature_names:
    print(f"  {name:<20} {response.values[name]!s:<36} {[s.value for s in response.statuses[name]]}")
PY
