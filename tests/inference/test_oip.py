from __future__ import annotations

import json
import struct
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from parity.errors import ParityError
from parity.inference import oip
from parity.inference.oip import (
    HEADER_LENGTH,
    InferenceRequest,
    InferenceRequestError,
    InferenceResponse,
    ModelMetadata,
    RequestInput,
    ResponseOutput,
    ServerMetadata,
    TensorEncodingError,
    binary_output_names,
    decode_input,
    encode_output,
    parse_request,
    render_response,
)

# The datatype table of the Open Inference Protocol, written out independently of the module.
NUMPY_OF = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _body(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _request(**inp: Any) -> bytes:
    return _body({"inputs": [{"name": "pixel_values", **inp}]})


def _through_json(array: Any) -> tuple[str, NDArray[Any]]:
    """encode_output -> rendered JSON (parsed with the stdlib) -> RequestInput -> decode_input."""
    body, json_length = render_response(
        InferenceResponse(model_name="m", outputs=[encode_output("t", array)])
    )
    assert json_length is None
    (out,) = json.loads(body)["outputs"]
    inp = RequestInput(name="t", shape=out["shape"], datatype=out["datatype"], data=out["data"])
    return out["datatype"], decode_input(inp)


def _assert_same(got: NDArray[Any], expected: NDArray[Any]) -> None:
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()  # bit-exact: catches -0.0 vs 0.0, NaN payloads


# --- JSON tensors ------------------------------------------------------------------------------


def test_spec_example_request_decodes_row_major() -> None:
    body = b"""{
      "id": "42",
      "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [true, false, true]}
      ],
      "outputs": [{"name": "output0"}]
    }"""
    request, tensors = parse_request(body)
    assert request.id == "42"
    assert [o.name for o in request.outputs or []] == ["output0"]
    _assert_same(tensors["input0"], np.array([[1, 2], [3, 4]], dtype=np.int32))
    _assert_same(tensors["input1"], np.array([True, False, True]))


def test_spec_example_response_renders_as_the_spec_shows() -> None:
    values = np.array([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]], dtype=np.float32)
    response = InferenceResponse(
        model_name="mymodel", id="42", outputs=[encode_output("output0", values)]
    )
    body, json_length = render_response(response)
    assert json_length is None
    assert json.loads(body) == {
        "model_name": "mymodel",
        "id": "42",
        "outputs": [
            {
                "name": "output0",
                "shape": [3, 2],
                "datatype": "FP32",
                "data": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5],
            }
        ],
    }


@pytest.mark.parametrize("datatype", sorted(NUMPY_OF))
def test_every_datatype_round_trips_through_json(datatype: str) -> None:
    dtype = np.dtype(NUMPY_OF[datatype])
    if dtype.kind == "b":
        values: list[Any] = [True, False, False, True, True, False]
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = [int(info.min), int(info.max), 0, 1, int(info.max) - 1, 7]
    else:
        info_f = np.finfo(dtype)
        values = [float(info_f.max), float(info_f.min), float(info_f.tiny), -0.0, 0.5, -1.25]
    array = np.array(values, dtype=dtype).reshape(2, 1, 3)
    got_datatype, decoded = _through_json(array)
    assert got_datatype == datatype
    _assert_same(decoded, array)


def test_bytes_with_str_round_trip_as_an_object_array_of_str() -> None:
    array = np.array([["hello", ""], ["naïve ☃", 'tab\tquote"']])
    datatype, decoded = _through_json(array)
    assert datatype == "BYTES"
    assert decoded.dtype == object
    assert decoded.shape == (2, 2)
    assert decoded.tolist() == [["hello", ""], ["naïve ☃", 'tab\tquote"']]


def test_nested_and_flat_data_decode_to_the_same_array() -> None:
    expected = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]], dtype=np.float64)
    flat = RequestInput(name="x", shape=[2, 2, 2], datatype="FP64", data=[1, 2, 3, 4, 5, 6, 7, 8])
    nested = RequestInput(
        name="x", shape=[2, 2, 2], datatype="FP64", data=[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    )
    _assert_same(decode_input(flat), expected)
    _assert_same(decode_input(nested), expected)


def test_fp16_data_rounds_to_the_nearest_half_and_encodes_its_exact_value() -> None:
    decoded = decode_input(RequestInput(name="h", shape=[2], datatype="FP16", data=[0.1, 65504]))
    # 0.1 has no exact binary form; the nearest half is 1638 / 2**14.
    _assert_same(decoded, np.array([1638 / 2**14, 65504.0], dtype=np.float16))
    assert encode_output("h", decoded).data == [0.0999755859375, 65504.0]


def test_uint64_beyond_int64_decodes_exactly() -> None:
    inp = RequestInput(name="ids", shape=[3], datatype="UINT64", data=[0, 2**63, 2**64 - 1])
    decoded = decode_input(inp)
    assert decoded.dtype == np.uint64
    assert [int(v) for v in decoded] == [0, 2**63, 2**64 - 1]


def test_non_finite_outputs_travel_as_null_but_an_input_null_is_refused() -> None:
    out = encode_output("score", np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32))
    assert out.data == [1.0, None, None, None]
    # a request tensor takes no nulls, as /v1 takes none (QA finding 8): NaN only as binary data
    with pytest.raises(InferenceRequestError, match="input 's' element 1 is null"):
        decode_input(RequestInput(name="s", shape=[2], datatype="FP32", data=[2.5, None]))


def test_non_contiguous_arrays_encode_in_row_major_order() -> None:
    transposed = np.arange(6, dtype=np.int16).reshape(2, 3).T  # logical [[0, 3], [1, 4], [2, 5]]
    out = encode_output("t", transposed)
    assert (out.shape, out.datatype, out.data) == ([3, 2], "INT16", [0, 3, 1, 4, 2, 5])


def test_big_endian_arrays_encode_by_value() -> None:
    out = encode_output("b", np.array([1, 258], dtype=">u2"))
    assert (out.datatype, out.data) == ("UINT16", [1, 258])
    body, json_length = render_response(InferenceResponse(model_name="m", outputs=[out]), {"b"})
    assert json_length is not None
    assert body[json_length:] == struct.pack("<2H", 1, 258)


def test_zero_sized_tensors_decode_with_their_shape() -> None:
    decoded = decode_input(RequestInput(name="e", shape=[0, 3], datatype="INT64", data=[]))
    assert decoded.dtype == np.int64
    assert decoded.shape == (0, 3)


# --- JSON request errors: each names the input -------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3]}, "3 elements but shape [2, 2]"),
        ({"shape": [2], "datatype": "FLOAT32", "data": [1, 2]}, "datatype 'FLOAT32'"),
        ({"shape": [2], "datatype": "INT32", "data": ["1", "2"]}, "element 0 is str"),
        ({"shape": [2], "datatype": "FP32", "data": ["1", "2"]}, "string values"),
        ({"shape": [2], "datatype": "INT32", "data": [1.5, 2]}, "element 0 is float"),
        ({"shape": [2], "datatype": "INT64", "data": [True, False]}, "element 0 is bool"),
        ({"shape": [2], "datatype": "UINT8", "data": [0, 256]}, "outside the UINT8 range"),
        ({"shape": [1], "datatype": "UINT32", "data": [-1]}, "outside the UINT32 range"),
        ({"shape": [1], "datatype": "FP16", "data": [70000.0]}, "outside the FP16 range"),
        ({"shape": [1], "datatype": "FP32", "data": [1e39]}, "outside the FP32 range"),
        ({"shape": [2], "datatype": "FP32", "data": [None, "x"]}, "element 1 is str"),
        ({"shape": [2], "datatype": "BOOL", "data": [1, 0]}, "BOOL needs true/false"),
        ({"shape": [2], "datatype": "BYTES", "data": ["a", 1]}, "element 1 is int"),
        ({"shape": [2], "datatype": "FP64"}, "has no data"),
    ],
)
def test_bad_json_input_raises_an_error_naming_the_input(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InferenceRequestError) as caught:
        parse_request(_request(**fields))
    message = str(caught.value)
    assert "input 'pixel_values'" in message
    assert fragment in message
    assert isinstance(caught.value, ParityError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "invalid_inference_request"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"shape": [2], "dtype": "INT32", "data": [1, 2]}, "inputs.0.dtype"),
        ({"shape": [-1], "datatype": "INT32", "data": [1]}, "inputs.0.shape.0"),
        ({"shape": ["2"], "datatype": "INT32", "data": [1, 2]}, "inputs.0.shape.0"),
        ({"shape": [1], "datatype": "INT32", "data": 1}, "inputs.0.data"),
    ],
)
def test_malformed_input_fields_are_rejected_with_the_input_and_field_named(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InferenceRequestError) as caught:
        parse_request(_request(name="pixel_values", **fields))
    assert "input 'pixel_values'" in str(caught.value)
    assert fragment in str(caught.value)


def test_a_misspelt_top_level_field_is_rejected() -> None:
    body = _body({"input": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]})
    with pytest.raises(InferenceRequestError, match=r"inputs: Field required.*input: Extra"):
        parse_request(body)


def test_spec_extensions_in_parameters_are_accepted() -> None:
    body = _body(
        {
            "id": "req-1",
            "parameters": {"sequence_id": 7, "priority": 1, "binary_data_output": False},
            "inputs": [
                {
                    "name": "x",
                    "shape": [1],
                    "datatype": "FP32",
                    "parameters": {"content_type": "np"},
                    "data": [0.5],
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True, "classification": 2}}],
        }
    )
    request, tensors = parse_request(body)
    assert request.parameters == {"sequence_id": 7, "priority": 1, "binary_data_output": False}
    _assert_same(tensors["x"], np.array([0.5], dtype=np.float32))


def test_body_that_is_not_json_is_rejected() -> None:
    with pytest.raises(InferenceRequestError, match="not valid JSON"):
        parse_request(b"{inputs: nope")


def test_an_input_given_twice_is_rejected() -> None:
    one = {"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}
    with pytest.raises(InferenceRequestError, match="input 'x' appears more than once"):
        parse_request(_body({"inputs": [one, one]}))


# --- binary tensor data extension: requests -----------------------------------------------------


def _binary_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)


def test_binary_request_built_by_hand_decodes_each_input_in_order() -> None:
    body, json_length = _binary_body(
        {
            "inputs": [
                {
                    "name": "input0",
                    "shape": [2, 2],
                    "datatype": "UINT32",
                    "parameters": {"binary_data_size": 16},
                },
                {"name": "mask", "shape": [3], "datatype": "BOOL", "data": [True, True, False]},
                {
                    "name": "input1",
                    "shape": [3],
                    "datatype": "BOOL",
                    "parameters": {"binary_data_size": 3},
                },
                {
                    "name": "half",
                    "shape": [2],
                    "datatype": "FP16",
                    "parameters": {"binary_data_size": 4},
                },
                {
                    "name": "big",
                    "shape": [1],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": 8},
                },
            ]
        },
        struct.pack("<4I", 1, 2, 3, 0xFFFFFFFF),
        bytes([1, 0, 1]),
        struct.pack("<2e", 1.5, -0.25),
        struct.pack("<q", -(2**62)),
    )
    _, tensors = parse_request(body, json_length)
    _assert_same(tensors["input0"], np.array([[1, 2], [3, 0xFFFFFFFF]], dtype=np.uint32))
    _assert_same(tensors["mask"], np.array([True, True, False]))
    _assert_same(tensors["input1"], np.array([True, False, True]))
    _assert_same(tensors["half"], np.array([1.5, -0.25], dtype=np.float16))
    _assert_same(tensors["big"], np.array([-(2**62)], dtype=np.int64))


def test_binary_bytes_elements_are_length_prefixed() -> None:
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0) + struct.pack("<I", 2) + b"\xff\x00"
    body, json_length = _binary_body(
        {
            "inputs": [
                {
                    "name": "blobs",
                    "shape": [3, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        },
        raw,
    )
    _, tensors = parse_request(body, json_length)
    assert tensors["blobs"].dtype == object
    assert tensors["blobs"].tolist() == [[b"abc"], [b""], [b"\xff\x00"]]


def _one_binary_input(datatype: str, shape: list[int], size: Any, raw: bytes) -> tuple[bytes, int]:
    parameters = {"binary_data_size": size}
    header = {
        "inputs": [{"name": "blob", "shape": shape, "datatype": datatype, "parameters": parameters}]
    }
    return _binary_body(header, raw)


@pytest.mark.parametrize(
    ("datatype", "shape", "size", "raw", "fragment"),
    [
        (
            "UINT32",
            [2, 2],
            12,
            b"\0" * 12,
            "12 bytes of binary data but UINT32 shape [2, 2] needs 16",
        ),
        ("FP32", [4], 16, b"\0" * 8, "binary_data_size 16 but only 8 bytes follow"),
        ("INT8", [2], 2, b"\0" * 5, "3 bytes after the last input"),
        ("INT8", [2], -2, b"", "binary_data_size must be a byte count"),
        ("INT8", [2], "2", b"\0\0", "binary_data_size must be a byte count"),
        (
            "BYTES",
            [2],
            9,
            struct.pack("<I", 1) + b"a" + struct.pack("<I", 9),
            "not the 2 length-prefixed",
        ),
        ("BYTES", [1], 7, struct.pack("<I", 1) + b"ab" + b"\0\0", "not the 1 length-prefixed"),
        ("FP42", [1], 4, b"\0" * 4, "datatype 'FP42'"),
    ],
)
def test_bad_binary_input_raises_an_error_naming_the_input(
    datatype: str, shape: list[int], size: Any, raw: bytes, fragment: str
) -> None:
    body, json_length = _one_binary_input(datatype, shape, size, raw)
    with pytest.raises(InferenceRequestError) as caught:
        parse_request(body, json_length)
    assert fragment in str(caught.value)
    if "after the last input" not in fragment:
        assert "input 'blob'" in str(caught.value)


def test_binary_data_without_the_header_length_says_to_send_it() -> None:
    body, _ = _one_binary_input("INT32", [1], 4, struct.pack("<i", 5))
    with pytest.raises(InferenceRequestError, match=f"not valid JSON .*{HEADER_LENGTH} header"):
        parse_request(body, None)
    json_only, _ = _one_binary_input("INT32", [1], 4, b"")
    with pytest.raises(
        InferenceRequestError, match=f"input 'blob'.*send the {HEADER_LENGTH} header"
    ):
        parse_request(json_only, None)


def test_header_length_longer_than_the_body_is_rejected() -> None:
    with pytest.raises(
        InferenceRequestError, match=f"{HEADER_LENGTH} is 99 but the body has only 2"
    ):
        parse_request(b"{}", 99)


def test_input_with_both_data_and_binary_size_is_rejected() -> None:
    body, json_length = _binary_body(
        {
            "inputs": [
                {
                    "name": "both",
                    "shape": [1],
                    "datatype": "INT8",
                    "data": [1],
                    "parameters": {"binary_data_size": 1},
                }
            ]
        },
        b"\x01",
    )
    with pytest.raises(
        InferenceRequestError, match="input 'both' has both data and binary_data_size"
    ):
        parse_request(body, json_length)


# --- binary tensor data extension: responses ----------------------------------------------------


def test_binary_outputs_follow_the_request_flags_with_per_output_override() -> None:
    request = InferenceRequest.model_validate(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [],
            "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
        }
    )
    assert binary_output_names(request, ["a", "b", "c"]) == {"b", "c"}
    only_a = InferenceRequest.model_validate(
        {
            "inputs": [],
            "outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}],
        }
    )
    assert binary_output_names(only_a, ["a", "b"]) == {"a"}
    assert binary_output_names(InferenceRequest(inputs=[]), ["a"]) == frozenset()


def test_a_non_boolean_binary_flag_is_rejected_naming_the_output() -> None:
    request = InferenceRequest.model_validate(
        {"inputs": [], "outputs": [{"name": "probs", "parameters": {"binary_data": "yes"}}]}
    )
    with pytest.raises(InferenceRequestError, match="output 'probs' parameter binary_data"):
        binary_output_names(request, ["probs"])


def test_binary_response_parses_back_by_hand() -> None:
    probs = np.array([[0.25, 0.75], [np.nan, -np.inf]], dtype=np.float32)
    response = InferenceResponse(
        model_name="m",
        model_version="3",
        outputs=[
            encode_output("probs", probs),
            encode_output("label", np.array(["cat", "dog"])),
            encode_output("tokens", np.array([b"\xff", b"ok"], dtype=object)),
        ],
    )
    body, json_length = render_response(response, frozenset({"probs", "tokens"}))
    assert json_length is not None
    header = json.loads(body[:json_length])
    assert header["model_version"] == "3"
    probs_out, label_out, tokens_out = header["outputs"]
    assert probs_out == {
        "name": "probs",
        "shape": [2, 2],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 16},
    }
    assert label_out["data"] == ["cat", "dog"]
    assert "parameters" not in label_out
    assert tokens_out["parameters"] == {"binary_data_size": 4 + 1 + 4 + 2}
    assert "data" not in probs_out and "data" not in tokens_out
    tail = body[json_length:]
    values = struct.unpack("<4f", tail[:16])
    assert values[:2] == (0.25, 0.75)
    assert np.isnan(values[2]) and values[3] == float("-inf")
    assert tail[16:] == struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 2) + b"ok"


def test_hand_built_output_renders_as_binary_from_its_data() -> None:
    output = ResponseOutput(name="y", shape=[3], datatype="INT16", data=[-1, 0, 300])
    body, json_length = render_response(InferenceResponse(model_name="m", outputs=[output]), {"y"})
    assert json_length is not None
    assert body[json_length:] == struct.pack("<3h", -1, 0, 300)


def test_non_utf8_bytes_cannot_render_as_json_and_the_error_says_use_binary() -> None:
    response = InferenceResponse(
        model_name="m", outputs=[encode_output("raw", np.array([b"\xff\xfe"], dtype=object))]
    )
    with pytest.raises(TensorEncodingError, match=r"output 'raw'.*binary_data = true"):
        render_response(response)


@pytest.mark.parametrize(
    "array",
    [
        np.array([1 + 2j], dtype=np.complex64),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.array([1, "a"], dtype=object),
    ],
)
def test_unsupported_output_dtypes_raise_naming_the_output(array: NDArray[Any]) -> None:
    with pytest.raises(TensorEncodingError, match="output 'embedding'") as caught:
        encode_output("embedding", array)
    assert isinstance(caught.value, ParityError)
    assert caught.value.code == "unsupported_output_tensor"


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_messages_validate_spec_examples() -> None:
    server = ServerMetadata.model_validate(
        {"name": "parity", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    )
    assert server.extensions == ["binary_tensor_data"]
    model = ModelMetadata.model_validate(
        {
            "name": "fraud",
            "versions": ["1", "2"],
            "platform": "sklearn",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 12]}],
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}],
        }
    )
    assert model.inputs[0].shape == [-1, 12]
    with pytest.raises(ValueError, match="platfrom"):
        ModelMetadata.model_validate({**model.model_dump(), "platfrom": "x"})


def test_stdlib_json_is_the_fallback_when_orjson_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes `import orjson` raise ImportError
    loads, dumps = oip._json_backend()
    assert loads is json.loads
    assert dumps({"data": [1, 2.5, None, "é"]}) == b'{"data":[1,2.5,null,"\\u00e9"]}'


# --- properties ----------------------------------------------------------------------------------

NUMERIC = [np.dtype(t) for t in NUMPY_OF.values()]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def _arrays(draw: st.DrawFn, finite: bool) -> NDArray[Any]:
    dtype = draw(st.sampled_from(NUMERIC))
    kwargs = {"allow_nan": False, "allow_infinity": False} if finite and dtype.kind == "f" else {}
    return draw(hnp.arrays(dtype, SHAPES, elements=hnp.from_dtype(dtype, **kwargs)))


@settings(max_examples=200, deadline=None)
@given(_arrays(finite=True))
def test_numeric_arrays_round_trip_through_json_exactly(array: NDArray[Any]) -> None:
    datatype, decoded = _through_json(array)
    assert NUMPY_OF[datatype] == array.dtype.type
    _assert_same(decoded, array)


@settings(max_examples=200, deadline=None)
@given(_arrays(finite=False))
def test_numeric_arrays_round_trip_through_binary_bit_for_bit(array: NDArray[Any]) -> None:
    response = InferenceResponse(model_name="m", outputs=[encode_output("t", array)])
    body, json_length = render_response(response, {"t"})
    assert json_length is not None
    (out,) = json.loads(body[:json_length])["outputs"]
    assert out["parameters"]["binary_data_size"] == array.size * array.dtype.itemsize
    request = {"inputs": [{key: out[key] for key in ("name", "shape", "datatype", "parameters")}]}
    request_body, request_length = _binary_body(request, body[json_length:])
    _, tensors = parse_request(request_body, request_length)
    _assert_same(tensors["t"], array)
