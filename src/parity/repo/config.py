"""parity.yaml: the one settings object of a feature repo, loaded once at the edge and passed down.

Unknown keys are errors. `${VAR}` in string values is replaced from the environment mapping
given to `load_config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from parity.definitions.base import check_identifier, describe_validation_error
from parity.errors import ConfigError
from parity.store_urls import artifacts_url_problem, redis_url_problem, registry_url_problem

CONFIG_FILE = "parity.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConfig(_Settings):
    """`type: sqlite` keeps the registry in `path` (relative to the repo); postgres uses `url`."""

    type: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "data/registry.db"
    url: str | None = Field(default=None, repr=False)  # may hold a password
    cache_ttl_seconds: float = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("type") == "postgres":
            _refuse(registry_url_problem(value))
        return value

    @model_validator(mode="after")
    def _url_for_postgres(self) -> RegistryConfig:
        if self.type == "postgres" and not self.url:
            raise ValueError(
                "registry type postgres needs url, e.g. postgresql://user@127.0.0.1:5432/db"
            )
        return self

    def database_url(self, repo_root: Path) -> str:
        if self.type == "postgres":
            return str(self.url)  # the validator above makes sure it is set
        path = Path(self.path)
        return f"sqlite:///{path if path.is_absolute() else repo_root / path}"


class OfflineConfig(_Settings):
    """`type: duckdb` (embedded, the default) or `type: spark` (PySpark, the `spark` extra, Java
    17): `master` is the Spark master URL and `conf` extra Spark settings (docs/scale.md).
    `memory_limit` and `temp_directory` are DuckDB's."""

    type: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str | None = None
    temp_directory: str | None = None
    # local[2]: two cores of this machine; a cluster's URL (spark://, yarn, k8s://) scales out.
    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        # Checked here, not by Spark: a JVM refusing it prints a Java stack trace and the error
        # that comes back blames the Java install instead of this field.
        if not _SPARK_MASTER.fullmatch(value.strip()):
            raise ValueError(
                f"{value!r} is not a Spark master URL; use local[N] or local[*] (this machine), "
                "spark://host:port, yarn, or k8s://https://host:port"
            )
        return value.strip()

    @field_validator("conf", mode="before")
    @classmethod
    def _conf(cls, value: Any) -> Any:
        # YAML reads `spark.sql.shuffle.partitions: 2` and `spark.ui.enabled: false` as an int
        # and a bool; Spark takes every setting as text, so scalars are written as Spark would.
        if not isinstance(value, Mapping):
            return value
        return {key: _spark_text(key, item) for key, item in value.items()}


_SPARK_MASTER = re.compile(
    r"local(\[(\d+|\*)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
    r"|spark://[^\s/,:]+:\d+(,[^\s/,:]+:\d+)*|yarn|k8s://\S+|mesos://\S+"
)


def _spark_text(key: Any, item: Any) -> Any:
    """A Spark setting's value as text (booleans lower-case, as Spark writes them)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return str(item)
    if not isinstance(item, str):
        raise ValueError(f"setting {key!r} must be text or a number, got {type(item).__name__}")
    return item


class OnlineConfig(_Settings):
    """`expire: true` drops an entity's row once its view's ttl has passed since its event time
    (in Redis, a key once every view it holds has expired); reads then answer NOT_FOUND."""

    type: Literal["sqlite", "redis", "redis_cluster"] = "sqlite"
    path: str = "data/online.db"
    connection_string: str | None = Field(default=None, repr=False)  # may hold a password
    expire: bool = False
    # Serving reads of a network store (Redis): a read that takes longer fails (503), and
    # `breaker_failures` failures in a row open a circuit breaker that refuses reads at once for
    # `breaker_cool_down_seconds`, then lets one probe through. Writes keep the client's timeouts.
    timeout_seconds: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cool_down_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)

    @field_validator("connection_string")
    @classmethod
    def _connection_string(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked whatever the type: stream workers read Redis Streams at this URL too. A
        # cluster's is one or more node URLs, comma-separated.
        if value is not None:
            cluster = info.data.get("type") == "redis_cluster"
            for url in value.split(",") if cluster else [value]:
                _refuse(redis_url_problem(url.strip()))
                if cluster:
                    _refuse(_cluster_node_problem(url.strip()))
        return value


def _cluster_node_problem(url: str) -> str | None:
    """What a Redis Cluster node URL may not have (online/cluster_router.py refuses the same when
    the store opens; checked here too so `plan` and `apply` refuse it, naming the file)."""
    from urllib.parse import urlsplit

    from parity.redaction import redact

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return f"{redact(url)!r}: a cluster node is reached over TCP (redis:// or rediss://)"
    if parts.path.strip("/") not in ("", "0"):
        return f"{redact(url)!r}: Redis Cluster has only database 0; remove '/<db>'"
    return None


class FeatureServerConfig(_Settings):
    """`parity serve`: a request may name at most `max_entities` entity rows (413 beyond);
    lookups run on `read_threads` threads off the event loop, and a request that would wait
    longer than `max_queue_ms` for one is answered 503 at once. Reasons in docs/online.md."""

    max_entities: int = Field(default=10_000, ge=1)
    read_threads: int = Field(default=4, ge=1)
    max_queue_ms: float = Field(default=100.0, gt=0, allow_inf_nan=False)
    # Served-feature log for consistency replay (docs/monitoring.md): every row of a sampled
    # entity key (md5 of its join keys) is logged under `served_log`; 0 turns logging off.
    served_log: str | None = "data/served_log"
    log_sample_percent: float = Field(default=1.0, ge=0, le=100, allow_inf_nan=False)


class BatchingConfig(_Settings):
    """Adaptive batching of one model: requests merge up to `max_batch_size` rows, waiting at
    most `max_latency_ms` for company. `max_batch_size: 1` turns batching off."""

    max_batch_size: int = Field(default=64, ge=1)
    max_latency_ms: float = Field(default=5.0, ge=0, allow_inf_nan=False)


class ServingConfig(_Settings):
    """How `parity serve-models` answers: a bare model name means `default_alias` if the model
    has it, else its latest version; alias moves are seen within `alias_refresh_seconds`. A
    request may carry at most `max_entities` rows (`/v1` entity rows, the first dimension of a
    `/v2` input tensor): more is 413 before any read or predict. Reasons in docs/models.md."""

    default_alias: str = "champion"
    max_entities: int = Field(default=10_000, ge=1)
    alias_refresh_seconds: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    prediction_log: str | None = "data/prediction_log"
    # How often queued records are written (and fsynced): at most this much is lost on a kill.
    prediction_log_flush_seconds: float = Field(default=0.2, gt=0, le=1.0, allow_inf_nan=False)
    batching: BatchingConfig = BatchingConfig()
    models: dict[str, BatchingConfig] = {}
    # Where shadow (mirrored) predictions run: "process", a child process of each server worker
    # (off the champion's CPU and GIL), or "inline", tasks on the serving event loop.
    shadow_executor: Literal["process", "inline"] = "process"


class ModelsConfig(_Settings):
    """Model artifacts live in `artifacts` (a folder relative to the repo, or an fsspec URL such
    as s3://bucket/prefix). `trusted: true` allows loading pickle-based models (sklearn, pyfunc):
    unpickling runs code, so only trust a registry and artifact store that only you can write."""

    artifacts: str = "data/artifacts"
    trusted: bool = False
    serving: ServingConfig = ServingConfig()

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, value: str) -> str:
        _refuse(artifacts_url_problem(value))
        return value

    def artifacts_url(self, repo_root: Path) -> str:
        if "://" in self.artifacts:
            return self.artifacts
        path = Path(self.artifacts)
        return str(path if path.is_absolute() else repo_root / path)


class IngestConfig(_Settings):
    """`max_future_skew` (seconds, or an ISO 8601 duration such as PT5M; default 5 minutes, at
    most a day): how far after the store's clock an event may be stamped. Producers' clocks
    drift by seconds, not hours, so an event further ahead is a bad timestamp (a year 9999, ms
    read as s): `push` refuses it, a stream worker drops and counts it."""

    max_future_skew: timedelta = Field(
        default=timedelta(minutes=5), ge=timedelta(0), le=timedelta(days=1)
    )


class MaterializeConfig(_Settings):
    """`read_slack` (seconds, or an ISO 8601 duration such as P1D; default 1 day, from 1 minute
    to 366 days): a materialization of an aggregated view at END writes the tiles reads at t in
    [END, END + read_slack] use. Later, a window that still starts at or before END answers
    OUTSIDE_MAX_AGE until the next run. Larger = more tiles written, smaller = run more often."""

    read_slack: timedelta = Field(
        default=timedelta(days=1), ge=timedelta(minutes=1), le=timedelta(days=366)
    )


class JobsConfig(_Settings):
    """The job runner (`parity jobs run`, `parity monitor run`); docs/lifecycle.md gives each
    default its reason. `max_concurrent` (default 2): jobs running at once per project across
    every runner: a training job takes a core or more, and this machine class has two.
    `heartbeat_seconds` (default 10): how often a running job's runner says it is alive.
    `stale_after_seconds` (default 60, at least 3 heartbeats): a running job not heard from this
    long has lost its runner; it is marked failed and its retry policy applies. `poll_seconds`
    (default 2): how often an idle runner looks for queued jobs."""

    max_concurrent: int = Field(default=2, ge=1, le=1024)
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    stale_after_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    poll_seconds: float = Field(default=2.0, gt=0, le=3600, allow_inf_nan=False)

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> JobsConfig:
        if self.stale_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                f"jobs.stale_after_seconds ({self.stale_after_seconds}) must be at least 3 x "
                f"heartbeat_seconds ({self.heartbeat_seconds}), or a slow heartbeat fails a "
                "healthy job"
            )
        return self


class OidcConfig(_Settings):
    """JWTs from an OIDC provider (`auth.oidc`), verified against the provider's keys (`jwks`: a
    JSON Web Key Set file, relative to the repo, or an https URL; plain http only to this machine,
    since anyone on the path could swap the keys). Reasons for each default:

    - `audience` is required (a token the IdP issued for another application is refused) and
      `issuer`, when set, must match `iss` (set it when the key set is shared by several issuers).
    - `algorithms`: RS256 and ES256, what IdPs sign with. Only asymmetric algorithms are accepted
      (RS*, PS*, ES*, EdDSA): `none` and HS* are refused, so a token "signed" with the public key
      as an HMAC secret (algorithm confusion) can never verify.
    - `scopes_claim` (`scope`, as OAuth puts it): its space-separated string or list holds Parity
      scopes; other items (`openid`, `email`) are ignored. `scope_map` maps values of the claims
      named in `scope_map_claims` (`groups`, `roles`; a dotted path reaches a nested claim such as
      `realm_access.roles`) and items of `scopes_claim` to Parity scopes. Only those claims are
      read, never profile claims a user may edit (`name`, `email`), so nobody can grant themselves
      a scope by renaming themselves.
    - `name_claim` (`sub`) names the caller in the audit trail and 403s; falls back to `sub`.
    - `jwks_refresh_seconds` (300): keys the IdP adds or withdraws take effect within 5 minutes;
      a token with an unknown key id re-reads the set at once (at most once per 10 s).
    - `leeway_seconds` (30): clock skew allowed between the IdP and this server on `exp`/`nbf`.

    A key set URL is fetched with a 3 s timeout (a hung IdP holds a request no longer), read again
    at most once per 10 s whatever the refresh interval. When a re-read fails the keys already read
    stay in use; with none read yet a JWT gets 503 with Retry-After (identity_provider_unavailable:
    the token may be fine, the server cannot check it now), not a 401 that would send clients to
    fetch new tokens in a loop.
    """

    jwks: str
    audience: str = Field(min_length=1)
    issuer: str | None = None
    algorithms: list[str] = ["RS256", "ES256"]
    scopes_claim: str = "scope"
    scope_map: dict[str, str] = {}
    scope_map_claims: list[str] = ["groups", "roles"]
    name_claim: str = "sub"
    jwks_refresh_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    leeway_seconds: float = Field(default=30.0, ge=0, le=300, allow_inf_nan=False)

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the key set's file path or https URL")
        if value.startswith(("http://", "https://")):
            _refuse(jwks_url_problem(value))
        elif "://" in value:
            raise ValueError(f"jwks {value!r}: give an https:// URL or a file path")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        allowed = [f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in (256, 384, 512)]
        allowed.append("EdDSA")
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(
                f"algorithms {bad or value}: give one or more of {', '.join(allowed)} (never "
                "'none' or HS*: a token must be signed with the IdP's private key)"
            )
        return value


class ClientLimitsConfig(_Settings):
    """Per-client limits (`auth.limits`), the defaults for a token created without its own (a
    token's own values win, field by field): a token bucket refilled at `rate_per_second`
    holding at most `burst` requests, and at most `max_in_flight` requests at once per server
    process. 429 with Retry-After beyond them, on top of the server's own overload guard (503).

    - `rate_per_second` None (default): no rate limit. No single rate suits every caller (a
      scraper sends one request a minute, a batch scorer thousands a second), and the in-flight
      cap already keeps one caller from starving the others whatever its requests cost.
    - `burst` None: one second's worth of the rate (`ceil(rate)`, at least 1), so a caller may
      send a second's requests at once after a pause, and never more than that above its rate.
    - `max_in_flight` None: half the server's --max-in-flight (at least 1), so one caller can
      never hold every slot: the others always find room while it is at its cap.

    Each server process keeps its own counts (a caller may get N times the limits from N
    workers or replicas). Reasons in docs/security.md."""

    rate_per_second: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)


class AuthConfig(_Settings):
    """Access control for both servers (`auth`): off by default (an embedded laptop setup; the
    servers then bind 127.0.0.1 unless told otherwise). On: every route but the health probes
    needs a bearer token (Parity API tokens from `parity auth token create`, or OIDC JWTs when
    `oidc` is set). A verified token is trusted for `cache_seconds` (so a revoke takes effect
    within that long on every server). Reasons in docs/security.md."""

    enabled: bool = False
    cache_seconds: float = Field(default=5.0, ge=0, le=300, allow_inf_nan=False)
    oidc: OidcConfig | None = None
    limits: ClientLimitsConfig = ClientLimitsConfig()


class RepoConfig(_Settings):
    project: str
    registry: RegistryConfig = RegistryConfig()
    offline: OfflineConfig = OfflineConfig()
    online: OnlineConfig = OnlineConfig()
    ingest: IngestConfig = IngestConfig()
    materialize: MaterializeConfig = MaterializeConfig()
    models: ModelsConfig = ModelsConfig()
    feature_server: FeatureServerConfig = FeatureServerConfig()
    jobs: JobsConfig = JobsConfig()
    auth: AuthConfig = AuthConfig()

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return check_identifier(value, "project name")


def jwks_url_problem(url: str) -> str | None:
    """Why a key set cannot come from `url`: only https, or plain http to this machine."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return None
    return (
        f"jwks {url!r}: give an https:// URL (plain http only to localhost or 127.0.0.1: "
        "anyone on the path could swap the keys) or a file path"
    )


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)  # pydantic names the setting: field 'online.connection_string'


def load_config(repo_root: Path, environ: Mapping[str, str] | None = None) -> RepoConfig:
    """Read `<repo_root>/parity.yaml`. Raises ConfigError naming the key and the fix."""
    path = repo_root / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: a feature repo needs a parity.yaml (run 'parity init NAME' to "
            "create one, or pass --repo PATH)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping with at least 'project: NAME'")
    return parse_config(_expand(raw, environ or {}), str(path))


def parse_config(raw: dict[str, Any], where: str = CONFIG_FILE) -> RepoConfig:
    try:
        return RepoConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(where, None, error)) from None


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, environ) for v in value]
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    f"parity.yaml uses ${{{name}}} but it is not set in the environment"
                )
            return environ[name]

        return _VAR.sub(lookup, value)
    return value
