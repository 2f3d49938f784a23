"""The checks a rollout passes before it starts, against the model registry and the applied catalog:
champion, candidate, gate metrics, custom gate functions, routing key. Raises InvalidRollout naming
the field and the fix. Reads the registry and the repo; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parity.definitions.rollout import LABEL_METRICS, GateFunction, Rollout
from parity.errors import (
    AliasNotFound,
    InvalidDefinition,
    InvalidRollout,
    ModelNotFound,
    ModelVersionNotFound,
    ParityError,
)

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.models.store import ModelVersion


@dataclass(frozen=True)
class Resolved:
    """What a valid rollout starts with: versions and the routing key, looked up once."""

    champion: int
    candidate: int
    shadows: tuple[int, ...]
    routing_key: str
    key_source: str


def build(model: str | None, candidate: int | str | None, options: dict[str, Any]) -> Rollout:
    """A Rollout from command-line style options; any invalid field is InvalidRollout."""
    if not model:
        raise InvalidRollout("model: name the registered model to roll out (e.g. model='fraud')")
    if candidate is None:
        raise InvalidRollout(
            f"candidate: give the version or alias of '{model}' to roll out (e.g. candidate=2)"
        )
    fields = {"name": _default_name(model), "model": model, "candidate": candidate, **options}
    try:
        return Rollout(**fields)
    except InvalidDefinition as error:
        raise InvalidRollout(f"{error}; fix the option and start again") from None


def named(store: FeatureStore, name: str) -> Rollout:
    """The applied rollout `name`, its custom gate functions bound from the repo."""
    rollout = store.registry.catalog.rollouts.get(name)
    if rollout is None:
        known = ", ".join(sorted(store.registry.catalog.rollouts)) or "none"
        raise InvalidRollout(
            f"rollout: no rollout named '{name}' is applied in project '{store.project}' "
            f"(applied: {known}); declare it in the repo and run 'parity apply', or give "
            "model= and candidate="
        )
    return rollout


def resolve(store: FeatureStore, rollout: Rollout) -> Resolved:
    """Check `rollout` against the registry (InvalidRollout otherwise) and resolve its versions
    and routing key."""
    champion = _champion(store, rollout)
    candidate = _version(store, rollout.model, rollout.candidate, "candidate")
    if candidate.version == champion.version:
        raise InvalidRollout(
            f"candidate: version {candidate.version} of '{rollout.model}' is already behind the "
            f"'{rollout.champion_alias}' alias; register a new version and roll that out"
        )
    shadows = tuple(
        _version(store, rollout.model, item, "also_shadow").version for item in rollout.also_shadow
    )
    _check_also_shadow(rollout, shadows, champion.version, candidate.version)
    check_gates(store, rollout)
    check_outputs(rollout, (candidate, champion))
    key, source = routing_key(store, rollout, champion)
    return Resolved(champion.version, candidate.version, shadows, key, source)


def check_gates(store: FeatureStore, rollout: Rollout) -> None:
    """Every `label:` gate has the model's Monitor with a label source and names a built-in label
    metric or a metric function of that Monitor (the one the gate reads at each check); every
    `custom:` gate has its function bound (from the repo if need be)."""
    monitor = store.monitoring.monitor_for(rollout.model)
    monitor_metrics = {ref.name for ref in monitor.metrics} if monitor is not None else set()
    for gate in rollout.gates:
        if gate.family == "label" and gate.argument not in (*LABEL_METRICS, *monitor_metrics):
            theirs = (
                ", ".join(sorted(monitor_metrics)) or f"no Monitor of '{rollout.model}' has any"
            )
            raise InvalidRollout(
                f"gates: metric {gate.metric!r} is not a label metric: use one of "
                f"{', '.join(LABEL_METRICS)} or a metric function of the model's Monitor "
                f"({theirs}); fix the name, or add the function to the Monitor and apply"
            )
    labelled = [gate.metric for gate in rollout.gates if gate.family == "label"]
    if labelled and (monitor is None or monitor.labels is None):
        why = "no Monitor watches it" if monitor is None else f"monitor '{monitor.name}' has no"
        raise InvalidRollout(
            f"gates: {labelled[0]!r} judges delayed labels, but {why}"
            f"{' labels' if monitor is not None else ''} for '{rollout.model}': declare "
            f"Monitor(model='{rollout.model}', labels=LabelSource(...)) in the repo and run "
            "'parity apply', or drop the gate (it could never pass)"
        )
    wanted = [g.argument for g in rollout.gates if g.family == "custom" and g.argument]
    missing = [name for name in wanted if name not in rollout.gate_functions]
    if missing:
        rollout.bind(repo_functions(store, rollout, missing))
    for name in wanted:
        if name not in rollout.gate_functions:
            raise InvalidRollout(
                f"gates: 'custom:{name}' has no function: define `def {name}(evidence)` in the "
                f"repo, list it in the rollout's custom_gates and run 'parity apply'"
            )


def check_outputs(rollout: Rollout, versions: tuple[ModelVersion, ...]) -> None:
    """A gate's `output` is an output of both versions compared (when their signatures list
    outputs): a gate reading an output one arm lacks could never be judged."""
    for gate in rollout.gates:
        for version in versions:
            outputs = [str(o["name"]) for o in (version.signature or {}).get("outputs") or []]
            if gate.output is not None and outputs and gate.output not in outputs:
                raise InvalidRollout(
                    f"gates: {gate.metric!r} reads output '{gate.output}', but version "
                    f"{version.version} of '{rollout.model}' has the outputs "
                    f"{', '.join(outputs)}; name one of them, or leave output unset for the first"
                )


def routing_key(store: FeatureStore, rollout: Rollout, champion: ModelVersion) -> tuple[str, str]:
    """The definition's routing key, else the first join key of the first feature view of the
    champion version's feature service."""
    if rollout.routing_key is not None:
        if rollout.routing_key.source == "entity":
            _check_entity_key(store, rollout, champion, rollout.routing_key.name)
        return rollout.routing_key.name, rollout.routing_key.source
    fix = (
        "give routing_key=RoutingKey(name='<join key>') or a request header with "
        "RoutingKey(name='x-user-id', source='header')"
    )
    service_name = champion.feature_service
    if service_name is None:
        raise InvalidRollout(
            f"routing_key: version {champion.version} of '{rollout.model}' has no feature "
            f"service to take an entity join key from; {fix}"
        )
    catalog = store.registry.catalog
    service = catalog.feature_services.get(service_name)
    for projection in () if service is None else service.features:
        view = catalog.feature_views.get(projection.view)
        if view is not None and view.join_keys:
            return view.join_keys[0], "entity"
    raise InvalidRollout(
        f"routing_key: feature service '{service_name}' of '{rollout.model}' has no entity join "
        f"key in the applied catalog; {fix}"
    )


def request_keys(store: FeatureStore, champion: ModelVersion) -> list[str]:
    """The fields a request to `champion` carries that can route it: the join keys and request
    fields of its feature service, else (a `/v2`-only model) its signature's input names."""
    catalog = store.registry.catalog
    inputs = (champion.signature or {}).get("inputs") or []
    signature = [str(item["name"]) for item in inputs if isinstance(item, dict) and "name" in item]
    service = catalog.feature_services.get(champion.feature_service or "")
    if service is None:
        return signature
    names: dict[str, None] = {}
    fetched: set[str] = set()
    for projection in service.features:
        fetched.update(projection.features)
        view = catalog.feature_views.get(projection.view)
        if view is not None:
            names.update(dict.fromkeys(view.join_keys))
        on_demand = catalog.on_demand_feature_views.get(projection.view)
        if on_demand is not None:
            names.update(dict.fromkeys(on_demand.request_fields))
    names.update(dict.fromkeys(n for n in signature if n not in fetched))  # request-time inputs
    return list(names)


def _check_entity_key(
    store: FeatureStore, rollout: Rollout, champion: ModelVersion, name: str
) -> None:
    """A routing key no request carries would route every request to the champion, silently."""
    known = request_keys(store, champion)
    if name not in known:
        raise InvalidRollout(
            f"routing_key: requests to '{rollout.model}' version {champion.version} do not carry "
            f"'{name}'; route by one of {known or 'no request field'}, or by a header with "
            "RoutingKey(name='x-user-id', source='header') (--routing-header)"
        )


def _check_also_shadow(
    rollout: Rollout, shadows: tuple[int, ...], champion: int, candidate: int
) -> None:
    """`also_shadow` versions are other versions, each once: the candidate is already mirrored
    in the shadow phase (twice would count its rows twice) and the champion answers."""
    for i, version in enumerate(shadows):
        role = {champion: "the champion", candidate: "the candidate"}.get(version)
        if role is not None or version in shadows[:i]:
            what = f"{role}'s version" if role is not None else "listed twice"
            raise InvalidRollout(
                f"also_shadow: version {version} of '{rollout.model}' is {what}; list other "
                "versions to mirror, each once"
            )


def _champion(store: FeatureStore, rollout: Rollout) -> ModelVersion:
    models = store.models
    try:
        models.versions(rollout.model)
    except ModelNotFound:
        raise InvalidRollout(
            f"model: '{rollout.model}' is not a registered model in project '{store.project}'; "
            f"register it (store.models.register_model) or fix the name"
        ) from None
    try:
        return models.get_alias(rollout.model, rollout.champion_alias)
    except AliasNotFound:
        raise InvalidRollout(
            f"champion_alias: model '{rollout.model}' has no alias '{rollout.champion_alias}': "
            f"set it with parity models alias set {rollout.model} {rollout.champion_alias} "
            "<version> (the version serving traffic now)"
        ) from None


def _version(store: FeatureStore, model: str, ref: int | str, field: str) -> ModelVersion:
    try:
        if isinstance(ref, int):
            return store.models.get_version(model, ref)
        return store.models.get_alias(model, ref)
    except (ModelVersionNotFound, AliasNotFound, ModelNotFound):
        known = ", ".join(str(v.version) for v in store.models.versions(model)) or "none"
        what = f"version {ref}" if isinstance(ref, int) else f"alias '{ref}'"
        raise InvalidRollout(
            f"{field}: model '{model}' has no {what} (versions: {known}); give a registered "
            "version number or an alias that is set"
        ) from None


def repo_functions(
    store: FeatureStore, rollout: Rollout, names: list[str]
) -> dict[str, GateFunction]:
    """The named custom gate functions of the repo's rollout, checked against the applied hash."""
    from parity.repo.loader import load_repo

    try:
        repo = load_repo(store.repo_path, store.project).catalog.rollouts.get(rollout.name)
    except ParityError as error:
        raise InvalidRollout(
            f"gates: the repo could not be loaded to bind custom gates ({error}); fix it and retry"
        ) from None
    if repo is None:
        return {}
    applied = {ref.name: ref.code_hash for ref in rollout.custom_gates}
    theirs = {ref.name: ref.code_hash for ref in repo.custom_gates}
    functions = repo.gate_functions
    bound: dict[str, GateFunction] = {}
    for name in names:
        if name in functions and theirs.get(name) == applied.get(name):
            bound[name] = functions[name]
        elif name in functions:
            raise InvalidRollout(
                f"gates: custom gate '{name}' in the repo differs from the applied one; run "
                "'parity apply' (or check out the applied version)"
            )
    return bound


def _default_name(model: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in model)
    return f"{cleaned}_rollout" if cleaned[:1].isalpha() or cleaned[:1] == "_" else f"r_{cleaned}"
