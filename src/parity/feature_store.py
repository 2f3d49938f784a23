"""FeatureStore: the thin facade wiring a repo's config, definitions, registry and offline engine.

It delegates: loading is parity.repo, diffing, committing and versioned reads are parity.registry
(`store.registry`), retrieval and datasets are parity.offline (`store.datasets`). No logic here.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from parity.definitions import Entity, FeatureService, FeatureView
from parity.errors import BackendNotInstalled, InvalidTime, NothingToMaterialize, PushError
from parity.registry.apply import ApplyResult, commit_plan, plan_against
from parity.registry.cache import CachedRegistry
from parity.registry.catalog import Catalog
from parity.registry.datasets import DatasetStore
from parity.registry.materializations import MaterializationLog
from parity.registry.plan import Plan
from parity.registry.store import RegistryStore
from parity.repo.config import RepoConfig, load_config
from parity.repo.loader import LoadedRepo, load_repo
from parity.timeutil import TimeLike, parse_time, to_micros, utcnow

if TYPE_CHECKING:
    from parity.deploy.retrain import Triggers
    from parity.deploy.service import Rollouts
    from parity.jobs.service import Jobs
    from parity.materialize.batch import MaterializeResult
    from parity.models.registry import ModelRegistry
    from parity.monitoring.service import Monitoring
    from parity.offline.datasets import Datasets
    from parity.offline.engine import OfflineEngine, RetrievalJob
    from parity.offline.request import RetrievalRequest
    from parity.offline.retrieval import FeaturesArg
    from parity.online.reads import OnlineResponse, Refusals
    from parity.online.store import OnlineStore
    from parity.serving.auth.service import Access


class FeatureStore:
    """`FeatureStore("path/to/repo")`: plan, apply and read definitions; build training sets."""

    def __init__(
        self,
        repo_path: str | os.PathLike[str] = ".",
        *,
        config: RepoConfig | None = None,
        registry_store: RegistryStore | None = None,
        offline_engine: OfflineEngine | None = None,
        online_store: OnlineStore | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo_path = Path(repo_path).resolve()
        environ = os.environ if environ is None else environ
        self.config = config or load_config(self.repo_path, environ)
        self._store = registry_store
        self._registry: CachedRegistry | None = None
        self._offline: OfflineEngine | None = offline_engine
        self._online: OnlineStore | None = online_store
        # Spark executors open the configured store themselves: only when it is the one used.
        self._online_settings = self.config.online if online_store is None else None
        self._clock = clock
        self._pushed: dict[str, datetime] = {}  # view -> when this process last pushed to it
        self._refused: Refusals | None = None  # window values answered OUTSIDE_MAX_AGE
        self._requests: tuple[Catalog | None, dict[Hashable, RetrievalRequest]] = (None, {})
        self._models: ModelRegistry | None = None
        self._monitoring: Monitoring | None = None
        self._rollouts: Rollouts | None = None
        self._datasets: Datasets | None = None
        self._jobs: Jobs | None = None
        self._triggers: Triggers | None = None
        self._access: Access | None = None

    @property
    def project(self) -> str:
        return self.config.project

    @property
    def _registry_store(self) -> RegistryStore:
        if self._store is None:
            from parity.registry.sqlite_read import open_registry_store

            self._store = open_registry_store(self.config.registry.database_url(self.repo_path))
        return self._store

    @property
    def registry(self) -> CachedRegistry:
        """The cached read side: lookups are in memory, refreshed when the version moves; also
        the versioned reads (`snapshot`, `describe`, `history`)."""
        if self._registry is None:
            self._registry = CachedRegistry(
                self._registry_store,
                self.project,
                refresh_interval=self.config.registry.cache_ttl_seconds,
            )
        return self._registry

    @property
    def models(self) -> ModelRegistry:
        """The model registry of this project, in the same SQL database as the feature registry;
        artifacts go to `models.artifacts` in parity.yaml."""
        if self._models is None:
            self._models = _model_registry(self)
        return self._models

    @property
    def monitoring(self) -> Monitoring:
        """Monitoring: profiles, drift, delayed-label performance, quality, freshness,
        consistency and alerts (see docs/monitoring.md)."""
        from parity.monitoring.service import Monitoring

        if self._monitoring is None:
            self._monitoring = Monitoring(self)
        return self._monitoring

    @property
    def rollouts(self) -> Rollouts:
        """Safe rollout of model versions: shadow, sticky canary steps, gates, promote and
        rollback (see docs/rollout.md)."""
        from parity.deploy.service import Rollouts

        if self._rollouts is None:
            self._rollouts = Rollouts(self)
        return self._rollouts

    @property
    def jobs(self) -> Jobs:
        """Durable jobs: training jobs, batch predictions, the runner (see docs/lifecycle.md)."""
        from parity.jobs.service import Jobs

        if self._jobs is None:
            self._jobs = Jobs(self)
        return self._jobs

    @property
    def triggers(self) -> Triggers:
        """Retrain triggers: decisions from the monitoring signals, recorded with their evidence
        (see docs/lifecycle.md)."""
        from parity.deploy.retrain import Triggers

        if self._triggers is None:
            self._triggers = Triggers(self)
        return self._triggers

    @property
    def access(self) -> Access:
        """Access control: API tokens (`create`, `list`, `revoke`, `authenticate`) and the audit
        trail of every write (see docs/security.md)."""
        from parity.serving.auth.service import Access

        if self._access is None:
            self._access = Access(self)
        return self._access

    @property
    def datasets(self) -> Datasets:
        """Saved training sets (`create`, `get`, `list`), recorded in the registry's database."""
        if self._datasets is None:
            self._datasets = _datasets(self)
        return self._datasets

    # --- repo -> registry ---------------------------------------------------------------------

    def _load_repo(self) -> LoadedRepo:
        """Import the repo's definitions (no registry access); elsewhere, call
        `parity.repo.loader.load_repo(store.repo_path, store.project)`."""
        return load_repo(self.repo_path, self.project)

    def plan(self, *, check_sources: bool = True) -> Plan:
        """Diff the repo against the registry; added or changed views are checked against their
        sources' schemas unless `check_sources=False`."""
        return self._plan(self._load_repo().catalog, check_sources)

    def _plan(self, catalog: Catalog, check_sources: bool) -> Plan:
        the_plan = plan_against(self._registry_store, catalog)
        if check_sources:
            from parity.offline.sources import check_sources as check

            touched = {c.name for c in the_plan.changes if c.object_type == "feature_view"}
            views = [v for name, v in catalog.feature_views.items() if name in touched]
            check(views, self.repo_path)
        return the_plan

    def apply(
        self,
        *,
        allow_breaking: bool = False,
        message: str = "",
        author: str | None = None,
        check_sources: bool = True,
    ) -> ApplyResult:
        """Commit the repo as a new registry version (no-op if nothing changed)."""
        catalog = self._load_repo().catalog
        the_plan = self._plan(catalog, check_sources)
        result = commit_plan(
            self._registry_store,
            catalog,
            the_plan,
            allow_breaking=allow_breaking,
            author=author or _default_author(),
            message=message,
            now=self._clock(),
        )
        if result.version is not None and self._registry is not None:
            self._registry.refresh()
        if check_sources:
            self._prove_untied(catalog)
        if result.version is not None:  # audited once committed; a no-op apply wrote nothing
            from parity.registry.audit import actor_for

            detail = {"version": result.version.version, "changes": len(the_plan.changes)}
            self.access.audit.record(
                "registry.apply",
                self.project,
                detail,
                actor=actor_for(author),
                at=result.version.committed_at,
            )
        return result

    def _prove_untied(self, catalog: Catalog) -> None:
        """Prove, for the plain views whose source files changed since, that no two rows share
        keys and event time: retrieval then skips its tie-breaking pass (offline/ties.py)."""
        if self.config.offline.type != "duckdb":
            return  # Spark breaks ties as always
        from parity.offline.duckdb_engine import DuckDBEngine

        engine = self._offline_engine
        if isinstance(engine, DuckDBEngine):
            for view in catalog.feature_views.values():
                if not view.is_aggregated:
                    engine.prove_untied(view)

    # --- offline ----------------------------------------------------------------------------

    @property
    def _offline_engine(self) -> OfflineEngine:
        if self._offline is None:
            from parity.offline.engines import open_engine

            self._offline = open_engine(self.repo_path, self.config.offline)
        return self._offline

    def get_historical_features(
        self,
        entity_df: Any = None,
        features: FeaturesArg = (),
        *,
        full_feature_names: bool = False,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        event_timestamp_column: str = "event_timestamp",
    ) -> RetrievalJob:
        """Point-in-time-correct features for each row of `entity_df` (a DataFrame, Arrow table,
        Parquet path or SQL query), or for every row of the views in [start, end] without one.
        Times: datetimes, dates, ISO 8601 text or 'now' (see parity.timeutil.parse_time)."""
        from parity.offline.retrieval import historical_features

        return historical_features(
            self._offline_engine,
            self.registry.catalog,
            entity_df,
            features,
            full_feature_names=full_feature_names,
            start=None if start is None else self._time(start, "start"),
            end=None if end is None else self._time(end, "end"),
            timestamp_column=event_timestamp_column,
            on_demand=self._bind_on_demand,
        )

    # --- online -----------------------------------------------------------------------------

    @property
    def online_store(self) -> OnlineStore:
        if self._online is None:
            from parity.online.open import open_online_store

            self._online = open_online_store(self.config.online, self.repo_path)
        return self._online

    def materialize(
        self,
        start: TimeLike,
        end: TimeLike,
        views: Sequence[str] | None = None,
        *,
        progress: Callable[[str, str, int, int | None], None] | None = None,
    ) -> list[MaterializeResult]:
        """Write to the online store what reads at `end` need, per online view (all by default):
        the newest row per entity still valid at `end` (a view without ttl: every row up to
        `end`, whatever `start`; with a ttl: from the earlier of `start` and `end - ttl`), and for
        an aggregated view the tiles its windows read from `end` to `materialize.read_slack`
        (default a day) after it: materialize again within it, else its long windows answer
        OUTSIDE_MAX_AGE (docs/aggregations.md). Times: datetimes, dates, ISO 8601 text or 'now';
        an `end` more than ingest.max_future_skew after the store's clock is refused
        (EndInFuture). `progress(view, what, done, total)` reports each view's advance ('rows',
        'events' or 'tiles'; total None while unknown; 'done' at its end)."""
        from parity.materialize.batch import check_end, interval_start

        begin, until = self._time(start, "start"), self._time(end, "end")
        check_end(until, self._clock(), self.config.ingest.max_future_skew)
        if begin > until:
            raise InvalidTime(f"start {begin.isoformat()} is after end {until.isoformat()}")
        return [
            self._materialize(view, interval_start(view, begin, until), until, progress)
            for view in self._views_to_materialize(views)
        ]

    def materialize_incremental(
        self,
        end: TimeLike,
        views: Sequence[str] | None = None,
        *,
        progress: Callable[[str, str, int, int | None], None] | None = None,
    ) -> list[MaterializeResult]:
        """Materialize each view from its watermark (where its last run ended; else end - ttl,
        else every row) up to `end`; an aggregated view rebuilds the tiles used by reads from
        `end` to `materialize.read_slack` after it. Refused: an `end` more than
        ingest.max_future_skew after the store's clock (EndInFuture), or before a view's
        watermark (EndBeforeWatermark: run `materialize` over the interval instead)."""
        from parity.materialize.batch import check_end, incremental_start

        until, now = self._time(end, "end"), self._clock()
        check_end(until, now, self.config.ingest.max_future_skew)
        log = self._materialization_log()
        chosen = self._views_to_materialize(views)
        starts = [  # all checked before any view is written
            incremental_start(v, log.watermark(self.project, v.name), until, now) for v in chosen
        ]
        results = []
        for view, start in zip(chosen, starts, strict=True):
            results.append(self._materialize(view, start, until, progress))
        return results

    def _time(self, value: object, argument: str) -> datetime:
        return parse_time(value, argument, now=self._clock)

    def _materialize(
        self,
        view: FeatureView,
        start: datetime,
        end: datetime,
        progress: Callable[[str, str, int, int | None], None] | None,
    ) -> MaterializeResult:
        from parity.materialize.batch import materialize_view
        from parity.materialize.tiles import materialize_tiles

        def advance(what: str, done: int, total: int | None) -> None:
            if progress is not None:
                progress(view.name, what, done, total)

        log = self._materialization_log()
        common = (self._offline_engine, self.online_store, log, self.project)
        advance("events" if view.is_aggregated else "rows", 0, None)
        if view.is_aggregated:
            result = materialize_tiles(
                *common,
                view,
                end,
                now=self._clock,
                progress=advance,
                slack=self.config.materialize.read_slack,
            )
        else:
            watch = self.monitoring.materialize_watch(view)  # data quality of the rows written
            result = materialize_view(
                *common,
                view,
                start,
                end,
                now=self._clock,
                progress=advance,
                observe=watch.add,
                online_settings=self._online_settings,  # Spark writes from its executors
            )
            watch.done(start, end)
        advance("done", result.rows, result.rows)
        return result

    def _online_views(self, names: Sequence[str] | None) -> list[FeatureView]:
        if names is None:
            return [v for v in self.list_feature_views() if v.online]
        return [self.get_feature_view(name) for name in names]

    def _views_to_materialize(self, names: Sequence[str] | None) -> list[FeatureView]:
        views = self._online_views(names)
        if not views:
            raise NothingToMaterialize(
                f"project '{self.project}' has no online feature views in the registry; "
                "run `parity apply` first"
            )
        return views

    def _materialization_log(self) -> MaterializationLog:
        store = self._registry_store
        if not isinstance(store, MaterializationLog):
            raise BackendNotInstalled(
                f"the registry store {type(store).__name__} keeps no materialization history; "
                "use the SQL registry"
            )
        return store

    def get_online_features(
        self,
        features: FeaturesArg,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        *,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """Latest feature values for each entity row, in one read of the online store."""
        from parity.online.reads import read_online

        request = self._online_request(features, full_feature_names)
        return read_online(
            self.online_store,
            self.project,
            request,
            entity_rows,
            to_micros(self._clock()),
            self._refusals(),
        )

    async def get_online_features_async(
        self,
        features: FeaturesArg,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        *,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """As get_online_features, for event loops: the Redis read does not block the loop."""
        from parity.online.reads import read_online_async

        request = self._online_request(features, full_feature_names)
        return await read_online_async(
            self.online_store,
            self.project,
            request,
            entity_rows,
            to_micros(self._clock()),
            self._refusals(),
        )

    def _refusals(self) -> Refusals:
        if self._refused is None:
            from parity.online.reads import Refusals

            self._refused = Refusals()
        return self._refused

    def _online_request(self, features: FeaturesArg, full_feature_names: bool) -> RetrievalRequest:
        """Resolve refs or a service against the current catalog, remembering the answer for
        as long as the catalog stays the same (servers ask the same few questions)."""
        from parity.offline.request import resolve

        catalog = self.registry.catalog
        if isinstance(features, str):
            wanted: Hashable = features
        elif isinstance(features, list | tuple) and all(isinstance(f, str) for f in features):
            wanted = tuple(features)
        else:
            uncached = resolve(catalog, features, full_feature_names=full_feature_names)
            self._bind_on_demand(uncached)
            return uncached
        if self._requests[0] is not catalog or len(self._requests[1]) > 4096:
            self._requests = (catalog, {})
        key = (wanted, full_feature_names)
        request = self._requests[1].get(key)
        if request is None:
            request = resolve(catalog, features, full_feature_names=full_feature_names)
            self._bind_on_demand(request)  # once per resolved request, not per read
            self._requests[1][key] = request
        return request

    def _bind_on_demand(self, request: RetrievalRequest) -> None:
        """Load the requested on-demand views' functions from the repo (once)."""
        if request.on_demand:
            from parity.transform.run import bind

            bind(request, lambda: self._load_repo().catalog.on_demand_feature_views)

    def push(
        self,
        name: str,
        rows: Any,
        to: Literal["online", "offline", "both"] = "online",
        *,
        bytes_as_base64: bool = False,
    ) -> int:
        """Validate rows against every view reading push source `name`, append them to its
        offline folder (durably, before returning) and/or write them online. Returns rows.

        A column no view reads is refused; no rows is a no-op (0). With `bytes_as_base64`, text
        in a Bytes feature's column is base64 (as JSON carries bytes; /push sets it)."""
        from parity.ingest import push as pushing

        views = pushing.views_of(self.registry.catalog, name)
        if to not in ("online", "offline", "both"):
            raise PushError(f"to={to!r}: push to 'online', 'offline' or 'both'")
        table = pushing.as_table(rows)
        pushing.refuse_unread(views, table)
        table = pushing.validate(views, table, bytes_as_base64=bytes_as_base64)
        if table.num_rows == 0:
            return 0  # nothing to write (the column names were checked)
        pushing.check_future(views, table, self._clock(), self.config.ingest.max_future_skew)
        if to in ("offline", "both"):
            pushing.append_offline(views[0], table, self.repo_path, self._clock())
        if to in ("online", "both"):
            for view in views:
                if view.is_aggregated:
                    pushing.merge_online(
                        self.online_store, self.project, view, table, self._clock()
                    )
                else:
                    self.online_store.write(self.project, pushing.online_rows(view, table))
                self._pushed[view.name] = self._clock()
        if (quality := self.monitoring.quality_recorder()) is not None:  # rows and nulls
            for view in views:
                quality.ingested(view, table)
        detail = {"rows": int(table.num_rows), "to": to}  # audited once written
        self.access.audit.record("features.push", name, detail)
        return int(table.num_rows)

    def _online_freshness(self) -> dict[str, datetime | None]:
        log = self._materialization_log()
        newest: dict[str, datetime | None] = {}
        for view in self._online_views(None):
            moments = [log.watermark(self.project, view.name), self._pushed.get(view.name)]
            newest[view.name] = max((m for m in moments if m is not None), default=None)
        return newest

    def now(self) -> datetime:
        """The store's clock (UTC): what ttl and max age are measured against."""
        return self._clock()

    # --- reads --------------------------------------------------------------------------------

    def get_entity(self, name: str) -> Entity:
        return self.registry.get_entity(name)

    def get_feature_view(self, name: str) -> FeatureView:
        return self.registry.get_feature_view(name)

    def get_feature_service(self, name: str) -> FeatureService:
        return self.registry.get_feature_service(name)

    def list_entities(self) -> list[Entity]:
        return _sorted(self.registry.catalog.entities)

    def list_feature_views(self) -> list[FeatureView]:
        return _sorted(self.registry.catalog.feature_views)

    def list_feature_services(self) -> list[FeatureService]:
        return _sorted(self.registry.catalog.feature_services)

    def close(self) -> None:
        """Release database connections (also done by `with FeatureStore(...) as store:`)."""
        if self._monitoring is not None:
            self._monitoring.flush_quality()  # push counts not yet written (every 60 s)
        if self._store is not None:
            self._store.close()
        if self._online is not None:
            self._online.close()

    async def close_async(self) -> None:
        """Release the running event loop's online connections (servers call it on shutdown)."""
        from parity.online.store import AsyncReads

        if self._monitoring is not None:
            self._monitoring.flush_quality()  # the server's push counts not yet written
        if isinstance(self._online, AsyncReads):
            await self._online.close_async()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _model_registry(store: FeatureStore) -> ModelRegistry:
    from parity.models.artifacts import artifact_store
    from parity.models.registry import ModelRegistry
    from parity.models.sql import SqlModelStore

    backend = store.registry.store
    engine = getattr(backend, "engine", None)
    if engine is None:
        raise BackendNotInstalled(
            f"the registry store {type(backend).__name__} cannot keep models; use the SQL "
            "registry (sqlite or postgres in parity.yaml)"
        )
    config = store.config.models
    return ModelRegistry(
        SqlModelStore(engine),
        artifact_store(config.artifacts_url(store.repo_path)),
        project=store.project,
        datasets=backend if isinstance(backend, DatasetStore) else None,
        feature_services=lambda: store.registry.catalog.feature_services.keys(),
        registry_version=lambda: store.registry.version,
        trusted=config.trusted,
        clock=store.now,  # versions, alias moves and "now" in alias_at read the store's clock
        # monitoring profiles a new version's training set (reference for drift)
        on_register=[lambda version: store.monitoring.on_model_registered(version)],
        audit=lambda *record, **at: store.access.audit.record(*record, **at),
    )


def _datasets(store: FeatureStore) -> Datasets:
    from parity.offline.datasets import Datasets

    backend = store.registry.store
    if not isinstance(backend, DatasetStore):
        raise BackendNotInstalled(
            f"the registry store {type(backend).__name__} cannot record datasets; use the SQL "
            "registry (sqlite or postgres in parity.yaml)"
        )
    return Datasets(
        backend,
        store.project,
        engine=lambda: store._offline_engine,
        current=lambda: store.registry.current(),
        default_author=_default_author,
        now=store.now,
        on_demand=store._bind_on_demand,
    )


def _default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


T = TypeVar("T")


def _sorted(objects: Mapping[str, T]) -> list[T]:
    return [objects[name] for name in sorted(objects)]
