"""Open Inference Protocol v2 (KServe v2 / Triton) REST codec: JSON messages <-> numpy tensors,
including the binary tensor data extension. Values in, values out: no HTTP framework, no models.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Set
from typing import Annotated, Any, TypeGuard

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.types import StrictBool, StrictFloat, StrictInt, StrictStr

from parity.errors import (
    InferenceRequestError,
    ParityError,
    TensorEncodingError,
    TooManyEntities,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
"""HTTP header giving the JSON length when binary tensor data follows the JSON in the body."""

_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    **{f"UINT{bits}": np.dtype(f"uint{bits}") for bits in (8, 16, 32, 64)},
    **{f"INT{bits}": np.dtype(f"int{bits}") for bits in (8, 16, 32, 64)},
    **{f"FP{bits}": np.dtype(f"float{bits}") for bits in (16, 32, 64)},
    "BYTES": np.dtype(object),
}
DATATYPES = frozenset(_DTYPES)
_DATATYPE_OF = {dtype: name for name, dtype in _DTYPES.items() if name != "BYTES"}
_KINDS = {"b": "boolean", "i": "integer", "u": "integer", "f": "float", "U": "string", "O": "null"}
_LENGTH = struct.Struct("<I")  # BYTES element prefix in binary data


def _json_backend() -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    try:
        import orjson
    except ImportError:  # orjson ships with the `serve` extra
        return json.loads, lambda value: json.dumps(value, separators=(",", ":")).encode()
    return orjson.loads, orjson.dumps


_loads, _dumps = _json_backend()

Parameters = dict[str, StrictBool | StrictInt | StrictFloat | StrictStr]
_Dim = Annotated[StrictInt, Field(ge=0)]
MAX_DIMS = 64  # numpy's limit on the dimensions of one array


class _Message(BaseModel):
    # Spec messages are closed: a misspelt field ("dtype", "input") is an error instead of being
    # dropped. Extensions (binary data, sequences, priority, timeout) live in `parameters`.
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Message):
    name: StrictStr
    shape: Annotated[list[_Dim], Field(max_length=MAX_DIMS)]
    datatype: StrictStr
    parameters: Parameters | None = None
    data: list[Any] | None = None  # absent when the tensor travels as binary data


class RequestOutput(_Message):
    name: StrictStr
    parameters: Parameters | None = None


class InferenceRequest(_Message):
    id: StrictStr | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Message):
    name: str
    shape: list[_Dim]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None
    _array: NDArray[Any] | None = PrivateAttr(default=None)  # encode_output's, for binary data


class InferenceResponse(_Message):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())  # pydantic < 2.10 warns
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(_Message):
    name: str
    datatype: str
    shape: list[Annotated[int, Field(ge=-1)]]  # -1: a variable dimension


class ServerMetadata(_Message):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(_Message):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _leaves(data: Any) -> Iterator[Any]:
    """The row-major leaves of nested lists, without recursion (JSON may nest 1,000 deep, a
    tensor at most MAX_DIMS)."""
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= MAX_DIMS:
                    raise InferenceRequestError(
                        f"tensor data is nested deeper than {MAX_DIMS} levels; a tensor has at "
                        f"most {MAX_DIMS} dimensions"
                    )
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _checked(
    label: str, data: Any, ok: Callable[[Any], bool], needs: str, error: type[ParityError]
) -> list[Any]:
    """The row-major leaves of (possibly nested) data, each of which must pass `ok`."""
    leaves = list(_leaves(data))
    for i, value in enumerate(leaves):
        if not ok(value):
            raise error(f"{label} element {i} is {type(value).__name__}; {needs}")
    return leaves


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number_or_null(value: Any) -> bool:
    return value is None or _is_int(value) or isinstance(value, float)


def _is_text(value: Any) -> bool:
    return isinstance(value, str | bytes)


def _dtype(label: str, datatype: str) -> np.dtype[Any]:
    if datatype not in _DTYPES:
        known = ", ".join(sorted(DATATYPES))
        raise InferenceRequestError(f"{label} has datatype {datatype!r}; use one of {known}")
    return _DTYPES[datatype]


def _numbers(
    label: str, datatype: str, raw: NDArray[Any], data: list[Any], nulls: bool
) -> NDArray[Any]:
    dtype, kind, err = _DTYPES[datatype], raw.dtype.kind, InferenceRequestError
    if dtype.kind == "b":
        if kind != "b":
            raise err(f"{label} data holds {_KINDS.get(kind, kind)} values; BOOL needs true/false")
        return raw
    if dtype.kind in "iu":
        if kind not in "iu":  # numpy reads [0, 2**64 - 1] as float64: check the Python values
            ints = _checked(label, data, _is_int, f"{datatype} needs integers", err)
            raw = np.array(ints, dtype=object)
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise err(f"{label} has values outside the {datatype} range [{info.min}, {info.max}]")
        return raw.astype(dtype)
    if kind == "O":  # null stands for a non-finite float (see encode_output)
        values = _checked(label, data, _is_number_or_null, f"{datatype} needs numbers", err)
        if not nulls and None in values:
            raise err(
                f"{label} element {values.index(None)} is null; a request tensor takes no nulls "
                "(as /v1 takes none): send a number (NaN and infinity only as binary data)"
            )
        try:
            raw = np.array([math.nan if v is None else v for v in values], object).astype(float)
        except OverflowError:
            raise err(f"{label} has values outside the {datatype} range") from None
    elif kind not in "iuf":
        raise err(f"{label} data holds {_KINDS.get(kind, kind)} values; {datatype} needs numbers")
    with np.errstate(over="ignore"):
        out = raw.astype(dtype)
    if np.count_nonzero(np.isinf(out)) != np.count_nonzero(np.isinf(raw)):
        raise err(f"{label} has values outside the {datatype} range")
    return out


def _from_json(
    label: str, shape: list[int], datatype: str, data: list[Any] | None, nulls: bool = True
) -> NDArray[Any]:
    dtype = _dtype(label, datatype)
    if data is None:
        raise InferenceRequestError(
            f"{label} has no data; give it `data` or send it as binary (binary_data_size)"
        )
    if datatype == "BYTES":
        leaves = _checked(label, data, _is_text, "BYTES needs strings", InferenceRequestError)
        array = np.array(leaves, dtype=object)
    else:
        try:
            raw = np.asarray(data)
        except ValueError:  # ragged nesting: only the row-major element count matters
            raw = np.asarray(list(_leaves(data)))
        array = _numbers(label, datatype, raw, data, nulls) if raw.size else np.empty(0, dtype)
    if array.size != math.prod(shape):
        raise InferenceRequestError(
            f"{label} has {array.size} elements but shape {shape} needs {math.prod(shape)}"
        )
    return array.reshape(shape)


def decode_input(inp: RequestInput) -> NDArray[Any]:
    """The JSON `data` of one input as a numpy array of its shape and datatype.

    `data` may be flat or nested (row-major); it may not hold null (a model input needs a value,
    as /v1 says: NaN travels only as binary data); BYTES become an object array of str. Raises
    InferenceRequestError naming the input.
    """
    return _from_json(f"input {inp.name!r}", inp.shape, inp.datatype, inp.data, nulls=False)


def decode_binary_input(inp: RequestInput, raw: bytes) -> NDArray[Any]:
    """One input's binary tensor data (little-endian, row-major, no padding) as a numpy array.

    BYTES elements are each a 4-byte little-endian length then the bytes; they become bytes.
    """
    label, count = f"input {inp.name!r}", math.prod(inp.shape)
    dtype = _dtype(label, inp.datatype)
    if inp.datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos + 4 <= len(raw) and len(items) < count:
            (size,) = _LENGTH.unpack_from(raw, pos)
            items.append(raw[pos + 4 : pos + 4 + size])
            pos += 4 + size
        if len(items) != count or pos != len(raw):
            raise InferenceRequestError(
                f"{label} has {len(raw)} bytes of BYTES data, which are not the {count} "
                f"length-prefixed elements that shape {inp.shape} needs"
            )
        return np.array(items, dtype=object).reshape(inp.shape)
    if len(raw) != count * dtype.itemsize:
        raise InferenceRequestError(
            f"{label} has {len(raw)} bytes of binary data but {inp.datatype} shape {inp.shape} "
            f"needs {count * dtype.itemsize}"
        )
    if dtype.kind == "b":  # one byte per element, any non-zero byte is true
        return np.frombuffer(raw, dtype=np.uint8).astype(np.bool_).reshape(inp.shape)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(inp.shape)


def _binary_size(inp: RequestInput) -> int | None:
    size = (inp.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if not _is_int(size) or size < 0:
        raise InferenceRequestError(
            f"input {inp.name!r} parameter binary_data_size must be a byte count, got {size!r}"
        )
    if inp.data is not None:
        raise InferenceRequestError(f"input {inp.name!r} has both data and binary_data_size")
    return int(size)


def _validation_message(exc: ValidationError, raw: Any) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc, named = err["loc"], ""
        if len(loc) > 1 and loc[0] in ("inputs", "outputs") and isinstance(loc[1], int):
            with contextlib.suppress(KeyError, IndexError, TypeError):  # name it if it has one
                named = f"{str(loc[0])[:-1]} {raw[loc[0]][loc[1]]['name']!r}: "
        hint = "; extensions go in `parameters`" if err["type"] == "extra_forbidden" else ""
        where = ".".join(str(part) for part in loc) or "request"
        parts.append(f"{named}{where}: {err['msg']}{hint}")
    return "invalid inference request: " + "; ".join(parts)


def parse_request(
    body: bytes, json_length: int | None = None, max_rows: int | None = None
) -> tuple[InferenceRequest, dict[str, NDArray[Any]]]:
    """The request in `body` and its decoded input tensors, by input name.

    `json_length` is the Inference-Header-Content-Length header: the body is that much JSON, then
    each binary input's `binary_data_size` bytes, in input order. None means the body is all JSON.
    An input of more than `max_rows` rows (its shape's first dimension) is refused with
    TooManyEntities (the body, and so the decoding, is bounded by the server's body limit).
    """
    if json_length is not None and not 0 <= json_length <= len(body):
        raise InferenceRequestError(
            f"{HEADER_LENGTH} is {json_length} but the body has only {len(body)} bytes"
        )
    pos = len(body) if json_length is None else json_length
    try:
        raw = _loads(body[:pos])
    except ValueError as exc:
        hint = "" if json_length is not None else f" (binary data needs the {HEADER_LENGTH} header)"
        raise InferenceRequestError(f"request body is not valid JSON{hint}: {exc}") from None
    try:
        request = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        raise InferenceRequestError(_validation_message(exc, raw)) from None
    tensors: dict[str, NDArray[Any]] = {}
    for inp in request.inputs:
        if inp.name in tensors:
            raise InferenceRequestError(f"input {inp.name!r} appears more than once")
        size = _binary_size(inp)
        if size is None:
            tensors[inp.name] = decode_input(inp)
            continue
        if pos + size > len(body):
            hint = "" if json_length is not None else f"; send the {HEADER_LENGTH} header"
            raise InferenceRequestError(
                f"input {inp.name!r} declares binary_data_size {size} but only "
                f"{len(body) - pos} bytes follow{hint}"
            )
        tensors[inp.name] = decode_binary_input(inp, body[pos : pos + size])
        pos += size
    if pos != len(body):
        raise InferenceRequestError(f"the body has {len(body) - pos} bytes after the last input")
    if max_rows is not None:  # after decoding: a shape its data does not fill is a plain 400
        _check_rows(request, max_rows)
    return request, tensors


def _check_rows(request: InferenceRequest, limit: int) -> None:
    for inp in request.inputs:
        if inp.shape and inp.shape[0] > limit:
            raise TooManyEntities(
                f"input '{inp.name}' has {inp.shape[0]:,} rows (its shape's first dimension); "
                f"the model server answers at most {limit:,} per request "
                "(models.serving.max_entities in parity.yaml): split the request"
            )


def _datatype_of(name: str, dtype: np.dtype[Any]) -> str:
    if dtype.kind in "OUS":
        return "BYTES"
    datatype = _DATATYPE_OF.get(dtype.newbyteorder("="))
    if datatype is None:
        raise TensorEncodingError(
            f"output {name!r} has numpy dtype {dtype}, which the Open Inference Protocol cannot "
            "carry; cast it to bool, (u)int8-64, float16/32/64 or str"
        )
    return datatype


def encode_output(name: str, array: Any) -> ResponseOutput:
    """A numpy array (or array-like) as a response output with flat row-major plain-Python data.

    str/bytes/object arrays become BYTES. Non-finite floats become null in `data` (JSON has no
    NaN); binary rendering keeps them exact. Raises TensorEncodingError for any other dtype.
    """
    tensor = np.asarray(array)
    datatype = _datatype_of(name, tensor.dtype)
    data = tensor.reshape(-1).tolist()
    if datatype == "BYTES":
        _checked(f"output {name!r}", data, _is_text, "BYTES needs str", TensorEncodingError)
    elif tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
        data = [value if math.isfinite(value) else None for value in data]
    output = ResponseOutput(name=name, shape=list(tensor.shape), datatype=datatype, data=data)
    output._array = tensor
    return output


def _flag(parameters: Parameters | None, key: str, where: str, default: bool) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise InferenceRequestError(f"{where} parameter {key} must be true or false, not {value!r}")
    return value


def binary_output_names(request: InferenceRequest, output_names: Iterable[str]) -> frozenset[str]:
    """The outputs to send as binary: an output's `binary_data` wins over `binary_data_output`."""
    default = _flag(request.parameters, "binary_data_output", "request", False)
    flags = {
        out.name: _flag(out.parameters, "binary_data", f"output {out.name!r}", default)
        for out in request.outputs or ()
    }
    return frozenset(name for name in output_names if flags.get(name, default))


def _binary(output: ResponseOutput) -> bytes:
    label, array = f"output {output.name!r}", output._array
    if array is None:  # built by hand rather than by encode_output
        try:
            array = _from_json(label, output.shape, output.datatype, output.data)
        except InferenceRequestError as exc:
            raise TensorEncodingError(exc.message) from None
    if output.datatype == "BYTES":
        items = [v.encode() if isinstance(v, str) else v for v in array.reshape(-1).tolist()]
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)
    dtype = _dtype(label, output.datatype).newbyteorder("<")
    return array.astype(dtype, copy=False).tobytes()  # tobytes() is row-major


def _json_data(output: ResponseOutput) -> list[Any]:
    if output.data is None:
        raise TensorEncodingError(f"output {output.name!r} has no data to render as JSON")
    if output.datatype != "BYTES":
        return output.data
    try:
        return [v.decode() if isinstance(v, bytes) else v for v in output.data]
    except UnicodeDecodeError:
        raise TensorEncodingError(
            f"output {output.name!r} holds bytes that are not UTF-8, which JSON cannot carry; "
            "request it as binary data (parameters.binary_data = true)"
        ) from None


def render_response(
    response: InferenceResponse, binary_outputs: Set[str] = frozenset()
) -> tuple[bytes, int | None]:
    """The response body, and the JSON length for the Inference-Header-Content-Length header
    when an output named in `binary_outputs` was appended as binary data (else None: all JSON).
    """
    head: dict[str, Any] = {"model_name": response.model_name}
    for key in ("model_version", "id", "parameters"):
        if (value := getattr(response, key)) is not None:
            head[key] = value
    outputs, chunks = [], []
    for output in response.outputs:
        entry: dict[str, Any] = {"name": output.name, "shape": output.shape}
        entry["datatype"] = output.datatype
        parameters = dict(output.parameters or {})
        if output.name in binary_outputs:
            chunks.append(_binary(output))
            parameters["binary_data_size"] = len(chunks[-1])
        else:
            entry["data"] = _json_data(output)
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    head["outputs"] = outputs
    header = _dumps(head)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
