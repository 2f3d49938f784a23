"""Open the online store `parity.yaml` names (SQLite, Redis or Redis Cluster); imports a backend
only when it is the one configured."""

from __future__ import annotations

from pathlib import Path

from parity.online.store import OnlineStore
from parity.repo.config import OnlineConfig


def open_online_store(settings: OnlineConfig, repo_root: Path) -> OnlineStore:
    if settings.type == "redis_cluster":
        from parity.online.breaker import CircuitBreaker
        from parity.online.redis_cluster import RedisClusterOnlineStore

        return RedisClusterOnlineStore(
            settings.connection_string or "redis://127.0.0.1:7000",
            expire=settings.expire,
            read_timeout_seconds=settings.timeout_seconds,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cool_down_seconds),
        )
    if settings.type == "redis":
        from parity.online.breaker import CircuitBreaker
        from parity.online.redis_store import RedisOnlineStore

        return RedisOnlineStore(
            settings.connection_string or "redis://127.0.0.1:6379/0",
            expire=settings.expire,
            read_timeout_seconds=settings.timeout_seconds,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cool_down_seconds),
        )
    from parity.online.sqlite import SqliteOnlineStore

    path = Path(settings.path)
    path = path if path.is_absolute() else repo_root / path
    return SqliteOnlineStore(path, expire=settings.expire)
