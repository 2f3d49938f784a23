"""The one error hierarchy of Parity: every user-facing failure is a ParityError with a stable code.

Leaf errors may also subclass the matching builtin. Must not import anything from other layers
(only parity.redaction, which imports nothing of Parity).
"""

from __future__ import annotations

from parity.redaction import redact


class ParityError(Exception):
    """Root of every error Parity raises on purpose: a stable `code`, a message on what to do.
    Passwords in URLs in the message are redacted (`redis://:***@host`), wherever it is shown."""

    code: str = "parity_error"

    def __init__(self, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidDefinition(ParityError, ValueError):
    """A definition (entity, view, source, service, dtype) failed validation."""

    code = "invalid_definition"


class DuplicateDefinition(InvalidDefinition):
    """Two definitions of the same kind share a name."""

    code = "duplicate_definition"


class ConfigError(ParityError, ValueError):
    """parity.yaml is missing, malformed or names unknown settings."""

    code = "invalid_config"


class RepoError(ParityError):
    """A feature repo could not be loaded (no such folder, a definition file failed to import)."""

    code = "invalid_repo"


class SourceSchemaError(InvalidDefinition):
    """A source's data does not have the columns or types a definition declares."""

    code = "source_schema_mismatch"


class ObjectNotFound(ParityError, KeyError):
    """A named object is not in the registry."""

    code = "not_found"

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.message


class EntityNotFound(ObjectNotFound):
    code = "entity_not_found"


class FeatureViewNotFound(ObjectNotFound):
    code = "feature_view_not_found"


class FeatureServiceNotFound(ObjectNotFound):
    code = "feature_service_not_found"


class MonitorNotFound(ObjectNotFound):
    code = "monitor_not_found"


class RolloutNotFound(ObjectNotFound):
    code = "rollout_not_found"


class FeatureNotFound(ObjectNotFound):
    code = "feature_not_found"


class ProjectNotFound(ObjectNotFound):
    code = "project_not_found"


class RegistryVersionNotFound(ObjectNotFound):
    code = "registry_version_not_found"


class RegistryConflict(ParityError):
    """Another apply committed first; nothing of this apply was written."""

    code = "registry_conflict"


class BreakingChange(ParityError):
    """A plan contains breaking changes and --allow-breaking was not given."""

    code = "breaking_change"


class BackendNotInstalled(ParityError, ImportError):
    """An optional backend's package is missing; the message names the pip install to run."""

    code = "backend_not_installed"


class RegistryUnavailable(ParityError):
    """The registry database could not be reached or opened."""

    code = "registry_unavailable"


class OnDemandError(ParityError, ValueError):
    """An on-demand feature view's function failed or returned the wrong shape."""

    code = "on_demand_failed"


class OnlineStoreUnavailable(ParityError):
    """The online store (Redis) could not be reached or timed out."""

    code = "online_store_unavailable"


class RetrievalError(ParityError, ValueError):
    """A retrieval request is malformed (empty feature list, name collision, bad entity frame)."""

    code = "invalid_retrieval"


class EntityFrameError(RetrievalError):
    """The entity frame lacks a join key or timestamp column, or a column has the wrong type."""

    code = "invalid_entity_frame"


class DatasetExists(ParityError):
    """A dataset with this name is already recorded."""

    code = "dataset_exists"


class DatasetNotFound(ObjectNotFound):
    code = "dataset_not_found"


class PushSourceNotFound(ObjectNotFound):
    code = "push_source_not_found"


class PushError(ParityError, ValueError):
    """Pushed rows do not match the views that read the push source."""

    code = "invalid_push"


class BadRequest(ParityError, ValueError):
    """An HTTP request that is well-formed JSON but asks for something impossible."""

    code = "bad_request"


# Raised by inference/batching.py


class BatcherSettingsError(ParityError, ValueError):
    """An AdaptiveBatcher was given impossible settings."""

    code = "invalid_batcher_settings"


class BatchItemError(ParityError, ValueError):
    """A submitted item declares a row count that is not a positive integer."""

    code = "invalid_batch_item"


class BatchItemTooLarge(BatchItemError):
    """One item has more rows than a whole batch may hold."""

    code = "batch_item_too_large"


class BatcherClosed(ParityError, RuntimeError):
    """A request was submitted after the batcher was closed."""

    code = "batcher_closed"


class PredictFailed(ParityError):
    """The model's predict raised, or returned the wrong number of results, for a batch."""

    code = "predict_failed"


# Raised by inference/oip.py


class InferenceRequestError(ParityError, ValueError):
    """An inference request is malformed; the message names the input and what to fix (HTTP 400)."""

    code = "invalid_inference_request"


class TensorEncodingError(ParityError, TypeError):
    """A model output cannot travel as an Open Inference Protocol tensor: a model bug, not a 400."""

    code = "unsupported_output_tensor"


# Raised by models/artifacts.py


class ArtifactNotFound(ObjectNotFound):
    """No artifact with this content hash is in the store."""

    code = "artifact_not_found"


class ArtifactCorrupted(ParityError):
    """Stored or copied bytes do not hash to the artifact's id (bad disk, partial copy, tamper)."""

    code = "artifact_corrupted"


class InvalidArtifactRef(ParityError, ValueError):
    """An artifact reference is neither an ArtifactRef nor a sha256 hex digest."""

    code = "invalid_artifact_ref"


# Raised by models/flavors.py


class UntrustedArtifact(ParityError, PermissionError):
    """Loading this model would run code from the artifact, and trusted=True was not given."""

    code = "untrusted_artifact"


class UnknownFlavor(ParityError, ValueError):
    """No flavor knows how to save this object, or an artifact names an unknown flavor."""

    code = "unknown_flavor"


class InvalidModelArtifact(ParityError, ValueError):
    """Bytes are not a Parity model artifact, or not one of the flavor asked to load them."""

    code = "invalid_model_artifact"


class SignatureMismatch(ParityError, ValueError):
    """A batch (or a sample) does not have the columns, width or dtypes of the model's signature."""

    code = "signature_mismatch"


# Raised by models/registry.py and models/sql.py


class ModelNotFound(ObjectNotFound):
    code = "model_not_found"


class ModelVersionNotFound(ObjectNotFound):
    code = "model_version_not_found"


class AliasNotFound(ObjectNotFound):
    code = "alias_not_found"


class InvalidModelRef(ParityError, ValueError):
    """A model reference is not NAME, NAME@ALIAS or NAME/VERSION."""

    code = "invalid_model_ref"


class ModelRegistrationError(ParityError, ValueError):
    """register_model got a bad name, metric, feature service or dataset."""

    code = "invalid_model_registration"


class VersionAliased(ParityError):
    """A model version an alias points at cannot be deleted."""

    code = "version_aliased"


class NoRollbackTarget(ParityError):
    """An alias has no earlier version to roll back to."""

    code = "no_rollback_target"


# Raised by inference/predlog.py


class PredictionLogError(ParityError):
    """The prediction log cannot be written (folder not writable, sink closed)."""

    code = "prediction_log_failed"


# Issue 12, items 8 and 25 (models): alias compare-and-swap, predict methods


class AliasMoved(RegistryConflict):
    """An alias was not where the caller expected: a concurrent move came first."""

    code = "alias_moved"


class UnknownPredictMethod(ModelRegistrationError):
    """A chosen predict method (predict_proba, ...) is not one the model has."""

    code = "unknown_predict_method"


# Issue 12, items 9, 12 and 13 (helper featureapi): request bodies over the limit, push switched off


class BodyTooLarge(ParityError, ValueError):
    """A request body is over the server's size limit (HTTP 413)."""

    code = "body_too_large"


class PushDisabled(ParityError, PermissionError):
    """/push was called on a server started without --enable-push (HTTP 403)."""

    code = "push_disabled"


# Issue 12, items 6, 7, 10, 11 (modelapi): raised by inference/request_fields.py


class InvalidRequestField(BadRequest):
    """A /v1 predict request field is unknown, missing, or not of its declared type."""

    code = "invalid_request_field"


# Items 18-23 of issue 12 (cli): times taken by the CLI and the Python API, materialization


class InvalidTime(ParityError, ValueError):
    """A time argument is not an ISO 8601 time, a date or 'now' (epoch integers are refused)."""

    code = "invalid_time"


class NothingToMaterialize(ParityError):
    """materialize found no online views: nothing applied yet, or no view is online."""

    code = "nothing_to_materialize"


class PortInUse(ParityError, OSError):
    """A server cannot listen on the host and port it was given."""

    code = "port_in_use"


# Issue 12, items 1-3 (online): join key types, future events, clock skew


class EntityKeyTypeError(EntityFrameError):
    """An entity row's join key value is not of its entity's type (Int64 or String)."""

    code = "invalid_entity_key"


class FutureEventError(PushError):
    """A pushed event is stamped further ahead of the store's clock than `max_future_skew`."""

    code = "event_too_far_in_future"


# Issue 12, items 14, 15 and 16 (load): overload, the entity limit, the online store's breaker


class ServerOverloaded(ParityError):
    """The server is too busy to answer in time; retry after `retry_after_seconds`."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class TooManyEntities(ParityError, ValueError):
    """A feature request names more entity rows than the server allows."""

    code = "too_many_entities"


class OnlineStoreCircuitOpen(OnlineStoreUnavailable):
    """The online store failed several calls in a row; calls are refused at once until a probe
    after the cool-down succeeds."""

    code = "online_store_circuit_open"

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


# --- issue 12 follow-ups (helper modelv1): serve-models --enable-push


class InvalidOption(ParityError, ValueError):
    """Command-line options that do not go together; the message says which to add or drop."""

    code = "invalid_option"


# --- issue 12 QA findings 1 (matstream): materialize times ----------------------------------


class EndInFuture(InvalidTime):
    """A materialize END after the store's clock (it would move the watermark into the future)."""

    code = "end_in_future"


class EndBeforeWatermark(InvalidTime):
    """A materialize-incremental END before where the view's last run ended."""

    code = "end_before_watermark"


# --- monitoring: stats (profiles and drift tests) ----------------------------------------------


class ProfileError(ParityError, ValueError):
    """A reference profile cannot be computed, merged or read; the message names the column."""

    code = "invalid_profile"


class DriftTestError(ParityError, ValueError):
    """A drift test cannot run as asked (unknown test, a test for another kind of column, current
    values that cannot be read as the reference's kind); the message names the column and test."""

    code = "invalid_drift_test"


# --- monitoring: drift (profiles, prediction-log windows, drift runs) ------------------------


class ProfileNotFound(ObjectNotFound):
    """No stored reference profile for a dataset (fingerprint) and subject."""

    code = "profile_not_found"


class ProfileFailed(ParityError):
    """A reference profile could not be computed (its dataset file is gone, the model failed)."""

    code = "profile_failed"


class NoReference(ParityError, LookupError):
    """A model version has nothing to compare against: no training dataset or no profile."""

    code = "no_reference"


class UnknownMonitorColumn(ParityError, KeyError):
    """A column named for drift (Monitor `columns`, `tests`, `thresholds`) is neither a feature
    nor a model output of the reference."""

    code = "unknown_monitor_column"

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.message


class PredictionLogNotFound(ParityError):
    """The prediction log folder does not exist or holds no Parquet file."""

    code = "prediction_log_not_found"


class InsufficientData(ParityError, LookupError):
    """The prediction log has no rows for the model, version and time range asked about."""

    code = "insufficient_data"


class InvalidWindow(ParityError, ValueError):
    """A drift window or range that is not positive, or since >= until."""

    code = "invalid_window"


# --- monitoring: quality and freshness ------------------------------------------------------


class QualityInputError(ParityError, ValueError):
    """Values a data-quality check cannot read (mixed types, columns of unequal length, text
    where the reference is numeric); the message names the feature."""

    code = "invalid_quality_input"


class QualitySubjectNotFound(ObjectNotFound):
    """`monitoring.quality(name)` got a name that is neither a feature view nor a model."""

    code = "quality_subject_not_found"


# --- monitoring: performance ---------------------------------------------------------------------


class LabelSourceError(ParityError, ValueError):
    """A monitor's label source cannot be read (no such file, SQL that fails), or the monitor
    declares none."""

    code = "label_source_invalid"


class LabelColumnNotFound(ObjectNotFound):
    """The label source lacks a column the monitor names (label, join key or timestamp)."""

    code = "label_column_not_found"


class InvalidLabelValue(ParityError, ValueError):
    """A label that is not 0/1 or true/false (null means "no label yet")."""

    code = "invalid_label_value"


# --- monitoring: consistency -------------------------------------------------------------------


class ConsistencyError(ParityError, ValueError):
    """A consistency check that cannot run as asked (an empty window, a sample percent outside
    (0, 100]); the message says which argument to change."""

    code = "consistency_error"


# --- monitoring: report and alerts ------------------------------------------------------------


class InvalidAlertRule(InvalidDefinition):
    """An alert rule whose thresholds, direction or sustain cannot work as hysteresis."""

    code = "invalid_alert_rule"


class ReportError(ParityError, ValueError):
    """A drift report asked of a run that cannot give it (e.g. a version the run did not test)."""

    code = "report_error"


# --- monitoring: qa-a ---------------------------------------------------------------------------


class PredictionLogUnreadable(PredictionLogNotFound):
    """A Parquet file of the prediction log that DuckDB cannot read (truncated, not Parquet)."""

    code = "prediction_log_unreadable"


class InvalidSignalValue(ParityError, TypeError):
    """An alert signal given a value that is not a number (or None for insufficient data)."""

    code = "invalid_signal_value"


# --- monitoring: QA fixes (performance) ---------------------------------------------------------


class ScoreOutputNotFound(ObjectNotFound):
    """A monitor's `score_output` names an output the model version does not have."""

    code = "score_output_not_found"


# Raised by deploy/ (rollouts) and the model server's routing


class InvalidRollout(ParityError, ValueError):
    """A rollout cannot start as asked: no champion, candidate equal to the champion, an unknown
    gate metric, weights that do not increase... The message names the field and the fix."""

    code = "invalid_rollout"


class RolloutActive(ParityError):
    """A model already has an active rollout; finish or abort it first."""

    code = "rollout_active"


class RolloutStateError(ParityError):
    """The rollout is not in a state that allows this action (e.g. resume of a running one)."""

    code = "rollout_state"


class GateError(ParityError, ValueError):
    """A gate cannot be evaluated as declared (a custom gate raised or returned a bad value)."""

    code = "gate_error"


# --- rollout surface (CLI and HTTP) -------------------------------------------------------------


class RolloutControlDisabled(ParityError, PermissionError):
    """A rollout was started or steered over HTTP on a model server started without
    --enable-rollout-control (HTTP 403)."""

    code = "rollout_control_disabled"


# --- raised by jobs/ (training, batch and streaming predictions) and deploy/ (retraining) ---


class TrainingJobNotFound(ObjectNotFound):
    """No training job of this name is applied in the project."""

    code = "training_job_not_found"


class RetrainPolicyNotFound(ObjectNotFound):
    """No retrain policy of this name (or for this model) is applied in the project."""

    code = "retrain_policy_not_found"


class JobNotFound(ObjectNotFound):
    """No job record with this id in the project."""

    code = "job_not_found"


class JobStateError(ParityError):
    """The job is not in a state that allows this action (e.g. cancel of a finished job)."""

    code = "job_state"


class TrainingFailed(ParityError):
    """A training function raised, returned no model, or returned one whose signature does not
    match the feature service; nothing was registered. The message says which and why."""

    code = "training_failed"


class InvalidPredictionInput(ParityError, ValueError):
    """Batch or streaming prediction input that cannot be scored as given (a missing entity or
    request column, a bad timestamp); the message names the field."""

    code = "invalid_prediction_input"


# --- raised by deploy/retrain*.py (retrain triggers) ---------------------------------------------


class RetrainEvaluationBusy(ParityError):
    """Another trigger evaluation of the project held the evaluation lease for longer than this
    one would wait; nothing was decided."""

    code = "retrain_evaluation_busy"


class ScoreViewMismatch(ParityError, ValueError):
    """The feature view named by a batch prediction's `--to-online` cannot hold its scores: not a
    plain online view reading the batch's output file, or keys and features that are not the
    model's entity keys and outputs. The message names what differs."""

    code = "score_view_mismatch"


# --- raised by offline/spark_session.py (the Spark offline engine) -------------------------------


class SparkUnavailable(ParityError):
    """The Spark offline engine cannot start: Java (17) is missing or not runnable, or the JVM
    gateway failed to start. The message names what to install or set (JAVA_HOME, PATH)."""

    code = "spark_unavailable"


# --- raised by offline/delta.py and materialize/spark_writer.py (scale-out, part D) ---------------


class DeltaSourceError(SourceSchemaError):
    """A Delta Lake source that cannot be read: no table at the path, no such version, or a
    table feature (deletion vectors, column mapping, a partition column where the engine reads
    only files) that plain Parquet files do not carry; the message names the table, the
    feature and what to do."""

    code = "invalid_delta_source"


class MaterializationFailed(ParityError):
    """A materialization written from Spark executors failed part-way (a partition's write to
    the online store raised); no watermark was recorded, and a re-run converges (writes are
    write-if-newer). The message names the view and the first cause."""

    code = "materialization_failed"


# --- raised by serving/auth (access control, issue 17) -------------------------------------------


class Unauthenticated(ParityError, PermissionError):
    """A request to a server with auth on carried no token, or one that is unknown, malformed,
    revoked or expired (HTTP 401 with `WWW-Authenticate: Bearer`). The message says which and
    what to do; it never repeats the token."""

    code = "unauthenticated"


class Forbidden(ParityError, PermissionError):
    """A valid token lacks the scope a request needs (HTTP 403). The message names the missing
    scope (and the model, service or view it must cover); `scope` holds it for the metrics."""

    code = "forbidden"

    def __init__(self, message: str, scope: str = "") -> None:
        super().__init__(message)
        self.scope = scope


class IdentityProviderUnavailable(ParityError):
    """The OIDC provider's key set has not been read (unreachable, or not a key set), so no JWT
    can be checked now (HTTP 503 with Retry-After: the token may be fine; retry later)."""

    code = "identity_provider_unavailable"

    def __init__(self, message: str, retry_after_seconds: float = 10.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class RateLimited(ParityError):
    """A client went over its token's rate or in-flight limit (HTTP 429 with Retry-After)."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class TokenError(ParityError, ValueError):
    """A token cannot be created or revoked as asked (a bad scope, a name in use, an unknown
    token, an expiry in the past); the message names the field."""

    code = "invalid_token_request"
