"""The practical limit (a floor) of bench_online.py's materialization, measured in the same run.

    python materialize_limit.py PARQUET sqlite DB_PATH
    python materialize_limit.py PARQUET redis URL KEY_PREFIX

The least any correct materialization of the workload does, in a fresh interpreter (interpreter
start and the duckdb import count, as for the CLIs): read the join key and both times of every
row and keep one value per driver (DuckDB: one hash aggregate, max(event) and max(created) as
plain integers, no tie rule), then write 100,000 rows of 80 bytes (the 10 float64 features'
size) with no write-if-newer check: SQLite, one executemany INSERT into an empty table in one
transaction; Redis, pipelined HSETs. It reads no feature column and encodes nothing: a bound,
not a competitor. Prints the rows written.
"""

from __future__ import annotations

import sys

QUERY = """
SELECT driver_id, max(epoch_us(event_timestamp)) AS event, max(epoch_us(created)) AS created
FROM read_parquet('{path}') GROUP BY driver_id
"""


def newest(path: str) -> tuple[list[int], list[int], list[bytes]]:
    import duckdb

    rows = duckdb.sql(QUERY.format(path=path.replace("'", "''"))).fetchnumpy()
    keys, events = rows["driver_id"].tolist(), rows["event"].tolist()
    data = rows["created"].astype(">i8").repeat(10).tobytes()  # 80 bytes per driver
    return keys, events, [data[i : i + 80] for i in range(0, len(data), 80)]


def main(argv: list[str]) -> int:
    path, store, where = argv[0], argv[1], argv[2]
    keys, events, values = newest(path)
    if store == "sqlite":
        import sqlite3

        conn = sqlite3.connect(where, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("DROP TABLE IF EXISTS limit_online")
        conn.execute("CREATE TABLE limit_online (key INTEGER PRIMARY KEY, event INTEGER, v BLOB)")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO limit_online VALUES (?, ?, ?)", zip(keys, events, values, strict=True)
        )
        conn.execute("COMMIT")
        conn.close()
    else:
        import redis

        client = redis.Redis.from_url(where)
        prefix = argv[3].encode()
        for start in range(0, len(keys), 10_000):
            pipe = client.pipeline(transaction=False)
            chunk = zip(keys[start : start + 10_000], values[start : start + 10_000], strict=True)
            for key, value in chunk:
                pipe.hset(prefix + str(key).encode(), b"v", value)
            pipe.execute()
        client.close()
    print(f"limit: wrote {len(keys)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
