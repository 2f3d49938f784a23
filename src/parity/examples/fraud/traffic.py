"""Simulated serving traffic for the fraud example: weeks of scored payments in the prediction log.

A demo cannot wait weeks for real traffic, so this replays the example's recorded transactions of
the last `--days` days as if the model server had scored each one when it happened: features as of
the payment's time (the point-in-time join, which equals what the online store served then), the
registered model's score, and a prediction log record in the model server's own format (written
with its ParquetLogSink), whose request id is the payment's `txn-<transaction_id>` so chargebacks
can be joined to it later. The last `--shift-days` days (from the start of the monitoring window
holding them) are shifted on purpose (larger amounts,
devices re-scored riskier), the way a new merchant campaign or a fingerprinting vendor change would
shift them, so drift monitoring has something to find. The shifted values exist only in this log:
a consistency replay of the model's log would rightly report them as mismatches. Needs the `ml`
extra.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from parity.feature_store import FeatureStore

AMOUNT_FACTOR = 1.8  # the shifted days' payments are 80% larger
RISK_BUMP = 0.25  # and their devices score this much riskier (capped at 1)


def shift(frame: pd.DataFrame) -> pd.DataFrame:
    """The shifted world: larger amounts (and so larger daily and weekly amount aggregates) and
    riskier device scores (a copy)."""
    shifted = frame.copy()
    for column in ("amount", "txn_amount_1d", "avg_amount_7d"):
        shifted[column] = shifted[column] * AMOUNT_FACTOR
    risk = shifted["device_risk_score"]
    shifted["device_risk_score"] = np.minimum(risk + RISK_BUMP, 1.0).where(risk.notna())
    return shifted


def shift_start(end: datetime, days: int) -> datetime:
    """Where the shift begins: the start of the `days`-day window holding `end - days`, windows
    aligned to the Unix epoch as monitoring's are (7 days: Thursdays 00:00 UTC). So the shift
    fills one whole monitoring window (and the one still filling), not parts of two."""
    width = timedelta(days=days)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((end - width - epoch) // width) * width


def simulate(
    store: FeatureStore,
    *,
    model: str = "fraud@champion",
    days: int = 42,
    shift_days: int = 7,
    log_dir: str | Path | None = None,
) -> dict[str, int]:
    """Score the last `days` days of recorded payments with `model` and log them, the last
    `shift_days` days shifted. Returns the rows logged, shifted and the version used."""
    import pandas as pd
    import pyarrow.parquet as pq

    from parity.examples.fraud.model import inputs
    from parity.inference.predlog import ParquetLogSink, PredictionRecord

    version = store.models.resolve(model)
    loaded = store.models.load(version)
    payments = pq.read_table(store.repo_path / "data" / "transactions.parquet").to_pandas()
    end = payments["event_timestamp"].max()
    payments = payments[payments["event_timestamp"] > end - timedelta(days=days)]
    entity_df = payments[["account_id", "device_id", "event_timestamp", "amount"]].copy()
    entity_df["transaction_id"] = payments["transaction_id"].to_numpy()
    service = version.feature_service or "fraud_model_v1"
    frame = store.get_historical_features(entity_df, service).to_pandas()
    late = frame["event_timestamp"] >= shift_start(end.to_pydatetime(), shift_days)
    frame = pd.concat([frame[~late], shift(frame[late])]).sort_values("event_timestamp")
    scores = np.asarray(loaded.predict(inputs(frame)), dtype=np.float64)
    feature_names = [n for n in frame.columns if n not in entity_df.columns]
    alias = model.split("@", 1)[1] if "@" in model else None
    sink = ParquetLogSink(log_dir or store.repo_path / "data" / "prediction_log")
    try:
        records = [
            PredictionRecord(
                request_id=f"txn-{row['transaction_id']}",
                at=row["event_timestamp"].to_pydatetime(),
                model=version.name,
                version=version.version,
                alias=alias,
                entities={k: _plain(row[k]) for k in ("account_id", "device_id", "amount")},
                features={k: _plain(row[k]) for k in feature_names},
                prediction=float(score),
                latency_ms=0.0,
            )
            for row, score in zip(frame.to_dict("records"), scores, strict=True)
        ]
        for start in range(0, len(records), 50_000):
            sink.write(records[start : start + 50_000])
    finally:
        sink.close()
    return {"rows": len(records), "shifted": int(late.sum()), "version": version.version}


def _plain(value: Any) -> Any:
    """A JSON-ready value: NaN and pandas' missing values become None, numpy scalars Python's."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is in the ml extra this needs
        pass
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def main(argv: list[str] | None = None) -> None:
    from parity.errors import ParityError
    from parity.feature_store import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--model", default="fraud@champion")
    parser.add_argument("--days", type=int, default=42, help="Days of payments to replay.")
    parser.add_argument("--shift-days", type=int, default=7, help="Last days to shift.")
    args = parser.parse_args(argv)
    if args.days < 1 or not 0 <= args.shift_days <= args.days:
        parser.error("--days must be at least 1 and --shift-days between 0 and --days")
    try:
        with FeatureStore(args.repo) as store:
            done = simulate(store, model=args.model, days=args.days, shift_days=args.shift_days)
    except ParityError as error:  # one line, as the CLI prints it
        print(f"Error [{error.code}]: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(
        f"Logged {done['rows']:,} scored payments of the last {args.days} days for "
        f"{args.model} (version {done['version']}); the last {args.shift_days} days "
        f"({done['shifted']:,} payments) shifted: amounts (and the amount aggregates) "
        f"x{AMOUNT_FACTOR}, device risk +{RISK_BUMP}"
    )


if __name__ == "__main__":
    main()
