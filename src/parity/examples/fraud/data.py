"""Seeded synthetic fraud-detection data: accounts, devices, transactions, nightly per-account
aggregates (the risk team's and the growth team's) and chargeback labels, one Parquet file each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
NumT = TypeVar("NumT", np.int64, np.float64)

SECOND = 1_000_000  # all times are integer microseconds since the Unix epoch
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COUNTRIES = ("US", "GB", "DE", "FR", "CA", "BR", "IN")
COUNTRY_P = (0.40, 0.15, 0.12, 0.10, 0.08, 0.08, 0.07)
OSES = ("android", "ios", "windows", "macos", "linux")
LEGIT_OS_P = (0.42, 0.38, 0.10, 0.08, 0.02)
FRAUD_OS_P = (0.60, 0.05, 0.15, 0.02, 0.18)
_EVERYDAY = ("grocery", "restaurants", "fuel", "retail", "travel")
CATEGORIES = (*_EVERYDAY, "digital_goods", "electronics", "gift_cards", "gambling")
LEGIT_CATEGORY_P = (0.30, 0.22, 0.12, 0.18, 0.05, 0.06, 0.04, 0.02, 0.01)
FRAUD_CATEGORY_P = (0.03, 0.04, 0.02, 0.10, 0.06, 0.25, 0.25, 0.20, 0.05)

MAX_OWN_DEVICES = 3  # 1 + Binomial(2, 0.15) devices per account, about 1.3 on average
FRAUD_LOCAL = MAX_OWN_DEVICES  # per-account device index used for the fraudster's device
COMPROMISE_P = 0.022  # per account, times 1.8 for KYC level 1: about 2.7% in all
ISOLATED_FRAUD_P = 0.001  # base rate of one-off fraud on transactions of healthy accounts
CHARGEBACK_WINDOW = 30 * DAY  # a legitimate label is known once this has passed


@dataclass(frozen=True)
class FraudDataSummary:
    """Where `generate` wrote its tables, and the row count of each table by name."""

    out_dir: Path
    rows: dict[str, int]


@dataclass(frozen=True)
class _Window:
    start: int
    end: int


@dataclass(frozen=True)
class _Accounts:
    signup: Ints
    active_from: Ints  # signup, or the window start for accounts that joined before it
    rate: Floats  # legitimate transactions per day
    log_amount: Floats  # mean of log(amount) for the owner's purchases
    country: Ints
    credit: Floats
    kyc: Ints
    compromise: Ints  # account takeover time; the window end for healthy accounts
    recovery: Ints  # when the owner regains control; the window end for healthy accounts


@dataclass(frozen=True)
class _Devices:
    ids: Ints  # device id of each device slot; owners' slots first, then fraudsters'
    first_seen: Ints
    fraud: Bools
    offset: Ints  # first slot of each account's own devices
    count: Ints  # number of each account's own devices
    ring: Ints  # slot of the fraudster's device per account, -1 if never compromised


@dataclass(frozen=True)
class _Txns:
    account: Ints  # account index (account_id - 1)
    local: Ints  # 0..2: the owner's n-th device; FRAUD_LOCAL: the fraudster's device
    time: Ints
    takeover: Bools  # made by the fraudster while the account was compromised


def generate(
    out_dir: str | Path,
    *,
    accounts: int = 1_000,
    days: int = 60,
    seed: int = 7,
    end: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> FraudDataSummary:
    """Write the five fraud-example tables as Parquet files into `out_dir`.

    Transactions fall in `[end - days, end)`. The output depends only on the arguments.
    """
    window = _window(accounts, days, end)
    rng = np.random.default_rng(seed)
    people = _make_accounts(rng, int(accounts), window)
    devices = _make_devices(rng, people, window)
    txns = _simulate(rng, people, devices, window)
    account_rows = _accounts_table(rng, people, window)
    device_rows = _devices_table(rng, devices, window)
    transactions, chargebacks = _transaction_tables(rng, txns, people, devices)
    stats = _stats_table(txns, transactions["amount"].to_numpy(), int(accounts), window)
    tables = {"accounts": account_rows, "devices": device_rows, "transactions": transactions}
    tables |= {"account_txn_stats": stats, "chargebacks": chargebacks}
    tables["account_spend"] = _spend_table(stats)
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:  # pyarrow writes without the GIL
        list(pool.map(_write, tables.values(), [path / f"{n}.parquet" for n in tables]))
    return FraudDataSummary(path, {name: table.num_rows for name, table in tables.items()})


def _window(accounts: int, days: int, end: datetime) -> _Window:
    for name, value, example in (("accounts", accounts, 1000), ("days", days, 60)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(
                f"{name} must be a whole number >= 1, got {value!r}; pass e.g. {name}={example}"
            )
    if not isinstance(end, datetime) or end.utcoffset() is None:
        raise ValueError(
            f"end must be a timezone-aware datetime, got {end!r}; "
            "pass e.g. datetime(2026, 1, 1, tzinfo=UTC)"
        )
    stop = (end - _EPOCH) // timedelta(microseconds=1)
    return _Window(start=stop - int(days) * DAY, end=stop)


def _offsets(rng: np.random.Generator, span: Ints | int, size: int) -> Ints:
    """Uniform integer offsets in [0, span)."""
    return (rng.random(size) * span).astype(np.int64)


def _make_accounts(rng: np.random.Generator, n: int, w: _Window) -> _Accounts:
    joins_inside = rng.random(n) < 0.1
    age = ((rng.exponential(700.0, n) + 1.0) * DAY).astype(np.int64)
    signup = np.where(joins_inside, w.start + _offsets(rng, w.end - w.start, n), w.start - age)
    active_from = np.maximum(signup, w.start)
    kyc = rng.choice(np.arange(1, 4, dtype=np.int64), size=n, p=[0.3, 0.5, 0.2])
    hit = rng.random(n) < COMPROMISE_P * np.where(kyc == 1, 1.8, 1.0)
    takeover = active_from + _offsets(rng, w.end - active_from, n)
    burst = (rng.uniform(1.0, 6.0, n) * DAY).astype(np.int64)
    return _Accounts(
        signup=signup,
        active_from=active_from,
        rate=rng.uniform(0.5, 4.0, n),
        log_amount=rng.normal(3.4, 0.5, n),
        country=rng.choice(len(COUNTRIES), n, p=COUNTRY_P),
        credit=np.maximum(500.0, np.round(np.exp(rng.normal(8.3, 0.6, n)) / 100.0) * 100.0),
        kyc=kyc,
        compromise=np.where(hit, takeover, w.end),
        recovery=np.where(hit, np.minimum(takeover + burst, w.end), w.end),
    )


def _make_devices(rng: np.random.Generator, acc: _Accounts, w: _Window) -> _Devices:
    count = 1 + rng.binomial(MAX_OWN_DEVICES - 1, 0.15, acc.signup.size).astype(np.int64)
    offset = np.cumsum(count) - count
    owner = np.repeat(np.arange(count.size), count)
    later = np.arange(owner.size) > offset[owner]  # extra devices appear after signup
    gap = np.maximum(w.start - acc.signup[owner], 0)
    own_seen = acc.signup[owner] + np.where(later, _offsets(rng, gap, owner.size), 0)
    ring, ring_seen = _fraud_rings(rng, acc, w)
    first_seen = np.concatenate([own_seen, ring_seen])
    return _Devices(
        ids=rng.permutation(first_seen.size).astype(np.int64) + 1,
        first_seen=first_seen,
        fraud=np.arange(first_seen.size) >= owner.size,
        offset=offset,
        count=count,
        ring=np.where(ring >= 0, ring + owner.size, -1),
    )


def _fraud_rings(rng: np.random.Generator, acc: _Accounts, w: _Window) -> tuple[Ints, Ints]:
    """Give each compromised account a fraudster device; rings share devices across victims."""
    victims = np.flatnonzero(acc.compromise < w.end)
    pool = max(1, int(np.ceil(victims.size * 0.7)))
    _, which = np.unique(rng.integers(0, pool, victims.size), return_inverse=True)
    seen = np.full(int(which.max(initial=-1)) + 1, w.end, dtype=np.int64)
    np.minimum.at(seen, which, acc.compromise[victims])
    seen -= (rng.uniform(1.0, 60.0, seen.size) * MINUTE).astype(np.int64)
    ring = np.full(acc.signup.size, -1, dtype=np.int64)
    ring[victims] = which
    return ring, seen


def _diurnal_quantiles(resolution: int = 1 << 16) -> Ints:
    """Minute of the UTC day at each quantile of the owners' activity, which peaks at 14:00."""
    hour = (np.arange(24 * 60) + 0.5) / 60.0
    distance = np.minimum(np.abs(hour - 14.0), 24.0 - np.abs(hour - 14.0))
    cumulative = np.cumsum(0.15 + 0.85 * np.exp(-0.5 * (distance / 4.5) ** 2))
    levels = (np.arange(resolution) + 0.5) / resolution
    return np.searchsorted(cumulative / cumulative[-1], levels).astype(np.int64)


_DIURNAL_QUANTILES = _diurnal_quantiles()


def _owner_times(rng: np.random.Generator, lo: int, size: int) -> Ints:
    """Times in [lo, lo + DAY) whose UTC time of day follows the owners' diurnal profile."""
    scaled = rng.random(size) * _DIURNAL_QUANTILES.size
    level = scaled.astype(np.int64)  # the quantile; its fractional part places it in the minute
    time_of_day = _DIURNAL_QUANTILES[level] * MINUTE + ((scaled - level) * MINUTE).astype(np.int64)
    return lo + (time_of_day - lo % DAY) % DAY


def _time_order(time: Ints, lo: int) -> Ints:
    """Indices sorting `time`, all in [lo, lo + DAY); ties keep their order on every platform."""
    bits = max(time.size.bit_length(), 1)
    if bits + DAY.bit_length() > 63:
        return np.argsort(time, kind="stable")
    keys = np.sort(((time - lo) << bits) | np.arange(time.size))  # unique keys
    return keys & ((1 << bits) - 1)


def _arrivals(rng: np.random.Generator, lo: Ints, hi: Ints, per_day: Floats) -> tuple[Ints, Ints]:
    """Poisson arrivals per account over [lo, hi): (account index, time) of each event."""
    span = np.maximum(hi - lo, 0)
    who = np.repeat(np.arange(span.size), rng.poisson(per_day * (span / DAY)))
    return who, lo[who] + _offsets(rng, span[who], who.size)


def _simulate(rng: np.random.Generator, acc: _Accounts, dev: _Devices, w: _Window) -> _Txns:
    days = [_simulate_day(rng, acc, dev, lo) for lo in range(w.start, w.end, DAY)]
    return _Txns(*(np.concatenate([getattr(d, f.name) for d in days]) for f in fields(_Txns)))


def _simulate_day(rng: np.random.Generator, acc: _Accounts, dev: _Devices, lo: int) -> _Txns:
    """One day [lo, lo + DAY) of transactions, sorted by time: the owners' and the fraudsters'."""
    own = np.repeat(np.arange(acc.rate.size), rng.poisson(acc.rate))
    own_time = _owner_times(rng, lo, own.size)
    in_control = (own_time < acc.compromise[own]) | (own_time >= acc.recovery[own])
    keep = (own_time >= acc.active_from[own]) & in_control
    own, own_time = own[keep], own_time[keep]
    usual = rng.random(own.size) < 0.75  # most purchases come from the first device
    local = np.where(usual, 0, _offsets(rng, dev.count[own], own.size))
    takeover_span = (np.maximum(acc.compromise, lo), np.minimum(acc.recovery, lo + DAY))
    bad, bad_time = _arrivals(rng, *takeover_span, 4.0 * acc.rate + 4.0)
    time = np.concatenate([own_time, bad_time])
    order = _time_order(time, lo)
    return _Txns(
        account=np.concatenate([own, bad])[order],
        local=np.concatenate([local, np.full(bad.size, FRAUD_LOCAL, dtype=np.int64)])[order],
        time=time[order],
        takeover=(np.arange(time.size) >= own.size)[order],
    )


def _timestamps(values: Ints) -> pa.Array:
    return pa.array(values, type=TIMESTAMP)


def _strings(codes: Ints, names: tuple[str, ...]) -> pa.Array:
    dictionary = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names))
    return dictionary.cast(pa.string())


def _accounts_table(rng: np.random.Generator, acc: _Accounts, w: _Window) -> pa.Table:
    """A signup snapshot per account, plus 0-2 later updates inside the window."""
    n = acc.signup.size
    updates = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    span = (w.end - acc.active_from)[:, None]
    times = np.sort(acc.active_from[:, None] + (rng.random((n, 2)) * span).astype(np.int64), 1)
    growth = np.cumprod(np.exp(rng.normal(0.1, 0.25, (n, 2))), axis=1)
    credit = np.maximum(500.0, np.round(acc.credit[:, None] * growth / 100.0) * 100.0)
    kyc = np.minimum(3, acc.kyc[:, None] + np.cumsum(rng.random((n, 2)) < 0.25, axis=1))
    who, rank = np.nonzero(np.arange(2)[None, :] < updates[:, None])
    account = np.concatenate([np.arange(n), who])
    event = np.concatenate([acc.signup, times[who, rank]])
    order = np.lexsort((event, account))
    account, event = account[order], event[order]
    created = event + ((rng.uniform(5.0, 600.0, event.size)) * SECOND).astype(np.int64)
    return pa.table(
        {
            "account_id": pa.array(account + 1, type=pa.int64()),
            "event_timestamp": _timestamps(event),
            "created_timestamp": _timestamps(created),
            "credit_limit": pa.array(np.concatenate([acc.credit, credit[who, rank]])[order]),
            "country": _strings(acc.country[account], COUNTRIES),
            "account_age_days": pa.array((event - acc.signup[account]) // DAY, type=pa.int64()),
            "kyc_level": pa.array(np.concatenate([acc.kyc, kyc[who, rank]])[order], pa.int32()),
        }
    )


def _devices_table(rng: np.random.Generator, dev: _Devices, w: _Window) -> pa.Table:
    """A first-seen snapshot per device; some devices are re-scored later in the window."""
    n = dev.ids.size
    risk = np.where(dev.fraud, rng.beta(6.0, 2.5, n), rng.beta(1.5, 12.0, n))
    emulator = rng.random(n) < np.where(dev.fraud, 0.6, 0.01)
    os = np.where(
        dev.fraud, rng.choice(len(OSES), n, p=FRAUD_OS_P), rng.choice(len(OSES), n, p=LEGIT_OS_P)
    )
    again = np.flatnonzero(rng.random(n) < np.where(dev.fraud, 0.6, 0.2))
    start = np.maximum(dev.first_seen[again], w.start)
    rescored = start + _offsets(rng, w.end - start, again.size)
    drift = np.where(
        dev.fraud[again], rng.uniform(0.05, 0.3, again.size), rng.normal(0.0, 0.05, again.size)
    )
    slot = np.concatenate([np.arange(n), again])
    event = np.concatenate([dev.first_seen, rescored])
    score = np.clip(np.concatenate([risk, risk[again] + drift]), 0.0, 1.0)
    order = np.lexsort((event, dev.ids[slot]))
    slot, event = slot[order], event[order]
    created = event + (rng.uniform(1.0, 120.0, event.size) * SECOND).astype(np.int64)
    return pa.table(
        {
            "device_id": pa.array(dev.ids[slot], type=pa.int64()),
            "event_timestamp": _timestamps(event),
            "created_timestamp": _timestamps(created),
            "device_risk_score": pa.array(score[order], type=pa.float64()),
            "is_emulator": pa.array(emulator[slot], type=pa.bool_()),
            "os": _strings(os[slot], OSES),
        }
    )


def _amounts(rng: np.random.Generator, tx: _Txns, acc: _Accounts, isolated: Ints) -> Floats:
    """Lognormal amounts in cents: fraudsters spend about three times more than owners."""
    mu = acc.log_amount[tx.account] + np.where(tx.takeover, 1.1, 0.0)
    raw = np.exp(mu + np.where(tx.takeover, 0.8, 0.9) * rng.standard_normal(mu.size))
    raw[isolated] *= rng.uniform(1.5, 4.0, isolated.size)
    return np.maximum(np.round(raw, 2), 1.0)


def _transaction_tables(
    rng: np.random.Generator, tx: _Txns, acc: _Accounts, dev: _Devices
) -> tuple[pa.Table, pa.Table]:
    """The transactions and their chargeback labels, in time order with increasing ids."""
    n = tx.time.size
    fraud = tx.takeover | (rng.random(n) < ISOLATED_FRAUD_P)
    bad, isolated = np.flatnonzero(fraud), np.flatnonzero(fraud & ~tx.takeover)
    amount = _amounts(rng, tx, acc, isolated)
    category = rng.choice(len(CATEGORIES), n, p=LEGIT_CATEGORY_P)
    category[bad] = rng.choice(len(CATEGORIES), bad.size, p=FRAUD_CATEGORY_P)
    abroad = rng.random(n) < np.where(tx.takeover, 0.5, 0.03)
    abroad[isolated] = rng.random(isolated.size) < 0.3
    delay = (np.minimum(rng.exponential(1.5, n) + 0.05, 300.0) * SECOND).astype(np.int64)
    label_delay = np.full(n, CHARGEBACK_WINDOW, dtype=np.int64)
    label_delay[bad] = 2 * DAY + _offsets(rng, 18 * DAY, bad.size)  # chargeback in 2-20 days
    slot = dev.offset[tx.account] + tx.local
    takeover = np.flatnonzero(tx.takeover)
    slot[takeover] = dev.ring[tx.account[takeover]]
    shared = {
        "transaction_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "account_id": pa.array(tx.account + 1, type=pa.int64()),
        "device_id": pa.array(dev.ids[slot], type=pa.int64()),
        "event_timestamp": _timestamps(tx.time),
    }
    transactions = pa.table(
        {
            **shared,
            "created_timestamp": _timestamps(tx.time + delay),
            "amount": pa.array(amount, type=pa.float64()),
            "merchant_category": _strings(category, CATEGORIES),
            "is_international": pa.array(abroad, type=pa.bool_()),
        }
    )
    labels = {"amount": transactions["amount"], "is_fraud": pa.array(fraud, type=pa.bool_())}
    label_time = _timestamps(tx.time + label_delay)
    return transactions, pa.table({**shared, **labels, "label_timestamp": label_time})


SLOTS = FRAUD_LOCAL + 1  # device indices per account
_POPCOUNT = np.array([bin(bits).count("1") for bits in range(1 << SLOTS)], dtype=np.int64)


def _daily_totals(
    tx: _Txns, amount: Floats, accounts: int, bounds: Ints
) -> tuple[Ints, Floats, Ints]:
    """(day, account) arrays: transaction count, amount, and a bit mask of the devices used."""
    shape = (bounds.size - 1, accounts)
    count, total, devices = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape, np.int64)
    for day in range(shape[0]):
        part = slice(bounds[day], bounds[day + 1])
        account = tx.account[part]
        count[day] = np.bincount(account, minlength=accounts)
        total[day] = np.bincount(account, weights=amount[part], minlength=accounts)
        used = np.bincount(account * SLOTS + tx.local[part], minlength=SLOTS * accounts) > 0
        devices[day] = np.packbits(used.reshape(accounts, SLOTS), 1, "little")[:, 0]
    return count, total, devices


def _trailing_week(daily: npt.NDArray[NumT], combine: np.ufunc = np.add) -> npt.NDArray[NumT]:
    """`combine` over the seven days (axis 0) ending with each day."""
    week = daily.copy()
    for lag in range(1, 7):
        combine(week[lag:], daily[:-lag], out=week[lag:])
    return week


def _rows(values: npt.NDArray[NumT], keep: Bools) -> npt.NDArray[NumT]:
    """The (day, account) cells selected by the (account, day) mask `keep`, account-major."""
    return np.ascontiguousarray(values.T)[keep]


def _stats_table(tx: _Txns, amount: Floats, accounts: int, w: _Window) -> pa.Table:
    """Nightly per-account aggregates, stamped at the midnight that closes each UTC day."""
    base = w.start - w.start % DAY  # the UTC midnight on or before the window start
    closed = (w.end - base) // DAY  # UTC days whose nightly job has run by `end`
    bounds = np.searchsorted(tx.time, base + DAY * np.arange(closed + 1)).astype(np.int64)
    count, total, devices = _daily_totals(tx, amount, accounts, bounds)
    count_7d, total_7d = _trailing_week(count), _trailing_week(total)
    devices_7d = _trailing_week(devices, np.bitwise_or)
    keep = np.ascontiguousarray((count_7d > 0).T)
    who, day = np.nonzero(keep)
    stamp = base + (day + 1) * DAY
    rows_7d = _rows(count_7d, keep)
    return pa.table(
        {
            "account_id": pa.array(who + 1, type=pa.int64()),
            "event_timestamp": _timestamps(stamp),
            "created_timestamp": _timestamps(stamp + HOUR),
            "txn_count_1d": pa.array(_rows(count, keep), type=pa.int64()),
            "txn_amount_1d": pa.array(np.round(_rows(total, keep), 2), type=pa.float64()),
            "txn_count_7d": pa.array(rows_7d, type=pa.int64()),
            "avg_amount_7d": pa.array(_rows(total_7d, keep) / np.maximum(rows_7d, 1)),
            "distinct_devices_7d": pa.array(_POPCOUNT[_rows(devices_7d, keep)], type=pa.int64()),
        }
    )


def _spend_table(stats: pa.Table) -> pa.Table:
    """The growth team's nightly spend per account, written an hour after the risk team's stats.
    Planted for the UI's duplicate detection: `purchases_1d` is txn_count_1d and `spend_cents_1d`
    is txn_amount_1d in cents, under other names; `active_days_7d` is its own feature."""
    count = stats["txn_count_1d"].to_numpy()
    account = stats["account_id"].to_numpy()
    stamp = stats["event_timestamp"].cast(pa.int64()).to_numpy()
    return pa.table(
        {
            "account_id": stats["account_id"],
            "event_timestamp": stats["event_timestamp"],
            "created_timestamp": _timestamps(stamp + 2 * HOUR),
            "purchases_1d": stats["txn_count_1d"],
            "spend_cents_1d": pa.array(
                np.round(stats["txn_amount_1d"].to_numpy() * 100.0).astype(np.int64)
            ),
            "active_days_7d": pa.array(_active_days(account, stamp, count), type=pa.int64()),
        }
    )


def _active_days(account: Ints, stamp: Ints, count: Ints) -> Ints:
    """Per (account, night) row: the days of the seven ending that night with a purchase."""
    day = stamp // DAY
    active = np.zeros(account.size, dtype=np.int64)
    order = np.lexsort((day, account))
    account, day, busy = account[order], day[order], (count[order] > 0).astype(np.int64)
    for lag in range(7):  # rows of one account are a few nights apart at most, so look back 7 rows
        if lag >= account.size:
            break
        same = np.zeros(account.size, dtype=bool)
        same[lag:] = (account[lag:] == account[: account.size - lag]) & (
            day[lag:] - day[: day.size - lag] < 7
        )
        shifted = np.zeros(account.size, dtype=np.int64)
        shifted[lag:] = busy[: busy.size - lag]
        active += np.where(same, shifted, 0)
    out = np.empty_like(active)
    out[order] = active
    return out


def _write(table: pa.Table, path: Path) -> None:
    """Write one Parquet file; integer and time columns are delta-encoded, strings dictionary."""
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    delta = [f.name for f in table.schema if pa.types.is_integer(f.type) or f.type == TIMESTAMP]
    encoding = dict.fromkeys(delta, "DELTA_BINARY_PACKED")
    pq.write_table(table, path, use_dictionary=strings, column_encoding=encoding)
