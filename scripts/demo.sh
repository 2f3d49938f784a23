#!/usr/bin/env bash
# The main job on the embedded default (SQLite registry, Parquet data), no server needed:
# scaffold the fraud-detection repo, generate its data, plan, apply, and list the registry.
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
