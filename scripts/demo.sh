#!/usr/bin/env bash
# The main job on the embedded default (SQLite registry, Parquet data): scaffold the fraud-detection
# repo, generate its data, plan, apply, build a point-in-time-correct training set, materialize, read
# features in-process and over HTTP, train and register the fraud model as fraud@champion, score
# transactions with it over HTTP, and stream a burst of transactions (Redis, if running); then
# monitoring, two rollouts, and the closed loop on simulated time (lifecycle_sim: the world shifts,
# drift is flagged, recall drops on matured labels, one retrain, shadow and canary, promotion),
# written as one HTML report.
set -euo pipefail
reports=${DEMO_REPORTS:-$PWD/demo-reports}  # where the HTML pages are kept (the rest is removed)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export COLUMNS=${COLUMNS:-120}

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_until_up() {  # $1: a URL that answers 200 once the server is ready
  python - "$1" <<'PY'
import sys, time, urllib.request

for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).close()
        break
    except OSError:
        time.sleep(0.2)
PY
}

echo "== parity init fraud_detection (synthetic data: ${DEMO_ACCOUNTS:-2000} accounts, 60 days)"
# The data's 60 days end now (init's default), so online values are fresh when served now.
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
echo "== parity dataset create (features as of each transaction of the first 18 days; labels from chargebacks)"
# The last 42 days are left out: the monitoring part below replays them as serving traffic.
parity dataset create \
  --entities "SELECT transaction_id, account_id, device_id, event_timestamp, amount, is_fraud
              FROM 'data/chargebacks.parquet' WHERE event_timestamp < now() - INTERVAL 42 DAY" \
  --features fraud_model_v1 \
  --out training/fraud_model_v1.parquet \
  --name fraud_train_v1
echo
echo "== parity materialize-incremental (newest feature values per entity into the SQLite online store)"
parity materialize-incremental now
echo
echo "== an online lookup, in-process: get_online_features for two (account, device) pairs"
python - <<'PY'
from parity import FeatureStore

store = FeatureStore(".")
response = store.get_online_features(
    "fraud_model_v1", [{"account_id": 1, "device_id": 1}, {"account_id": 2, "device_id": 999999}]
)
for name in response.feature_names:
    print(f"  {name:<20} {response.values[name]!s:<36} {[s.value for s in response.statuses[name]]}")
PY
echo
echo "== the same lookup over HTTP: parity serve, then POST /get-online-features"
port=$(free_port)
parity serve --port "$port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
wait_until_up "http://127.0.0.1:$port/health"
python - "$port" <<'PY'
import json, sys, urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}"
body = {"feature_service": "fraud_model_v1", "entities": {"account_id": [1, 2], "device_id": [1, 999999]}}
request = urllib.request.Request(
    url + "/get-online-features", json.dumps(body).encode(), {"content-type": "application/json"}
)
reply = json.load(urllib.request.urlopen(request, timeout=10))
names = reply["metadata"]["feature_names"]
for name, result in zip(names, reply["results"]):
    print(f"  {name:<20} {result['values']!s:<36} {result['statuses']}")
PY
echo
echo "== train the fraud model on the training set and register it as fraud@champion"
python -m parity.examples.fraud.model --dataset fraud_train_v1 --alias champion
echo
echo "== parity models list / versions / history"
parity models list
parity models versions fraud
parity models history fraud
echo
echo "== score transactions over HTTP: parity serve-models, then POST /v1/models/fraud@champion/predict"
mport=$(free_port)
parity serve-models --port "$mport" --model fraud@champion 2>/dev/null &
models_server=$!
trap 'kill $server $models_server 2>/dev/null || true; rm -rf "$work"' EXIT
wait_until_up "http://127.0.0.1:$mport/v2/health/ready"
python - "$mport" <<'PY'
import json, sys, urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}"
# Recent payments, two later charged back as fraud and two not: the features come from the online
# store, the amount with the request.
import pyarrow.compute as pc, pyarrow.parquet as pq

labels = pq.read_table("data/chargebacks.parquet").sort_by([("event_timestamp", "descending")])
picked = [row for flag in (True, False) for row in
          labels.filter(pc.equal(labels["is_fraud"], flag)).slice(0, 2).to_pylist()]
body = {
    "entities": {k: [row[k] for row in picked] for k in ("account_id", "device_id", "amount")},
    "return_features": True,
}
request = urllib.request.Request(
    url + "/v1/models/fraud@champion/predict", json.dumps(body).encode(),
    {"content-type": "application/json"},
)
reply = json.load(urllib.request.urlopen(request, timeout=30))
print(f"  model {reply['model_name']} version {reply['model_version']} (alias {reply['alias']}), request {reply['id']}")
for row, score, risk in zip(picked, reply["predictions"], reply["features"]["device_risk_score"]):
    print(f"  account {row['account_id']:>5}, device {row['device_id']:>6}, amount {row['amount']:>8.2f}"
          f" (device risk {risk if risk is None else round(risk, 3)}): fraud probability {score:.4f}, charged back: {row['is_fraud']}")
PY
kill $models_server 2>/dev/null; wait $models_server 2>/dev/null || true
echo "  prediction log: $(find data/prediction_log -name '*.parquet' | wc -l) Parquet file(s) written on shutdown"
echo
echo "== streaming: a burst of transactions through 'parity ingest' (Redis Streams at 127.0.0.1:6379)"
if python -c 'import redis; redis.Redis(socket_connect_timeout=1).ping()' 2>/dev/null; then
  cat > ../show_velocity.py <<'PY'  # outside the repo: every .py in it is a definitions file
import sys
from parity import FeatureStore

store = FeatureStore(".")
refs = ["account_velocity:amount_count_5m", "account_velocity:amount_sum_1h",
        "account_velocity:device_id_count_distinct_10m", "amount_vs_history:amount_to_mean_30d"]
response = store.get_online_features(refs, [{"account_id": 1, "amount": 250.0}])
print(f"  {sys.argv[1]}: " + ", ".join(f"{n}={response.values[n][0]}" for n in response.feature_names))
PY
  python ../show_velocity.py before
  python - <<'PY'
from datetime import UTC, datetime, timedelta

import redis

from parity import FeatureStore
from parity.ingest.stream import publish

store = FeatureStore(".")
source = store.get_feature_view("account_velocity").source
client = redis.Redis()
client.delete(source.stream_key(store.project))  # only this project's stream: it starts empty
now = datetime.now(UTC)
burst = [
    {"transaction_id": 10_000_000 + i, "account_id": 1, "device_id": 900 + i % 3,
     "event_timestamp": now - timedelta(seconds=50 - 5 * i), "amount": 40.0 + 10 * i}
    for i in range(6)
]
publish(client, source, burst, project=store.project)
print(f"  published {len(burst)} transactions of account 1 from 3 devices to {source.stream_key(store.project)}")
PY
  parity ingest --source transactions --until-idle
  python ../show_velocity.py after
else
  echo "  (Redis is not reachable at 127.0.0.1:6379: skipping the streaming part)"
fi

echo
echo "== monitoring: online/offline consistency. The feature server logs what it serves (data/served_log);"
echo "   parity monitor consistency replays those (keys, request time) rows through point-in-time retrieval"
python - "$port" <<'PY'
import json, sys, urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/get-online-features"
for first in range(1, 301, 100):  # 300 accounts, each on one of its devices
    ids = list(range(first, first + 100))
    body = {"feature_service": "fraud_model_v2",
            "entities": {"account_id": ids, "device_id": ids, "amount": [50.0] * len(ids)}}
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
print("  served fraud_model_v2 for 300 accounts over HTTP")
PY
# The served log becomes Parquet when a file completes (5 minutes, 100,000 rows) or the server
# stops: stop it, so the report sees every row just served.
kill $server 2>/dev/null; wait $server 2>/dev/null || true
today=$(date -u +%F)
parity monitor consistency --service fraud_model_v2 --since "$today"
echo
echo "== a skew injected on purpose: a transaction of account 7 pushed to the ONLINE store only, then served"
parity serve --port "$port" 2>/dev/null &
server=$!
wait_until_up "http://127.0.0.1:$port/health"
python - "$port" <<'PY'
import json, sys, urllib.request
from datetime import timedelta

from parity import FeatureStore

store = FeatureStore(".")
at = store.now() - timedelta(seconds=5)
store.push("transactions", [{"account_id": 7, "device_id": 7, "event_timestamp": at,
                             "amount": 999.0}], to="online")
body = {"feature_service": "fraud_model_v2",
        "entities": {"account_id": [7], "device_id": [7], "amount": [50.0]}}
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/get-online-features",
                                 json.dumps(body).encode(), {"content-type": "application/json"})
urllib.request.urlopen(request, timeout=30).close()
print("  pushed 999.00 for account 7 online only (the offline store never saw it), and served account 7")
PY
kill $server 2>/dev/null; wait $server 2>/dev/null || true
parity monitor consistency --service fraud_model_v2 --since "$today"
echo "  Account 7's window features now differ: online counted a transaction offline never had."
echo "  Streaming lag looks the same from one request: a value served before the stream worker"
echo "  applied events older than the request misses them, and the replay (which sees them) differs."
echo "  Such mismatches fade as the worker catches up; a skew stays (docs/monitoring.md)."

echo
echo "== monitoring: six weeks of serving traffic for fraud@champion, the last week shifted on purpose"
python -m parity.examples.fraud.traffic --days 42 --shift-days 7
since=$(date -u -d '42 days ago' +%FT%T)
echo
echo "== parity monitor drift: each week of logged features, inputs and scores against the training set's profile"
parity monitor drift --model fraud@champion --window 7d --since "$since" --html drift_report.html
echo "  wrote drift_report.html: reference vs current distributions and each score over time (opens offline)"
echo
echo "== parity monitor alerts (the monitor's rule on the share of drifted columns)"
parity monitor alerts --monitor fraud_monitor
echo
echo "== parity monitor performance: chargebacks joined to the logged predictions by request id"
echo "   (a week is final 30 days after it ends, when every legitimate payment is known; before, provisional)"
COLUMNS=160 parity monitor performance --model fraud@champion --window 7d --since "$since"
echo
echo "== parity monitor quality (served traffic against the training profile) and freshness"
parity monitor quality fraud --since "$since" --window 7d
parity monitor freshness

echo
echo "== safe rollout: a new fraud model reaches traffic through shadow and a sticky canary, gated"
echo "   (rollouts.py declares fraud_rollout, applied with the repo: the gates are decided before any rollout)"
sed -n '/^fraud_rollout = Rollout(/,/^)/p' rollouts.py
echo
echo "== the good candidate: the champion's training set retrained (a new seed, as a scheduled retraining job would)"
python -m parity.examples.fraud.model --dataset fraud_train_v1 --alias challenger --seed 8
echo
echo "== its rollout on simulated time: a real model server (routing, shadow queue, prediction log),"
echo "   the real controller and gates; each simulated minute sends 200 payments, then one controller tick"
python -m parity.examples.fraud.rollout_sim --html rollout_good.html
echo
echo "== parity models history fraud: the champion alias moved to the candidate, with the rollout's reason"
parity models history fraud
echo
echo "== the bad candidate: trained on the first 30 days, but WITHOUT the device features (device_risk_score, is_emulator)"
parity dataset create \
  --entities "SELECT transaction_id, account_id, device_id, event_timestamp, amount, is_fraud
              FROM 'data/chargebacks.parquet' WHERE event_timestamp < now() - INTERVAL 30 DAY" \
  --features fraud_model_v1 \
  --out training/fraud_model_v1_30d.parquet \
  --name fraud_train_v2
python -m parity.examples.fraud.model --dataset fraud_train_v2 --alias challenger --without device
echo
echo "== its rollout: in shadow, both score the same payments; blocking as many as the champion, would it block the same ones?"
python -m parity.examples.fraud.rollout_sim
echo
echo "== parity rollout status fraud: the record kept in the registry database (every check: parity rollout history fraud)"
parity rollout status fraud
parity rollout history fraud --json --html rollout_bad.html > /dev/null
echo "  wrote rollout_bad.html: parity rollout history fraud --html, the rollback's timeline as a page"
echo
echo "== parity models list: the champion is still the good candidate; the bad one answered no client"
parity models list

echo
echo "== the closed loop on simulated days: the world shifts (a NEW fraud pattern), drift is flagged, labels"
echo "   mature and recall drops, ONE retrain fires, and the candidate earns its way through shadow and canary"
echo "   (retraining.py: when to retrain; training.py: how; rollouts.py: fraud_retrain_rollout)"
sed -n '/^fraud_retrain = RetrainPolicy(/,/^)/p' retraining.py
python -m parity.examples.fraud.lifecycle_sim --html loop_report.html
echo
echo "== parity triggers history fraud: every decision of the loop, with its evidence"
COLUMNS=160 parity triggers history fraud
echo
echo "== parity jobs list: the one training job, queued by the fired decision"
COLUMNS=160 parity jobs list
echo
mkdir -p "$reports"
cp loop_report.html drift_report.html rollout_good.html rollout_bad.html "$reports"/
echo "== the pages, kept in $reports: loop_report.html (the closed loop, one self-contained page),"
echo "   drift_report.html, rollout_good.html, rollout_bad.html"

echo
echo "== the web UI over this repo: parity ui (catalog, lineage, duplicates, history, models, rollouts, monitoring)"
# The repo is kept beside the reports, so the UI can be opened again after the demo ends.
rm -rf "$reports/fraud_detection"
cp -r . "$reports/fraud_detection"
uport=${DEMO_UI_PORT:-$(free_port)}
parity ui --repo "$reports/fraud_detection" --port "$uport" 2>/dev/null &
ui_server=$!
trap 'kill $ui_server 2>/dev/null || true; rm -rf "$work"' EXIT
wait_until_up "http://127.0.0.1:$uport/ui/api/health"
python - "$uport" <<'PY'
import json, sys, urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}"
def get(path):
    with urllib.request.urlopen(base + path, timeout=30) as reply:
        return json.load(reply)
overview = get("/ui/api/overview")
print(f"  project {overview['project']}: {overview['feature_views']} feature views, "
      f"{overview['features']} features, {overview['models']} model(s), registry version "
      f"{overview['registry_version']}")
models = get("/ui/api/models")["models"]
print("  models: " + ", ".join(f"{m['name']} (versions {m['versions']}, aliases {m['aliases']})" for m in models))
found = get("/ui/api/search?q=txn_count")["results"]
print("  search 'txn_count': " + ", ".join(r["name"] for r in found[:5]))
PY
echo
echo "  The UI is at http://127.0.0.1:$uport/ui/ ; the pages to open:"
for page in "catalog?q=amount" "feature/account_txn_stats/txn_count_7d" "lineage?node=service:fraud_model_v1" \
            "duplicates" "history" "model/fraud" "rollouts" "monitoring/fraud"; do
  echo "    http://127.0.0.1:$uport/ui/#/$page"
done
echo "  Run it again later: parity ui --repo $reports/fraud_detection"
if [ -t 0 ] && [ -t 1 ] && [ "${DEMO_UI_WAIT:-1}" = 1 ]; then
  echo "  (serving until Ctrl-C)"
  wait $ui_server || true
fi
