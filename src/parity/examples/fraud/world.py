"""The fraud example's world after its recorded data ends, with a NEW fraud pattern: the recorded
tables (data.py) continued day by day, then rewritten with the new days appended.

From `shift_at` the business opens instant sign-up (email only, KYC level 1, the minimum credit
limit): many new customers join, and a bust-out ring with them. The ring's accounts are brand new,
pay from clean-looking devices (its tool defeats the fingerprinting vendor: low risk score, no
emulator), and spend a few hundred dollars a day for a few days until the chargebacks arrive. The
champion learned that fraud comes from risky devices on hijacked accounts, so it scores the ring
low; the ring's chargebacks are in the labels, so a retrain on matured labels can learn it.

Every reader of the example is point-in-time (features as of each row's time, labels as of their
`label_timestamp`), so tables holding days ahead of a simulated clock are never read ahead. Pure
generation in functions; `extend` reads and writes the repo's Parquet files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parity.examples.fraud import data
from parity.examples.fraud.data import (
    CATEGORIES,
    CHARGEBACK_WINDOW,
    COMPROMISE_P,
    COUNTRIES,
    COUNTRY_P,
    DAY,
    FRAUD_CATEGORY_P,
    FRAUD_OS_P,
    HOUR,
    ISOLATED_FRAUD_P,
    LEGIT_CATEGORY_P,
    LEGIT_OS_P,
    OSES,
    SECOND,
    TIMESTAMP,
    Floats,
    Ints,
)

RECORDED_DAYS = 60  # data.generate's default: the compromise rate is spread over them
MIN_CREDIT = 500.0  # instant sign-up opens at the smallest credit limit
TAKEOVER_RISK = 0.6  # the continued takeovers' devices score at least this (see _takeovers)


@dataclass(frozen=True)
class Shift:
    """The new world's knobs (from `shift_at`, per day and per 1,000 recorded accounts, so a
    small world shifts in the same proportions): legitimate instant sign-ups, and the ring's new
    accounts, each paying `ring_rate` times a day for `ring_days` days."""

    signups_per_day: float = 40.0
    ring_per_day: float = 3.0
    ring_rate: tuple[float, float] = (5.0, 9.0)
    ring_days: tuple[float, float] = (2.0, 5.0)
    ring_log_amount: float = 5.2  # about $180 a payment, the owners about $30
    ring_weekly_growth: float = 0.0  # the ring's sign-ups grow by this share each week
    # Checkout adds buy-now-pay-later with the launch: every basket grows by this factor.
    amount_factor: float = 1.5

    def __post_init__(self) -> None:
        for name in ("signups_per_day", "ring_per_day", "ring_weekly_growth"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("ring_rate", "ring_days"):
            low, high = getattr(self, name)
            if not (math.isfinite(high) and 0 < low <= high):
                raise ValueError(
                    f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}"
                )
        if not (math.isfinite(self.amount_factor) and self.amount_factor > 0):
            raise ValueError(
                f"amount_factor must be a finite number > 0, got {self.amount_factor!r}"
            )

    def scaled(self, accounts: int) -> Shift:
        """The knobs for a world of `accounts` recorded accounts (absolute per-day rates)."""
        factor = accounts / 1000.0
        return replace(
            self,
            signups_per_day=self.signups_per_day * factor,
            ring_per_day=self.ring_per_day * factor,
        )


@dataclass(frozen=True)
class WorldSummary:
    """What `extend` appended: rows per table, the ring's accounts, and its payments; `shift`
    holds the absolute per-day rates used."""

    start: datetime
    end: datetime
    shift_at: datetime
    rows: dict[str, int]
    ring_accounts: tuple[int, ...]
    signup_accounts: int
    ring_payments: int
    takeover_payments: int
    legit_payments: int
    shift: Shift = field(default_factory=Shift)


@dataclass
class _Actors:
    """Who pays in the new days: one row per paying stream (an owner, a takeover, a ring
    account), with its span, rate and the shape of its payments."""

    account: list[Ints] = field(default_factory=list)
    device: list[Ints] = field(default_factory=list)
    lo: list[Ints] = field(default_factory=list)
    hi: list[Ints] = field(default_factory=list)
    rate: list[Floats] = field(default_factory=list)
    log_amount: list[Floats] = field(default_factory=list)
    sigma: list[Floats] = field(default_factory=list)
    kind: list[Ints] = field(default_factory=list)  # 0 owner, 1 takeover, 2 ring

    def add(self, **columns: Any) -> None:
        size = np.asarray(columns["account"]).size
        for name, value in columns.items():
            getattr(self, name).append(np.broadcast_to(np.asarray(value), (size,)).copy())

    def stack(self) -> dict[str, np.ndarray[Any, Any]]:
        return {name: np.concatenate(getattr(self, name)) for name in self.__dataclass_fields__}


OWNER, TAKEOVER, RING = 0, 1, 2


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def extend(
    data_dir: str | Path,
    *,
    until: datetime,
    shift_at: datetime,
    shift: Shift | None = None,
    seed: int = 11,
) -> WorldSummary:
    """Continue the recorded tables in `data_dir` from where they end up to `until`, the new
    pattern from `shift_at`, and rewrite them with the new rows appended."""
    for name, value in (("until", until), ("shift_at", shift_at)):
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    path = Path(data_dir)
    tables = {name: pq.read_table(path / f"{name}.parquet") for name in _TABLES}
    start = pc.max(tables["transactions"]["event_timestamp"]).as_py()
    if not start <= shift_at < until:
        raise ValueError(
            f"shift_at {shift_at.isoformat()} must be within [the data's end "
            f"{start.isoformat()}, until {until.isoformat()})"
        )
    rng = np.random.default_rng(seed)
    lo, hi, at = _micros(start) + 1, _micros(until), _micros(shift_at)
    world = _World.recorded(tables)
    scaled = (shift or Shift()).scaled(int(world.ids.size))
    new = world.continue_days(rng, lo, hi, at, scaled)
    appended = world.tables(rng, new, tables, hi)
    for name, table in appended.items():
        data._write(pa.concat_tables([tables[name], table]), path / f"{name}.parquet")
    kinds = new["kind"]
    return WorldSummary(
        start=start,
        end=until,
        shift_at=shift_at,
        rows={name: table.num_rows for name, table in appended.items()},
        ring_accounts=tuple(int(a) for a in world.ring_ids),
        signup_accounts=world.signups,
        ring_payments=int(np.count_nonzero(kinds == RING)),
        takeover_payments=int(np.count_nonzero(kinds == TAKEOVER)),
        legit_payments=int(np.count_nonzero(kinds == OWNER)),
        shift=scaled,
    )


def data_end(data_dir: str | Path) -> datetime:
    """The time of the newest recorded payment in `data_dir`."""
    table = pq.read_table(Path(data_dir) / "transactions.parquet", columns=["event_timestamp"])
    newest: datetime = pc.max(table["event_timestamp"]).as_py()
    return newest


_TABLES = ("accounts", "devices", "transactions", "chargebacks", "account_txn_stats")


class _World:
    """The recorded accounts and their habits, and the accounts and devices added since."""

    def __init__(self, accounts: pa.Table, habits: dict[str, np.ndarray[Any, Any]]) -> None:
        self.ids: Ints = habits["account_id"]
        self.signup: Ints = habits["signup"]
        self.rate: Floats = habits["rate"]
        self.log_amount: Floats = habits["log_amount"]
        self.kyc: Ints = habits["kyc"]
        self.primary: Ints = habits["primary"]
        self.second: Ints = habits["second"]
        self.next_account = int(pc.max(accounts["account_id"]).as_py()) + 1
        self.next_device = int(habits["next_device"][0])
        self.new_accounts: list[dict[str, Any]] = []
        self.new_devices: list[dict[str, Any]] = []
        self.ring_ids: list[int] = []
        self.signups = 0

    @classmethod
    def recorded(cls, tables: dict[str, pa.Table]) -> _World:
        import duckdb

        con = duckdb.connect()
        con.register("accounts", tables["accounts"])
        con.register("labels", tables["chargebacks"])
        con.register("devices", tables["devices"])
        habits = con.sql(_HABITS_SQL).to_arrow_table()
        columns = {
            name: habits[name].to_numpy(zero_copy_only=False) for name in habits.schema.names
        }
        columns["signup"] = columns["signup"].astype("datetime64[us]").astype(np.int64)
        return cls(tables["accounts"], columns)

    def continue_days(
        self, rng: np.random.Generator, lo: int, hi: int, at: int, shift: Shift
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Every payment in [lo, hi), in time order, with its actor's columns."""
        actors = _Actors()
        self._takeovers(rng, actors, lo, hi)
        self._instant_signups(rng, actors, at, hi, shift)
        self._ring(rng, actors, at, hi, shift)
        owners = _owner_payments(rng, self, lo, hi)
        bursts = _stream_payments(rng, actors.stack())
        payments = {k: np.concatenate([owners[k], bursts[k]]) for k in owners}
        larger = (payments["time"] >= at) & (payments["kind"] != RING)  # the ring sets its own
        payments["log_amount"] = payments["log_amount"] + np.where(
            larger, np.log(shift.amount_factor), 0.0
        )
        order = np.argsort(payments["time"], kind="stable")
        return {k: v[order] for k, v in payments.items()}

    def _device(self, at: int, risk: float, emulator: bool, os: int) -> int:
        device = self.next_device
        self.next_device += 1
        self.new_devices.append(
            {"device_id": device, "at": at, "risk": risk, "emulator": emulator, "os": os}
        )
        return device

    def _account(self, rng: np.random.Generator, at: int) -> int:
        account = self.next_account
        self.next_account += 1
        self.new_accounts.append(
            {
                "account_id": account,
                "at": at,
                "country": int(rng.choice(len(COUNTRIES), p=COUNTRY_P)),
            }
        )
        return account

    def _takeovers(self, rng: np.random.Generator, actors: _Actors, lo: int, hi: int) -> None:
        """The recorded pattern goes on: hijacked accounts paying in bursts from a risky device,
        as often as before. The device's risk is drawn from the recorded fraud devices' above
        TAKEOVER_RISK only: a week's fraud comes from a handful of devices, and one of them
        scored low would swing a small world's weekly recall by half, noise that is not the
        shift this world is about."""
        per_day = COMPROMISE_P / RECORDED_DAYS * np.where(self.kyc == 1, 1.8, 1.0)
        victims, times = data._arrivals(
            rng, np.full(self.ids.size, lo), np.full(self.ids.size, hi), per_day
        )
        for victim, start in zip(victims, times, strict=True):
            burst = int(rng.uniform(1.0, 6.0) * DAY)
            risk = _risky(rng)
            os = int(rng.choice(len(OSES), p=FRAUD_OS_P))
            device = self._device(
                start - int(rng.uniform(1, 60) * 60 * SECOND), risk, bool(rng.random() < 0.6), os
            )
            actors.add(
                account=self.ids[victim],
                device=device,
                lo=start,
                hi=min(start + burst, hi),
                rate=4.0 * self.rate[victim] + 4.0,
                log_amount=self.log_amount[victim] + 1.1,
                sigma=0.8,
                kind=TAKEOVER,
            )

    def _instant_signups(
        self, rng: np.random.Generator, actors: _Actors, at: int, hi: int, shift: Shift
    ) -> None:
        """New customers of instant sign-up: ordinary owners, young accounts at KYC level 1."""
        days = (hi - at) / DAY
        for start in np.sort(
            at + data._offsets(rng, hi - at, int(rng.poisson(shift.signups_per_day * days)))
        ):
            account = self._account(rng, int(start))
            device = self._device(
                int(start),
                float(rng.beta(1.5, 12.0)),
                bool(rng.random() < 0.01),
                int(rng.choice(len(OSES), p=LEGIT_OS_P)),
            )
            actors.add(
                account=account,
                device=device,
                lo=int(start),
                hi=hi,
                rate=rng.uniform(0.5, 4.0),
                log_amount=rng.normal(3.4, 0.5),
                sigma=0.9,
                kind=OWNER,
            )
            self.signups += 1

    def _ring(
        self, rng: np.random.Generator, actors: _Actors, at: int, hi: int, shift: Shift
    ) -> None:
        """The bust-out ring: brand-new accounts on clean-looking devices, spending fast."""
        for week in range(int(np.ceil((hi - at) / (7 * DAY)))):
            lo_w, hi_w = at + week * 7 * DAY, min(at + (week + 1) * 7 * DAY, hi)
            rate = shift.ring_per_day * (1.0 + shift.ring_weekly_growth) ** week
            count = int(rng.poisson(rate * (hi_w - lo_w) / DAY))
            for start in np.sort(lo_w + data._offsets(rng, hi_w - lo_w, count)):
                account = self._account(rng, int(start))
                self.ring_ids.append(account)
                device = self._device(
                    int(start),
                    float(rng.beta(1.5, 12.0)),
                    False,
                    int(rng.choice(len(OSES), p=LEGIT_OS_P)),
                )
                begin = int(start) + int(rng.uniform(0.5, 6.0) * HOUR)
                span = int(rng.uniform(*shift.ring_days) * DAY)
                actors.add(
                    account=account,
                    device=device,
                    lo=begin,
                    hi=min(begin + span, hi),
                    rate=rng.uniform(*shift.ring_rate),
                    log_amount=shift.ring_log_amount,
                    sigma=0.5,
                    kind=RING,
                )

    def tables(
        self,
        rng: np.random.Generator,
        new: dict[str, np.ndarray[Any, Any]],
        old: dict[str, pa.Table],
        hi: int,
    ) -> dict[str, pa.Table]:
        """The rows to append to each recorded table."""
        transactions, chargebacks = _payment_tables(rng, new, old["transactions"])
        stats = _stats_rows(old["transactions"], transactions, old["account_txn_stats"], hi)
        return {
            "accounts": self._accounts_table(rng, old["accounts"].schema),
            "devices": self._devices_table(rng, old["devices"].schema),
            "transactions": transactions,
            "chargebacks": chargebacks,
            "account_txn_stats": stats.cast(old["account_txn_stats"].schema),
        }

    def _accounts_table(self, rng: np.random.Generator, schema: pa.Schema) -> pa.Table:
        rows = self.new_accounts
        at = np.array([r["at"] for r in rows], dtype=np.int64)
        return pa.table(
            {
                "account_id": pa.array([r["account_id"] for r in rows], pa.int64()),
                "event_timestamp": pa.array(at, TIMESTAMP),
                "created_timestamp": pa.array(
                    at + (rng.uniform(5, 600, at.size) * SECOND).astype(np.int64), TIMESTAMP
                ),
                "credit_limit": pa.array(np.full(at.size, MIN_CREDIT)),
                "country": pa.array([COUNTRIES[r["country"]] for r in rows], pa.string()),
                "account_age_days": pa.array(np.zeros(at.size, dtype=np.int64)),
                "kyc_level": pa.array(np.ones(at.size, dtype=np.int32)),
            }
        ).cast(schema)

    def _devices_table(self, rng: np.random.Generator, schema: pa.Schema) -> pa.Table:
        rows = self.new_devices
        at = np.array([r["at"] for r in rows], dtype=np.int64)
        return pa.table(
            {
                "device_id": pa.array([r["device_id"] for r in rows], pa.int64()),
                "event_timestamp": pa.array(at, TIMESTAMP),
                "created_timestamp": pa.array(
                    at + (rng.uniform(1, 120, at.size) * SECOND).astype(np.int64), TIMESTAMP
                ),
                "device_risk_score": pa.array([r["risk"] for r in rows], pa.float64()),
                "is_emulator": pa.array([r["emulator"] for r in rows], pa.bool_()),
                "os": pa.array([OSES[r["os"]] for r in rows], pa.string()),
            }
        ).cast(schema)


# Each recorded account's habits, from its legitimate payments: how often it pays, how much, and
# from which devices (the most used first, then the second most used, else the first again).
_HABITS_SQL = """
WITH latest AS (
  SELECT account_id, arg_max(kyc_level, event_timestamp) AS kyc,
         min(event_timestamp - to_days(CAST(account_age_days AS INTEGER))) AS signup
  FROM accounts GROUP BY account_id),
legit AS (SELECT * FROM labels WHERE NOT is_fraud),
span AS (SELECT min(event_timestamp) AS lo, max(event_timestamp) AS hi FROM labels),
usage AS (
  SELECT account_id, device_id, count(*) AS n,
         row_number() OVER (PARTITION BY account_id ORDER BY count(*) DESC, device_id) AS rank
  FROM legit GROUP BY account_id, device_id),
paying AS (
  SELECT account_id, count(*) AS n, avg(ln(amount)) AS log_amount, min(event_timestamp) AS first
  FROM legit GROUP BY account_id)
SELECT l.account_id, l.signup, l.kyc,
       coalesce(p.n / greatest(epoch(s.hi - greatest(l.signup, s.lo)) / 86400.0, 1.0), 0.5) AS rate,
       coalesce(p.log_amount, 3.4) AS log_amount,
       coalesce(u1.device_id, -1) AS primary, coalesce(u2.device_id, u1.device_id, -1) AS second,
       (SELECT max(device_id) + 1 FROM devices) AS next_device
FROM latest l CROSS JOIN span s
LEFT JOIN paying p USING (account_id)
LEFT JOIN usage u1 ON u1.account_id = l.account_id AND u1.rank = 1
LEFT JOIN usage u2 ON u2.account_id = l.account_id AND u2.rank = 2
ORDER BY l.account_id
"""


def _risky(rng: np.random.Generator) -> float:
    """A fraud device's risk score as recorded (Beta(6, 2.5)), drawn until >= TAKEOVER_RISK."""
    while True:
        risk = float(rng.beta(6.0, 2.5))
        if risk >= TAKEOVER_RISK:
            return risk


def _owner_payments(rng: np.random.Generator, world: _World, lo: int, hi: int) -> dict[str, Any]:
    """The recorded accounts' own payments, day by day, at the owners' times of day."""
    paying = np.flatnonzero(world.primary >= 0)
    parts: list[tuple[Ints, Ints]] = []
    for day in range(lo - lo % DAY, hi, DAY):
        who = np.repeat(paying, rng.poisson(world.rate[paying]))
        time = data._owner_times(rng, day, who.size)
        keep = (time >= lo) & (time < hi) & (time >= world.signup[who])
        parts.append((who[keep], time[keep]))
    who = np.concatenate([p[0] for p in parts])
    usual = rng.random(who.size) < 0.75
    return {
        "account": world.ids[who],
        "device": np.where(usual, world.primary[who], world.second[who]),
        "time": np.concatenate([p[1] for p in parts]),
        "kind": np.full(who.size, OWNER),
        "log_amount": world.log_amount[who],
        "sigma": np.full(who.size, 0.9),
    }


def _stream_payments(rng: np.random.Generator, actors: dict[str, Any]) -> dict[str, Any]:
    """Poisson payments of each stream over its span."""
    who, time = data._arrivals(rng, actors["lo"], actors["hi"], actors["rate"])
    columns = ("account", "device", "kind", "log_amount", "sigma")
    return {"time": time} | {name: actors[name][who] for name in columns}


def _payment_tables(
    rng: np.random.Generator, new: dict[str, Any], old: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """The new payments and their chargeback labels (ids continue the recorded ones)."""
    n = new["time"].size
    kind = new["kind"]
    isolated = (kind == OWNER) & (rng.random(n) < ISOLATED_FRAUD_P)
    fraud = (kind != OWNER) | isolated
    raw = np.exp(new["log_amount"] + new["sigma"] * rng.standard_normal(n))
    raw[isolated] *= rng.uniform(1.5, 4.0, int(isolated.sum()))
    amount = np.maximum(np.round(raw, 2), 1.0)
    category = np.where(
        fraud,
        rng.choice(len(CATEGORIES), n, p=FRAUD_CATEGORY_P),
        rng.choice(len(CATEGORIES), n, p=LEGIT_CATEGORY_P),
    )
    abroad_p = np.select([kind == TAKEOVER, kind == RING, isolated], [0.5, 0.1, 0.3], 0.03)
    delay = (np.minimum(rng.exponential(1.5, n) + 0.05, 300.0) * SECOND).astype(np.int64)
    label_delay = np.where(
        fraud, 2 * DAY + data._offsets(rng, 18 * DAY, n), CHARGEBACK_WINDOW
    ).astype(np.int64)
    first = int(pc.max(old["transaction_id"]).as_py()) + 1
    shared = {
        "transaction_id": pa.array(np.arange(first, first + n, dtype=np.int64)),
        "account_id": pa.array(new["account"].astype(np.int64)),
        "device_id": pa.array(new["device"].astype(np.int64)),
        "event_timestamp": pa.array(new["time"], TIMESTAMP),
    }
    transactions = pa.table(
        {
            **shared,
            "created_timestamp": pa.array(new["time"] + delay, TIMESTAMP),
            "amount": pa.array(amount),
            "merchant_category": pa.array([CATEGORIES[c] for c in category], pa.string()),
            "is_international": pa.array(rng.random(n) < abroad_p),
        }
    )
    labels = {"amount": transactions["amount"], "is_fraud": pa.array(fraud)}
    label_time = pa.array(new["time"] + label_delay, TIMESTAMP)
    chargebacks = pa.table({**shared, **labels, "label_timestamp": label_time})
    return transactions.cast(old.schema), chargebacks


def _stats_rows(old: pa.Table, new: pa.Table, stats: pa.Table, hi: int) -> pa.Table:
    """The nightly aggregates of the new days: stamped at each UTC midnight after the recorded
    ones, over the recorded and the new payments of the day and the week before it."""
    import duckdb

    first = pc.max(stats["event_timestamp"]).cast(pa.int64()).as_py() // DAY + 1
    last = (hi - 1) // DAY  # the midnights up to the end whose nightly job has run
    columns = ["account_id", "device_id", "event_timestamp", "amount"]
    both = pa.concat_tables([old.select(columns), new.select(columns)])
    con = duckdb.connect()
    con.register("payments", both)
    rows = con.sql(_STATS_SQL.format(day=DAY, first=int(first), last=int(last))).to_arrow_table()
    stamp = pc.multiply(rows["day"], DAY)
    return pa.table(
        {
            "account_id": rows["account_id"],
            "event_timestamp": stamp.cast(TIMESTAMP),
            "created_timestamp": pc.add(stamp, HOUR).cast(TIMESTAMP),
            "txn_count_1d": rows["txn_count_1d"],
            "txn_amount_1d": pc.round(rows["txn_amount_1d"], 2),
            "txn_count_7d": rows["txn_count_7d"],
            "avg_amount_7d": pc.divide(
                rows["amount_7d"], pc.cast(rows["txn_count_7d"], pa.float64())
            ),
            "distinct_devices_7d": rows["distinct_devices_7d"],
        }
    )


# A payment on UTC day d counts in the stamps of midnights d+1 (the day) to d+7 (the week).
_STATS_SQL = """
WITH days AS (
  SELECT account_id, device_id, amount,
         epoch_us(event_timestamp) // {day} AS d
  FROM payments),
spread AS (SELECT *, d + lag AS day, lag FROM days, range(1, 8) AS r(lag))
SELECT account_id, day,
       count(*) FILTER (WHERE lag = 1) AS txn_count_1d,
       coalesce(sum(amount) FILTER (WHERE lag = 1), 0.0) AS txn_amount_1d,
       count(*) AS txn_count_7d, sum(amount) AS amount_7d,
       count(DISTINCT device_id) AS distinct_devices_7d
FROM spread WHERE day BETWEEN {first} AND {last}
GROUP BY account_id, day ORDER BY account_id, day
"""


# --- the world's truth, for evaluating models on it --------------------------------------------


def catch_rates(
    scores: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    ring: np.ndarray[Any, Any],
    amount: np.ndarray[Any, Any],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Share of the fraud (and of its dollars) scored at or above `threshold`: the ring's, the
    rest's, and in all."""
    flagged = scores >= threshold
    out: dict[str, float] = {}
    for name, part in (("ring", ring), ("other", ~ring), ("all", np.ones_like(ring))):
        fraud = labels & part
        out[f"{name}_fraud"] = float(fraud.sum())
        out[f"{name}_recall"] = (
            float((flagged & fraud).sum() / fraud.sum()) if fraud.any() else float("nan")
        )
        dollars = amount[fraud].sum()
        out[f"{name}_dollar_recall"] = (
            float(amount[flagged & fraud].sum() / dollars) if dollars else float("nan")
        )
    out["blocked"] = float(flagged.sum())
    return out


def fraud_labels(data_dir: Path, ids: Any) -> np.ndarray[Any, Any]:
    """Whether each payment of `ids` is fraud, by the world's truth (its chargebacks, whenever
    they arrive); an id without a label is not fraud."""
    table = pq.read_table(data_dir / "chargebacks.parquet", columns=["transaction_id", "is_fraud"])
    found = pc.index_in(pa.array(np.asarray(ids, dtype=np.int64)), table["transaction_id"])
    fraud = table["is_fraud"].to_numpy(zero_copy_only=False)
    index = found.to_numpy(zero_copy_only=False)
    known = ~np.isnan(index.astype(float))
    out = np.zeros(len(index), dtype=bool)
    out[known] = fraud[index[known].astype(np.int64)]
    return out
