"""Which methods of a model are served, and under which output names (`predict_method=` at
registration, like MLflow's `pyfunc_predict_fn`). Pure checks on the model object: must not import
an ML library, storage or serving.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from parity.errors import ModelRegistrationError, UnknownPredictMethod

DEFAULT_OUTPUT = "output"
Methods = tuple[tuple[str, str], ...]  # (output name, method name), in output order
DEFAULT: Methods = ((DEFAULT_OUTPUT, "predict"),)
PredictMethod = str | Sequence[str] | Mapping[str, str]

# Methods estimators commonly predict with, listed when a chosen one is missing.
_PREDICTION_METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score_samples",
    "transform",
)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,199}")
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}")
_CHANGES_THE_MODEL = re.compile(r"(fit|partial_fit)($|_)|set_")  # fit, fit_transform, set_params...


def normalize(choice: PredictMethod | None) -> Methods:
    """(output, method) pairs: None is `predict` as `output`; a string is that method as `output`;
    a list names each output after its method; a mapping is output name -> method."""
    if choice is None:
        return DEFAULT
    if isinstance(choice, str):
        pairs: list[tuple[Any, Any]] = [(DEFAULT_OUTPUT, choice)]
    elif isinstance(choice, Mapping):
        pairs = list(choice.items())
    elif isinstance(choice, Sequence):
        pairs = [(method, method) for method in choice]
    else:
        raise _bad(f"{choice!r} is neither a method name, a list of them nor a mapping")
    if not pairs:
        raise _bad("it names no method")
    for output, method in pairs:
        if not isinstance(method, str) or _METHOD.fullmatch(method) is None:
            raise _bad(f"{method!r} is not a public method name")
        if not isinstance(output, str) or _NAME.fullmatch(output) is None:
            raise _bad(f"output name {output!r} is not valid (letters, digits, '_' and '-')")
    names = [output for output, _ in pairs]
    if len(set(names)) != len(names):
        raise _bad(f"output names {names} repeat; give each method its own output name")
    return tuple((str(output), str(method)) for output, method in pairs)


def _bad(problem: str) -> ModelRegistrationError:
    return ModelRegistrationError(
        f"predict_method: {problem}. Pass a method name ('predict_proba'), a list of them "
        "(['predict', 'predict_proba']) or a mapping of output names to methods "
        "({'label': 'predict', 'probability': 'predict_proba'})"
    )


def check_available(model: Any, methods: Methods) -> None:
    """Raise UnknownPredictMethod unless the model has each method (callable) and none is one
    that changes the model (fit*, partial_fit, set_*: serving must not refit on each request)."""
    for _, method in methods:
        if _CHANGES_THE_MODEL.match(method):
            raise UnknownPredictMethod(
                f"predict_method '{method}' changes the model (it fits or sets it) rather than "
                f"predicting; its prediction methods are {available(model) or 'none'}"
            )
        if not callable(getattr(model, method, None)):
            raise UnknownPredictMethod(
                f"{type(model).__qualname__} has no method '{method}' to serve; its prediction "
                f"methods are {available(model) or 'none'}. Choose one of them, or wrap the "
                "model in a class whose predict() returns what you need (flavor='pyfunc')"
            )


def available(model: Any) -> str:
    """The model's usual prediction methods, quoted: 'predict', 'predict_proba', ..."""
    found = [name for name in _PREDICTION_METHODS if callable(getattr(model, name, None))]
    return ", ".join(f"'{name}'" for name in found)


def bind(native: Any, methods: Methods) -> dict[str, Any]:
    """Output name -> bound method of a loaded model; KeyError-free: raises AttributeError naming
    the method when the loaded object lacks it."""
    bound = {}
    for output, method in methods:
        function = getattr(native, method, None)
        if not callable(function):
            raise AttributeError(f"the loaded model has no method '{method}'")
        bound[output] = function
    return bound


def try_on_sample(method: str, function: Callable[[Any], Any], sample: Any, rows: int) -> Any:
    """A chosen method's output on the sample, or UnknownPredictMethod naming the method when it
    is not a prediction method: it raises, or does not return one array row per input row."""
    hint = (
        "; predict_method takes prediction methods only (predict, predict_proba, "
        "decision_function, ...), each returning one row per input row"
    )
    try:
        output = np.asarray(function(sample))
    except Exception as error:
        raise UnknownPredictMethod(
            f"predict_method '{method}' raised {type(error).__name__} on the sample input "
            f"({error}){hint}"
        ) from None
    if output.ndim == 0 or output.shape[0] != rows:
        got = "a single value" if output.ndim == 0 else f"shape {output.shape}"
        raise UnknownPredictMethod(
            f"predict_method '{method}' returned {got} for {rows} sample rows{hint}"
        )
    if output.dtype.kind == "O" and not all(map(_is_scalar, output.reshape(-1))):
        raise UnknownPredictMethod(
            f"predict_method '{method}' returned objects that are not numbers or text{hint}"
        )
    return output


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bytes | int | float | np.generic)
