from __future__ import annotations

import json
import sys
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest

from parity.errors import BackendNotInstalled
from parity.models.flavors import (
    InvalidModelArtifact,
    LoadedModel,
    Signature,
    SignatureMismatch,
    TensorSpec,
    UnknownFlavor,
    UntrustedArtifact,
    conform,
    detect_flavor,
    get_flavor,
    infer_signature,
    load_model,
    save_model,
)


class ThresholdModel:
    """Predicts 1 where the first feature is above the threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, inputs: Any) -> Any:
        return (np.asarray(inputs)[:, 0] > self.threshold).astype(np.int64)


class FirstColumn:
    """Returns whatever column the model is given first (shows the column order it received)."""

    def predict(self, inputs: pd.DataFrame) -> Any:
        return inputs.iloc[:, 0].to_numpy()


UNPICKLED: list[str] = []


def _record_unpickling() -> ThresholdModel:
    UNPICKLED.append("code ran")
    return ThresholdModel(0.0)


class Tripwire(ThresholdModel):
    """Unpickling it calls _record_unpickling: a stand-in for a malicious payload."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _record_unpickling, ()


X_TRAIN = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, 0.0], [3.0, 2.0, 1.0], [4.0, 0.0, 0.5]])


def test_signature_of_an_array_sample() -> None:
    signature = infer_signature(X_TRAIN, np.array([0, 0, 1, 1]))
    assert signature == Signature(
        "ndarray",
        (TensorSpec("input", "float64", (-1, 3)),),
        (TensorSpec("output", "int64", (-1,)),),
    )


def test_signature_of_a_dataframe_sample_has_one_spec_per_column() -> None:
    frame = pd.DataFrame(
        {"age": np.array([31, 45], dtype=np.int64), "income": [1.5, 2.0], "member": [True, False]}
    )
    signature = infer_signature(frame, np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32))
    assert signature == Signature(
        "dataframe",
        (
            TensorSpec("age", "int64", (-1,)),
            TensorSpec("income", "float64", (-1,)),
            TensorSpec("member", "bool", (-1,)),
        ),
        (TensorSpec("output", "float32", (-1, 2)),),
    )


def test_signature_of_string_labels_does_not_depend_on_their_length() -> None:
    signature = infer_signature(X_TRAIN[:2], np.array(["no", "yes-please"]))
    assert signature.outputs == (TensorSpec("output", "str", (-1,)),)


def test_a_one_dimensional_sample_is_rejected() -> None:
    with pytest.raises(SignatureMismatch, match="2-D"):
        infer_signature(np.array([1.0, 2.0]), np.array([0, 1]))


def test_signature_survives_a_json_round_trip() -> None:
    signature = Signature(
        "dataframe",
        (TensorSpec("age", "int64", (-1,)), TensorSpec("income", "float64", (-1,))),
        (TensorSpec("output", "float64", (-1, 2)),),
    )
    assert Signature.from_dict(json.loads(json.dumps(signature.to_dict()))) == signature


def test_pyfunc_round_trip_predicts_like_the_original() -> None:
    data = save_model(ThresholdModel(2.0), sample_input=X_TRAIN)
    loaded = load_model(data, trusted=True)
    assert isinstance(loaded, LoadedModel)
    assert loaded.flavor == "pyfunc"
    assert isinstance(loaded.native, ThresholdModel) and loaded.native.threshold == 2.0
    batch = np.array([[2.5, 0.0, 0.0], [1.9, 9.0, 9.0], [7.0, 1.0, 1.0]])
    np.testing.assert_array_equal(loaded.predict(batch), np.array([1, 0, 1]))
    assert loaded.signature == Signature(
        "ndarray",
        (TensorSpec("input", "float64", (-1, 3)),),
        (TensorSpec("output", "int64", (-1,)),),
    )


def test_a_pickle_is_refused_without_trust_and_runs_no_code() -> None:
    data = save_model(Tripwire(1.0))
    UNPICKLED.clear()
    with pytest.raises(UntrustedArtifact) as error:
        load_model(data)
    assert UNPICKLED == []
    assert error.value.code == "untrusted_artifact"
    assert isinstance(error.value, PermissionError)
    message = str(error.value)
    assert "arbitrary code" in message and "trusted=True" in message
    load_model(data, trusted=True)
    assert UNPICKLED == ["code ran"]


def test_a_dataframe_signature_reorders_columns_and_drops_extras() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [10.0, 20.0]})
    loaded = load_model(save_model(FirstColumn(), sample_input=frame), trusted=True)
    batch = pd.DataFrame({"extra": [0.0, 0.0], "b": [30.0, 40.0], "a": [3.0, 4.0]})
    np.testing.assert_array_equal(loaded.predict(batch), np.array([3.0, 4.0]))
    # a plain array is read as the signature's columns, in order
    np.testing.assert_array_equal(loaded.predict(np.array([[5.0, 50.0]])), np.array([5.0]))
    with pytest.raises(SignatureMismatch, match="'a'"):
        loaded.predict(pd.DataFrame({"b": [1.0]}))


def test_an_array_signature_checks_width_and_refuses_lossy_casts() -> None:
    loaded = load_model(save_model(ThresholdModel(2.0), sample_input=X_TRAIN), trusted=True)
    with pytest.raises(SignatureMismatch, match="3 features"):
        loaded.predict(np.zeros((2, 4)))
    np.testing.assert_array_equal(loaded.predict(np.array([[3, 0, 0]])), np.array([1]))
    with pytest.raises(SignatureMismatch, match="float64"):
        loaded.predict(np.array([[1 + 2j, 0, 0]]))


def _fake_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("sklearn")
    module.__version__ = "0.0-fake"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sklearn", module)


def test_sklearn_flavor_refuses_untrusted_pickles(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sklearn(monkeypatch)  # the trust rule must not depend on scikit-learn being installed
    data = get_flavor("sklearn").save(Tripwire(1.0))
    UNPICKLED.clear()
    with pytest.raises(UntrustedArtifact, match="sklearn"):
        load_model(data)
    assert UNPICKLED == []
    assert load_model(data, trusted=True).flavor == "sklearn"


def test_sklearn_round_trip_predicts_exactly_like_the_original() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    y = np.array([0, 0, 1, 1])
    model = linear_model.LogisticRegression().fit(X_TRAIN, y)
    data = save_model(model, sample_input=X_TRAIN)
    with pytest.raises(UntrustedArtifact):
        load_model(data)
    loaded = load_model(data, trusted=True)
    batch = np.array([[0.5, 1.0, 1.0], [3.5, 1.0, 1.0], [2.0, 0.0, 2.0]])
    assert loaded.flavor == detect_flavor(model) == "sklearn"
    np.testing.assert_array_equal(loaded.predict(X_TRAIN), y)  # separable: it fits the labels
    np.testing.assert_array_equal(loaded.predict(batch), model.predict(batch))
    assert loaded.signature is not None
    assert loaded.signature.inputs == (TensorSpec("input", "float64", (-1, 3)),)
    assert loaded.signature.outputs == (TensorSpec("output", "int64", (-1,)),)


def _library_class(module: str, name: str = "Model", *bases: type) -> type:
    return type(name, bases or (object,), {"__module__": module, "predict": lambda self, x: x})


def test_detect_flavor_follows_the_library_of_the_class_or_its_bases() -> None:
    sklearn_base = _library_class("sklearn.base", "BaseEstimator")
    xgb = _library_class("xgboost.sklearn", "XGBClassifier", sklearn_base)
    user_model = _library_class("my_project.models", "Custom", sklearn_base)
    assert detect_flavor(_library_class("sklearn.linear_model._logistic")()) == "sklearn"
    assert detect_flavor(xgb()) == "xgboost"  # its own module wins over sklearn's base class
    assert detect_flavor(_library_class("lightgbm.sklearn")()) == "lightgbm"
    assert detect_flavor(_library_class("onnx.onnx_ml_pb2", "ModelProto")()) == "onnx"
    assert detect_flavor(user_model()) == "sklearn"
    assert detect_flavor(ThresholdModel(1.0)) == "pyfunc"


def test_an_object_without_predict_has_no_flavor() -> None:
    with pytest.raises(UnknownFlavor, match="predict"):
        detect_flavor(object())
    with pytest.raises(UnknownFlavor, match="predict"):
        save_model(object(), flavor="pyfunc")
    with pytest.raises(UnknownFlavor, match="known flavors"):
        get_flavor("tensorflow")


@pytest.mark.parametrize(
    ("module", "flavor", "install"),
    [
        ("sklearn", "sklearn", "pip install scikit-learn"),
        ("xgboost", "xgboost", "pip install xgboost"),
        ("lightgbm", "lightgbm", "pip install lightgbm"),
    ],
)
def test_saving_without_the_library_names_the_install(
    monkeypatch: pytest.MonkeyPatch, module: str, flavor: str, install: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when missing
    with pytest.raises(BackendNotInstalled) as error:
        get_flavor(flavor).save(ThresholdModel(1.0))
    assert str(error.value).endswith(install)
    assert error.value.code == "backend_not_installed"


def test_sklearn_loading_without_the_library_names_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_sklearn(monkeypatch)
    data = get_flavor("sklearn").save(ThresholdModel(1.0))
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(BackendNotInstalled, match="pip install scikit-learn"):
        load_model(data, trusted=True)


def test_onnx_needs_no_trust_but_needs_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    data = save_model(b"\x08\x07", flavor="onnx")  # serialized ModelProto bytes are accepted
    with pytest.raises(BackendNotInstalled) as error:
        load_model(data)  # not refused for trust: it gets as far as importing the runtime
    assert str(error.value).endswith("pip install onnxruntime")


def test_bytes_that_are_not_a_model_artifact_are_rejected() -> None:
    with pytest.raises(InvalidModelArtifact):
        load_model(b"\x80\x05 a bare pickle")
    data = save_model(ThresholdModel(1.0))
    with pytest.raises(InvalidModelArtifact, match="pyfunc"):
        get_flavor("onnx").load(data)


class _Doubler:
    def predict(self, batch: Any) -> Any:
        return np.asarray(batch) * 2


def test_a_pyfunc_class_defined_in_main_is_refused_at_save() -> None:
    from parity.errors import UnknownFlavor

    scripted = type("Scripted", (_Doubler,), {"__module__": "__main__"})
    with pytest.raises(UnknownFlavor, match="__main__"):
        save_model(scripted(), flavor="pyfunc")


def test_a_pyfunc_whose_class_is_gone_fails_to_load_with_a_typed_error() -> None:
    from parity.errors import InvalidModelArtifact

    module = types.ModuleType("parity_vanishing_module")
    vanishing = type("Vanishing", (_Doubler,), {"__module__": module.__name__})
    module.Vanishing = vanishing  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        data = save_model(vanishing(), flavor="pyfunc")
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(InvalidModelArtifact, match="importable"):
        load_model(data, trusted=True)


def test_a_model_predicts_while_another_thread_is_still_importing_pandas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What sys.modules holds while another thread imports pandas: a module without DataFrame
    # yet. Seen live: the prediction log's writer imported pandas through pyarrow while the first
    # requests predicted, and they failed with "partially initialized module 'pandas'".
    monkeypatch.setitem(sys.modules, "pandas", types.ModuleType("pandas"))
    signature = infer_signature(X_TRAIN, np.array([0, 0, 1, 1]))
    assert conform(X_TRAIN, signature).shape == X_TRAIN.shape
