"""The model registry API: register models with their lineage, resolve refs, load, move aliases.

Works through a ModelStore and an ArtifactStore it is given; must not import a SQL backend or cli.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import numbers
import re
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any

from parity.errors import (
    AliasNotFound,
    FeatureServiceNotFound,
    InvalidModelRef,
    ModelRegistrationError,
    ModelVersionNotFound,
    NoRollbackTarget,
    ParityError,
)
from parity.models.artifacts import ArtifactStore
from parity.models.flavors import LoadedModel, load_model, save_model, unpack
from parity.models.methods import PredictMethod
from parity.models.store import (
    UNCHECKED,
    AliasEvent,
    Expected,
    ModelStore,
    ModelVersion,
    model_not_found,
)
from parity.registry.datasets import DatasetStore
from parity.timeutil import parse_time, utcnow

log = logging.getLogger(__name__)

_NAME = r"[A-Za-z][A-Za-z0-9_-]{0,199}"
_NAME_RE = re.compile(_NAME)
_REF_RE = re.compile(rf"(?P<name>{_NAME})(?:@(?P<alias>{_NAME})|/(?P<version>[1-9][0-9]{{0,9}}))?")
LATEST = "latest"  # reserved: `name` and `name@latest` both mean the highest version
_LOADED_CACHE_SIZE = 4


def _bad_ref(text: object) -> InvalidModelRef:
    return InvalidModelRef(
        f"{text!r} is not a model reference: write NAME (its latest version), NAME@ALIAS or "
        "NAME/VERSION, e.g. 'fraud', 'fraud@prod' or 'fraud/3'"
    )


def parse_ref(text: str) -> tuple[str, int | None, str | None]:
    """Split a model reference into (name, version, alias); at most one of the last two is set."""
    match = _REF_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _bad_ref(text)
    version, alias = match["version"], match["alias"]
    if alias == LATEST:
        alias = None
    return match["name"], None if version is None else int(version), alias


def check_name(value: object, what: str, error: type[ParityError] = ModelRegistrationError) -> str:
    """Model and alias names: letters, digits, _ and -, starting with a letter (no '@' or '/')."""
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise error(
            f"{what} {value!r} is not valid: use letters, digits, '_' and '-', starting with a "
            "letter, at most 200 characters (e.g. 'fraud-detector')"
        )
    return value


def check_alias(alias: object) -> str:
    name = check_name(alias, "alias", InvalidModelRef)
    if name == LATEST:
        raise InvalidModelRef(
            "'latest' is reserved: 'NAME' and 'NAME@latest' always mean the highest version. "
            "Choose another alias, such as 'prod' or 'staging'"
        )
    return name


def git_code_version() -> str | None:
    """The commit checked out in the working directory, with '-dirty' when the checkout has
    changes; None outside a git checkout or when git is missing."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    return f"{head}-dirty" if _git("status", "--porcelain") else head


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not isinstance(key, str) or not real or not math.isfinite(value):
            raise ModelRegistrationError(
                f"metric {key!r} = {value!r} is not a finite number: metrics are named floats "
                "such as auc=0.91; record other values as params or tags"
            )
        clean[key] = float(value)
    return clean


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params as they will read back: JSON values, tuples become lists."""
    try:
        if not all(isinstance(key, str) for key in params or {}):
            raise TypeError("param names must be strings")
        text = json.dumps(dict(params or {}), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ModelRegistrationError(
            f"params must be JSON values (strings, finite numbers, booleans, None, lists and "
            f"dicts with string keys): {error}. Convert the others first, e.g. with str()"
        ) from None
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ModelRegistrationError(
                f"tag {key!r}: {value!r} is not a string pair: tags map strings to strings; "
                "put numbers in metrics and other values in params"
            )
    return dict(tags or {})


@dataclass(frozen=True)
class _Lineage:
    feature_service: str | None = None
    training_dataset: str | None = None
    dataset_fingerprint: str | None = None
    dataset_registry_version: int | None = None


class ModelRegistry:
    """Register, find, load and alias the models of one project.

    A version is immutable; an alias (`prod`, `staging`) is a movable name for one version, and
    every move is kept, so `rollback` and `alias_at` can answer from history.
    """

    def __init__(
        self,
        store: ModelStore,
        artifacts: ArtifactStore,
        *,
        project: str,
        datasets: DatasetStore | None = None,
        feature_services: Callable[[], Collection[str]] | None = None,
        registry_version: Callable[[], int] | None = None,
        trusted: bool = False,
        clock: Callable[[], datetime] = utcnow,
        author: str | None = None,
        code_version: Callable[[], str | None] | None = None,
        on_register: Sequence[Callable[[ModelVersion], None]] = (),
        audit: Callable[..., object] | None = None,
    ) -> None:
        self.store = store
        # Called with each new version once stored (monitoring profiles its training set); a
        # failing hook is logged and never undoes the registration.
        self.on_register = list(on_register)
        # (action, model, detail, at=) after each write succeeded: store.access.audit.record
        self._audit = audit or (lambda *record, **at: None)
        self.artifacts = artifacts
        self.project = project
        self.trusted = trusted
        self.author = author or _default_author()
        self._datasets = datasets
        self._feature_services = feature_services
        self._registry_version = registry_version
        self._clock = clock
        self._code_version = code_version if code_version is not None else git_code_version
        self._loaded: OrderedDict[tuple[str, bool], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def register_model(
        self,
        name: str,
        model: Any,
        *,
        flavor: str | None = None,
        feature_service: str | None = None,
        training_dataset: str | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        sample_input: Any = None,
        sample_output: Any = None,
        alias: str | None = None,
        predict_method: PredictMethod | None = None,
    ) -> ModelVersion:
        """Save the model as an artifact and record a new version with its lineage.

        `predict_method` chooses what is served instead of `predict`: a method name
        ('predict_proba'), a list of them, or output names mapped to methods ({'label':
        'predict', 'probability': 'predict_proba'}); each becomes an output of the signature."""
        check_name(name, "model name")
        if alias is not None:
            check_alias(alias)
        if not isinstance(description, str):
            raise ModelRegistrationError("description must be a string (or leave it out)")
        clean_metrics, clean_params, clean_tags = _metrics(metrics), _params(params), _tags(tags)
        lineage = self._lineage(feature_service, training_dataset)  # all checked before saving
        draft = replace(
            self._save(model, flavor, sample_input, sample_output, predict_method),
            name=name,
            metrics=clean_metrics,
            params=clean_params,
            tags=clean_tags,
            description=description,
            **asdict(lineage),
        )
        version = self.store.add_version(draft)
        detail = {"version": version.version, "flavor": version.flavor}
        self._audit("models.register", name, detail, at=version.created_at)
        if alias is not None:
            self.set_alias(name, alias, version.version, reason=f"registered {version.ref}")
        for hook in self.on_register:
            try:
                hook(version)
            except Exception:
                log.warning("a registration hook failed for %s", version.ref, exc_info=True)
        return version

    def _save(
        self,
        model: Any,
        flavor: str | None,
        sample_input: Any,
        sample_output: Any,
        predict_method: PredictMethod | None,
    ) -> ModelVersion:
        """Store the model's artifact; a draft version without name, lineage or details."""
        data = save_model(
            model,
            flavor=flavor,
            sample_input=sample_input,
            sample_output=sample_output,
            predict_method=predict_method,
        )
        header, _ = unpack(data)
        stored = self.artifacts.put_bytes(data)  # content addressed: same bytes, one blob
        return ModelVersion(
            project=self.project,
            name="",
            version=0,
            created_at=self._clock(),
            author=self._author(),
            flavor=header.flavor,
            artifact=stored.sha256,
            artifact_size=stored.size,
            signature=None if header.signature is None else header.signature.to_dict(),
            registry_version=None if self._registry_version is None else self._registry_version(),
            code_version=self._code_version(),
        )

    def _lineage(self, feature_service: str | None, training_dataset: str | None) -> _Lineage:
        if feature_service is not None and self._feature_services is not None:
            known = self._feature_services()
            if feature_service not in known:
                raise FeatureServiceNotFound(
                    f"no feature service named '{feature_service}' in project '{self.project}' "
                    f"(registered: {', '.join(sorted(known)) or 'none'}); define it and run "
                    "'parity apply', or fix the name"
                )
        if training_dataset is None:
            return _Lineage(feature_service)
        if self._datasets is None:
            raise ModelRegistrationError(
                f"cannot look up training dataset '{training_dataset}': this ModelRegistry has no "
                "dataset store; open it with datasets= (the feature registry) to record lineage"
            )
        record = self._datasets.get_dataset(self.project, training_dataset)
        if feature_service is not None and record.feature_service not in (None, feature_service):
            raise ModelRegistrationError(
                f"dataset '{training_dataset}' was built from feature service "
                f"'{record.feature_service}', not '{feature_service}'; leave feature_service out "
                "to record the dataset's own"
            )
        return _Lineage(
            feature_service or record.feature_service,
            training_dataset,
            record.fingerprint,
            record.registry_version,
        )

    def resolve(
        self, ref: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """The version a ref names: 'name' (latest), 'name@alias' or 'name/3'; or a bare name
        with version= or alias=."""
        name, ref_version, ref_alias = parse_ref(ref)
        if version is not None or alias is not None:
            if ref_version is not None or ref_alias is not None or None not in (version, alias):
                raise InvalidModelRef(
                    f"{ref!r} with version={version!r}, alias={alias!r} names more than one "
                    "version: give a bare model name and one of version= or alias="
                )
            if version is not None and (isinstance(version, bool) or version < 1):
                raise InvalidModelRef(f"version={version!r}: versions are numbered from 1")
            ref_version, ref_alias = version, None if alias == LATEST else alias
        if ref_alias is not None:
            return self.get_alias(name, ref_alias)
        if ref_version is not None:
            return self.get_version(name, ref_version)
        return self.store.latest_version(self.project, name)

    def load(
        self, ref_or_version: str | ModelVersion, *, trusted: bool | None = None
    ) -> LoadedModel:
        """Load a model (ref or ModelVersion); pickled flavors need trust (the registry's, or
        `trusted=`). The last few loaded models are kept, keyed by artifact digest."""
        version = (
            ref_or_version
            if isinstance(ref_or_version, ModelVersion)
            else self.resolve(ref_or_version)
        )
        key = (version.artifact, self.trusted if trusted is None else trusted)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        model = load_model(self.artifacts.get_bytes(version.artifact), trusted=key[1])
        with self._lock:
            self._loaded[key] = model
            self._loaded.move_to_end(key)
            while len(self._loaded) > _LOADED_CACHE_SIZE:
                self._loaded.popitem(last=False)
        return model

    def models(self) -> list[str]:
        return self.store.list_models(self.project)

    def versions(self, name: str) -> list[ModelVersion]:
        """Live versions, oldest first; ModelNotFound if the model has none."""
        found = self.store.list_versions(self.project, name)
        if not found:
            raise model_not_found(self.project, name)
        return found

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self.store.get_version(self.project, name, version)

    def _author(self) -> str:
        """Who a write is by in the alias history and version records: the caller the server's
        gate admitted (a token's name), else this registry's author."""
        from parity.registry.audit import actor_for

        return actor_for(self.author).name

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version no alias points at; its artifact is kept (others may share it)."""
        self.store.delete_version(self.project, name, version)
        self._audit("models.delete", name, {"version": version})  # at: now

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        expected: Expected = UNCHECKED,
        moves_seen: int | None = None,
    ) -> AliasEvent:
        """Point the alias at a version. With `expected` (a version, or None for "absent") only
        if the alias still points there, with `moves_seen` only if its history still has that
        many moves; otherwise AliasMoved and nothing changes."""
        check_alias(alias)
        event = self.store.set_alias(
            self.project,
            name,
            alias,
            version,
            author=self._author(),
            reason=reason,
            at=self._clock(),
            expected=expected,
            moves_seen=moves_seen,
        )
        self._audit("models.alias", name, _alias_detail(event), at=event.moved_at)
        return event

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasEvent:
        event = self.store.delete_alias(
            self.project, name, alias, author=self._author(), reason=reason, at=self._clock()
        )
        self._audit("models.alias", name, _alias_detail(event), at=event.moved_at)
        return event

    def get_alias(self, name: str, alias: str) -> ModelVersion:
        return self.get_version(name, self.store.get_alias(self.project, name, alias))

    def aliases(self, name: str) -> dict[str, int]:
        return self.store.aliases(self.project, name)

    def rollback(self, name: str, alias: str, *, reason: str = "") -> AliasEvent:
        """Point the alias back where it was before its latest move (twice returns it).

        Compare-and-swap: if the alias moved after the history was read, raise AliasMoved and
        change nothing, so a rollback never undoes a move it did not see."""
        events = self.store.alias_history(self.project, name, alias)
        if not events:  # never set: not found, rather than "no earlier version"
            self._require_alias(name, alias)
        target = events[-1].previous if events else None
        if target is None:
            raise NoRollbackTarget(
                f"alias '{alias}' of model '{name}' has no earlier version to roll back to; "
                f"see 'parity models versions {name}' and set the alias to one explicitly"
            )
        try:
            return self.set_alias(
                name,
                alias,
                target,
                reason=reason or f"rollback to {target}",
                expected=events[-1].version,
                moves_seen=len(events),
            )
        except ModelVersionNotFound:
            raise NoRollbackTarget(
                f"alias '{alias}' of model '{name}' last pointed at version {target}, which was "
                f"deleted; see 'parity models versions {name}' and set the alias explicitly"
            ) from None

    def _require_alias(self, name: str, alias: str) -> None:
        """ModelNotFound for an unknown model, AliasNotFound for an alias it does not have."""
        if name not in self.store.list_models(self.project):
            raise model_not_found(self.project, name)
        if alias not in self.store.aliases(self.project, name):
            raise AliasNotFound(
                f"model '{name}' has no alias '{alias}'; see 'parity models versions {name}' for "
                f"its aliases, or set it with 'parity models alias set {name} {alias} VERSION'"
            )

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Alias moves of a model (or of one alias), oldest first; ModelNotFound for a model that
        has neither versions nor history."""
        events = self.store.alias_history(self.project, name, alias)
        if not events and name not in self.store.list_models(self.project):
            raise model_not_found(self.project, name)
        return events

    def alias_at(self, name: str, alias: str, moment: datetime | date | str) -> ModelVersion | None:
        """The version the alias pointed at, at `moment` (a datetime, a date, ISO 8601 text or
        "now" by this registry's clock); None if it did not exist then. InvalidTime otherwise."""
        when = parse_time(moment, "moment", now=self._clock)
        version = self.store.alias_at(self.project, name, alias, when)
        return None if version is None else self.get_version(name, version)

    def now(self) -> datetime:
        """This registry's clock (the store's): what "now" means in a time argument."""
        return self._clock()

    def close(self) -> None:
        self.store.close()


def _alias_detail(event: AliasEvent) -> dict[str, Any]:
    """An alias move for the audit trail (version None: the alias was deleted)."""
    return {
        "alias": event.alias,
        "version": event.version,
        "previous": event.previous,
        "reason": event.reason,
    }
