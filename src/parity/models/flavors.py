"""Flavors: how a model becomes artifact bytes and comes back as a LoadedModel with a signature.

Pickle-based flavors (sklearn, pyfunc) run code when loaded and refuse unless trusted=True. Each ML
library is imported only inside the flavor that needs it; nothing here touches storage.
"""

from __future__ import annotations

import importlib
import json
import logging
import pickle
import struct
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from parity.errors import (
    BackendNotInstalled,
    InvalidModelArtifact,
    ModelRegistrationError,
    SignatureMismatch,
    UnknownFlavor,
    UntrustedArtifact,
)
from parity.models.methods import (
    DEFAULT,
    DEFAULT_OUTPUT,
    Methods,
    PredictMethod,
    bind,
    check_available,
    normalize,
    try_on_sample,
)

logger = logging.getLogger(__name__)

# Artifact layout: MAGIC, a 4-byte big-endian header length, a JSON header, the flavor's payload.
MAGIC = b"PARITY-MODEL\n"
FORMAT = 1


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: its dtype name and shape, -1 standing for the batch dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    method: str | None = None  # an output's model method, when registration chose methods


@dataclass(frozen=True)
class Signature:
    """A model's inputs (DataFrame columns, or one 2-D array) and outputs, from a sample."""

    input_kind: str  # "dataframe" or "ndarray"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, kept in the artifact header (and by the registry with the version)."""
        data = asdict(self)
        for spec in data["outputs"]:
            if spec["method"] is None:
                del spec["method"]
        for spec in data["inputs"]:
            del spec["method"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(s["name"]), str(s["dtype"]), tuple(s["shape"]), s.get("method"))
                for s in items
            )

        return cls(str(data["input_kind"]), specs(data["inputs"]), specs(data["outputs"]))


def _is_dataframe(value: Any) -> bool:
    # Not imported (or another thread is still importing it) means it cannot be a DataFrame.
    frame = getattr(sys.modules.get("pandas"), "DataFrame", None)
    return frame is not None and isinstance(value, frame)


def _dtype_name(dtype: np.dtype[Any]) -> str:
    return {"U": "str", "S": "bytes"}.get(dtype.kind, dtype.name)


def infer_signature(
    sample_input: Any, sample_output: Any, methods: Methods | None = None
) -> Signature:
    """The signature of a model mapping `sample_input` (DataFrame, 2-D array) to `sample_output`
    (one array, or output name -> array when registration chose `methods`)."""
    if _is_dataframe(sample_input):
        kind = "dataframe"
        inputs = tuple(TensorSpec(str(n), str(t), (-1,)) for n, t in sample_input.dtypes.items())
    else:
        array = np.asarray(sample_input)
        if array.ndim != 2:
            raise SignatureMismatch(
                f"a sample input must be a pandas DataFrame or a 2-D array (rows x features), "
                f"not an array of shape {array.shape}; reshape it with .reshape(-1, n_features)"
            )
        kind = "ndarray"
        inputs = (TensorSpec("input", _dtype_name(array.dtype), (-1, array.shape[1])),)
    if methods is None or methods == DEFAULT:
        return Signature(kind, inputs, (_output_spec(DEFAULT_OUTPUT, sample_output, None),))
    if not isinstance(sample_output, Mapping):
        if len(methods) != 1:
            raise SignatureMismatch(
                f"with {len(methods)} outputs, sample_output must map each output name to its "
                "sample (or leave it out: the sample input's predictions are used)"
            )
        sample_output = {methods[0][0]: sample_output}
    missing = [name for name, _ in methods if name not in sample_output]
    if missing:
        raise SignatureMismatch(f"sample_output has no sample for the outputs {missing}")
    specs = tuple(_output_spec(name, sample_output[name], method) for name, method in methods)
    return Signature(kind, inputs, specs)


def _output_spec(name: str, sample: Any, method: str | None) -> TensorSpec:
    output = np.asarray(sample)
    if output.ndim == 0:
        raise SignatureMismatch(
            f"the sample output '{name}' must have one row per input row, not a scalar"
        )
    return TensorSpec(name, _dtype_name(output.dtype), (-1, *output.shape[1:]), method)


def conform(batch: Any, signature: Signature) -> Any:
    """A batch shaped as the model saw its sample: the signature's columns in order, or a 2-D array
    of the signature's width and dtype. Raises SignatureMismatch naming what is wrong."""
    if signature.input_kind == "dataframe":
        names = [spec.name for spec in signature.inputs]
        if not _is_dataframe(batch):
            array = _two_d(batch, len(names))
            batch = require("pandas", "pandas", "a DataFrame signature").DataFrame(
                array, columns=names
            )
        missing = [name for name in names if name not in batch.columns]
        if missing:
            raise SignatureMismatch(f"the batch lacks the model's input columns {missing}")
        try:
            return batch[names].astype({spec.name: spec.dtype for spec in signature.inputs})
        except (TypeError, ValueError) as error:
            raise SignatureMismatch(
                f"the batch's columns do not convert to the signature's dtypes: {error}"
            ) from None
    spec = signature.inputs[0]
    array = _two_d(batch.to_numpy() if _is_dataframe(batch) else batch, spec.shape[1])
    try:
        target = np.dtype(spec.dtype)
    except TypeError:
        return array
    if not np.can_cast(array.dtype, target, casting="same_kind"):
        raise SignatureMismatch(
            f"the model takes {spec.dtype} inputs; a {array.dtype} batch would lose values"
        )
    return array.astype(target, copy=False)


def _two_d(batch: Any, width: int) -> np.ndarray[Any, Any]:
    array = np.asarray(batch)
    if array.ndim != 2 or width not in (-1, array.shape[1]):
        raise SignatureMismatch(
            f"the model takes rows of {width} features; the batch has shape {array.shape}"
        )
    return array


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict: `native` is the library's own object, `signature` may be None."""

    flavor: str
    native: Any
    signature: Signature | None
    _predict: Callable[[Any], Any] = field(repr=False)
    _outputs: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict, repr=False)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs `predict_outputs` returns, in order (one, `output`, unless registration
        chose methods)."""
        if self._outputs:
            return tuple(self._outputs)
        outputs = self.signature.outputs if self.signature is not None else ()
        return (outputs[0].name if outputs else DEFAULT_OUTPUT,)

    def predict(self, batch: Any) -> np.ndarray[Any, Any]:
        """Predict for a 2-D array or DataFrame, conformed to the signature if there is one; the
        first output when registration chose several methods."""
        if self.signature is not None:
            batch = conform(batch, self.signature)
        first = next(iter(self._outputs.values()), self._predict)
        return np.asarray(first(batch))

    def predict_outputs(self, batch: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Every output by name: each chosen method applied to the same conformed batch."""
        if self.signature is not None:
            batch = conform(batch, self.signature)
        if not self._outputs:
            return {self.output_names[0]: np.asarray(self._predict(batch))}
        return {name: np.asarray(method(batch)) for name, method in self._outputs.items()}


def require(module: str, pip_name: str, user: str) -> Any:
    """Import an optional library, or raise BackendNotInstalled naming the pip install to run."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendNotInstalled(
            f"{user} needs the {pip_name} package: pip install {pip_name}"
        ) from None


@dataclass(frozen=True)
class Header:
    flavor: str
    signature: Signature | None
    meta: Mapping[str, Any]


def pack(
    flavor: str, payload: bytes, signature: Signature | None, meta: Mapping[str, Any]
) -> bytes:
    header = {"format": FORMAT, "flavor": flavor, "meta": dict(meta)}
    header["signature"] = signature.to_dict() if signature is not None else None
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack(">I", len(encoded)) + encoded + payload


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Split artifact bytes into header and payload; reading the header runs no code."""
    start = len(MAGIC) + 4
    if not data.startswith(MAGIC) or len(data) < start:
        raise InvalidModelArtifact(
            "these bytes are not a Parity model artifact (save them with save_model)"
        )
    (length,) = struct.unpack(">I", data[len(MAGIC) : start])
    try:
        header = json.loads(data[start : start + length])
        signature = header["signature"]
        parsed = Header(
            str(header["flavor"]),
            None if signature is None else Signature.from_dict(signature),
            dict(header["meta"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidModelArtifact(
            f"the model artifact's header is damaged ({error}); save the model again"
        ) from None
    if header.get("format") != FORMAT:
        raise InvalidModelArtifact(
            f"model artifact format {header.get('format')!r} is not supported; upgrade Parity"
        )
    return parsed, data[start + length :]


class ModelFlavor(Protocol):
    name: str
    executes_code: bool

    def save(self, model: Any, *, signature: Signature | None = None) -> bytes: ...

    def load(self, data: bytes, *, trusted: bool = False) -> LoadedModel: ...


class _Flavor:
    """Shared save/load: header, trust check before any deserialization, lazy library import."""

    name: str
    executes_code: bool = False
    library: tuple[str, str] | None = None  # (module, pip package) needed to save/load

    def _library(self) -> Any:
        return None if self.library is None else require(*self.library, f"the {self.name} flavor")

    def save(self, model: Any, *, signature: Signature | None = None) -> bytes:
        lib = self._library()
        payload, meta = self._dump(lib, model)
        meta.setdefault("library_version", getattr(lib, "__version__", None))
        return pack(self.name, payload, signature, meta)

    def load(self, data: bytes, *, trusted: bool = False) -> LoadedModel:
        header, payload = unpack(data)
        if header.flavor != self.name:
            raise InvalidModelArtifact(
                f"this artifact holds a {header.flavor} model, not {self.name}: use load_model"
            )
        if self.executes_code and not trusted:
            raise UntrustedArtifact(
                f"refusing to load this {self.name} model: its artifact is a Python pickle, and "
                "unpickling runs arbitrary code chosen by whoever could write the model registry "
                "or the artifact store. If you trust both, pass trusted=True (load_model(data, "
                "trusted=True)); or export the model to ONNX, which loads without running code"
            )
        lib = self._library()
        saved, running = header.meta.get("library_version"), getattr(lib, "__version__", None)
        if lib is not None and saved != running:
            logger.warning(
                "%s model saved with version %s, loading with %s", self.name, saved, running
            )
        native, predict = self._restore(lib, payload, header.meta)
        return LoadedModel(self.name, native, header.signature, predict, self._bind(native, header))

    def _bind(self, native: Any, header: Header) -> dict[str, Callable[[Any], Any]]:
        """The chosen methods recorded in the header, bound to the loaded model."""
        chosen = header.meta.get("outputs")
        if chosen is None:
            return {}
        try:
            if not self.executes_code:
                raise ValueError(f"the {self.name} flavor serves predict only")
            return bind(native, normalize(dict(chosen)))
        except (AttributeError, ValueError, TypeError) as error:
            raise InvalidModelArtifact(
                f"the model artifact's chosen methods {chosen!r} cannot be served: {error}"
            ) from None

    def _dump(self, lib: Any, model: Any) -> tuple[bytes, dict[str, Any]]:
        raise NotImplementedError

    def _restore(
        self, lib: Any, payload: bytes, meta: Mapping[str, Any]
    ) -> tuple[Any, Callable[[Any], Any]]:
        raise NotImplementedError


class PyfuncFlavor(_Flavor):
    """Any object with a `predict(inputs)` method, pickled; its class must be importable on load."""

    name = "pyfunc"
    executes_code = True

    def _dump(self, lib: Any, model: Any) -> tuple[bytes, dict[str, Any]]:
        if not callable(getattr(model, "predict", None)):
            raise UnknownFlavor(
                f"{type(model).__qualname__} has no predict(inputs) method to serve"
            )
        if type(model).__module__ == "__main__":
            raise UnknownFlavor(
                f"{type(model).__qualname__} is defined in the script being run (__main__), so "
                "no other process could import it to load the model; move the class into a "
                "module and import it from there"
            )
        return pickle.dumps(model, protocol=5), {}

    def _restore(
        self, lib: Any, payload: bytes, meta: Mapping[str, Any]
    ) -> tuple[Any, Callable[[Any], Any]]:
        try:
            native = pickle.loads(payload)  # only reached with trusted=True
        except (AttributeError, ImportError) as error:
            raise InvalidModelArtifact(
                f"cannot load this {self.name} model: {error}. The model's class must be "
                "importable where it is loaded: install the package that defines it"
            ) from None
        return native, native.predict


class SklearnFlavor(PyfuncFlavor):
    """scikit-learn estimators and pipelines, pickled (sklearn has no code-free format)."""

    name = "sklearn"
    library = ("sklearn", "scikit-learn")


def _via_file(write: Callable[[str], Any]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.json")
        write(path)
        return Path(path).read_bytes()


class XGBoostFlavor(_Flavor):
    """XGBoost Boosters and sklearn-API estimators in XGBoost's own JSON format (no pickle)."""

    name = "xgboost"
    library = ("xgboost", "xgboost")

    def _dump(self, lib: Any, model: Any) -> tuple[bytes, dict[str, Any]]:
        kind = type(model).__name__
        if getattr(lib, kind, None) is not type(model) or not self._is_model_class(lib, kind):
            raise UnknownFlavor(
                f"{kind} is not one of XGBoost's own model classes (Booster, XGBClassifier, ...); "
                "save a subclass or wrapper with flavor='pyfunc'"
            )
        return _via_file(model.save_model), {"estimator": kind}

    @staticmethod
    def _is_model_class(lib: Any, kind: object) -> bool:
        cls = getattr(lib, str(kind), None)
        return isinstance(cls, type) and issubclass(cls, (lib.Booster, lib.XGBModel))

    def _restore(
        self, lib: Any, payload: bytes, meta: Mapping[str, Any]
    ) -> tuple[Any, Callable[[Any], Any]]:
        kind = meta.get("estimator")
        if not self._is_model_class(lib, kind):  # the header is untrusted: only model classes
            raise InvalidModelArtifact(f"unknown XGBoost estimator {kind!r} in the model artifact")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.json"
            path.write_bytes(payload)
            native = getattr(lib, str(kind))()
            native.load_model(str(path))
        if kind == "Booster":
            return native, lambda batch: native.predict(lib.DMatrix(batch))
        return native, native.predict


class LightGBMFlavor(_Flavor):
    """LightGBM Boosters and sklearn-API estimators in LightGBM's own text format (no pickle)."""

    name = "lightgbm"
    library = ("lightgbm", "lightgbm")

    def _dump(self, lib: Any, model: Any) -> tuple[bytes, dict[str, Any]]:
        if isinstance(model, lib.Booster):
            return model.model_to_string().encode(), {"estimator": "booster"}
        if isinstance(model, lib.LGBMClassifier):
            text = model.booster_.model_to_string()
            return text.encode(), {"estimator": "classifier", "classes": model.classes_.tolist()}
        if isinstance(model, lib.LGBMModel):
            return model.booster_.model_to_string().encode(), {"estimator": "regressor"}
        raise UnknownFlavor(f"{type(model).__qualname__} is not a LightGBM model")

    def _restore(
        self, lib: Any, payload: bytes, meta: Mapping[str, Any]
    ) -> tuple[Any, Callable[[Any], Any]]:
        booster = lib.Booster(model_str=payload.decode())
        if meta.get("estimator") != "classifier":
            return booster, booster.predict
        classes = np.asarray(meta["classes"])

        def predict(batch: Any) -> Any:  # what LGBMClassifier.predict does with probabilities
            proba = np.asarray(booster.predict(batch))
            if proba.ndim == 1:
                proba = np.column_stack([1.0 - proba, proba])
            return classes[np.argmax(proba, axis=1)]

        return booster, predict


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


class OnnxFlavor(_Flavor):
    """ONNX graphs (onnx.ModelProto or serialized bytes) run by onnxruntime. No trust needed:
    loading parses a protobuf and runs only onnxruntime's built-in operators."""

    name = "onnx"

    def _dump(self, lib: Any, model: Any) -> tuple[bytes, dict[str, Any]]:
        if isinstance(model, bytes | bytearray):
            return bytes(model), {}
        if callable(getattr(model, "SerializeToString", None)):
            return bytes(model.SerializeToString()), {}
        raise UnknownFlavor(
            f"{type(model).__qualname__} is not an ONNX model (onnx.ModelProto or bytes)"
        )

    def _restore(
        self, lib: Any, payload: bytes, meta: Mapping[str, Any]
    ) -> tuple[Any, Callable[[Any], Any]]:
        ort = require("onnxruntime", "onnxruntime", "the onnx flavor")
        try:
            session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad graphs
            raise InvalidModelArtifact(
                f"onnxruntime cannot load this ONNX model: {error}"
            ) from None
        inputs = session.get_inputs()

        def feed(value: Any, onnx_type: str) -> Any:
            array = value.to_numpy() if _is_dataframe(value) else np.asarray(value)
            return array.astype(_ONNX_TYPES.get(onnx_type, array.dtype), copy=False)

        def predict(batch: Any) -> Any:
            if len(inputs) == 1:
                return session.run(None, {inputs[0].name: feed(batch, inputs[0].type)})[0]
            if not _is_dataframe(batch):  # one graph input per column, each of shape (rows, 1)
                raise SignatureMismatch(f"this ONNX model takes a DataFrame with columns {inputs}")
            return session.run(None, {i.name: feed(batch[[i.name]], i.type) for i in inputs})[0]

        return session, predict


_ALL: tuple[ModelFlavor, ...] = (
    SklearnFlavor(),
    XGBoostFlavor(),
    LightGBMFlavor(),
    OnnxFlavor(),
    PyfuncFlavor(),
)
FLAVORS: Mapping[str, ModelFlavor] = {flavor.name: flavor for flavor in _ALL}
_LIBRARY_FLAVORS = frozenset({"sklearn", "xgboost", "lightgbm", "onnx"})  # top-level module names


def get_flavor(name: str) -> ModelFlavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise UnknownFlavor(
            f"no model flavor named {name!r}; known flavors: {sorted(FLAVORS)}"
        ) from None


def detect_flavor(model: Any) -> str:
    """The flavor for a model object: by the library its class (or a base class) comes from, else
    pyfunc when it has a predict method."""
    for cls in type(model).__mro__:
        library = cls.__module__.split(".")[0]
        if library in _LIBRARY_FLAVORS:
            return library
    if callable(getattr(model, "predict", None)):
        return "pyfunc"
    raise UnknownFlavor(
        f"cannot tell how to save a {type(model).__qualname__}: it is not a scikit-learn, XGBoost, "
        "LightGBM or ONNX model and has no predict(inputs) method; pass flavor= or wrap it"
    )


def save_model(
    model: Any,
    *,
    flavor: str | None = None,
    sample_input: Any = None,
    sample_output: Any = None,
    predict_method: PredictMethod | None = None,
) -> bytes:
    """Artifact bytes for a model. With `sample_input`, the signature is inferred; the output comes
    from predicting the sample with the artifact itself, which proves that it loads back.

    `predict_method` chooses the methods served (see parity.models.methods.normalize); they need
    a pickle flavor (sklearn, pyfunc) and a `sample_input`, so each is checked on the sample."""
    chosen = get_flavor(flavor if flavor is not None else detect_flavor(model))
    methods = normalize(predict_method)
    if methods != DEFAULT:
        _check_methods(model, chosen, methods, sample_input)
    data = chosen.save(model)
    header, payload = unpack(data)
    meta = dict(header.meta)
    if methods != DEFAULT:
        meta["outputs"] = [list(pair) for pair in methods]
        data = pack(header.flavor, payload, None, meta)
    if sample_input is None:
        return data
    if sample_output is None or methods != DEFAULT:  # chosen methods are always tried
        # trusted: these bytes were made from a live object just now
        computed = _sample_outputs(chosen.load(data, trusted=True), sample_input, methods)
        sample_output = computed if sample_output is None else sample_output
    signature = infer_signature(sample_input, sample_output, methods)
    return pack(header.flavor, payload, signature, meta)


def _check_methods(model: Any, chosen: ModelFlavor, methods: Methods, sample_input: Any) -> None:
    if not chosen.executes_code:
        raise ModelRegistrationError(
            f"the {chosen.name} flavor serves its model's predict only; to serve other methods, "
            "register the model with flavor='sklearn' or 'pyfunc', or leave predict_method out"
        )
    check_available(model, methods)
    if sample_input is None:
        raise ModelRegistrationError(
            "predict_method needs sample_input: each chosen method is run on the sample to check "
            "it and to record its output's dtype and shape in the signature"
        )


def _sample_outputs(model: LoadedModel, sample_input: Any, methods: Methods) -> Any:
    rows = len(sample_input)
    if not model._outputs:
        outputs = model.predict_outputs(sample_input)
        for name, output in outputs.items():
            if output.ndim == 0 or output.shape[0] != rows:
                raise SignatureMismatch(
                    f"output '{name}' has shape {output.shape} for {rows} sample rows; each "
                    "output must have one row per input row"
                )
        return outputs[model.output_names[0]]
    return {
        name: try_on_sample(method, model._outputs[name], sample_input, rows)
        for name, method in methods
    }


def load_model(data: bytes, *, trusted: bool = False) -> LoadedModel:
    """Load artifact bytes with the flavor their header names (pickles need trusted=True)."""
    header, _ = unpack(data)
    return get_flavor(header.flavor).load(data, trusted=trusted)
