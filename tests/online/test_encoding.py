from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.errors import EntityFrameError
from parity.online.encoding import (
    HEADER_CHARS,
    OnlineRow,
    decode_value,
    encode_value,
    entity_key,
    header,
)


def test_entity_keys_differ_by_name_type_and_value() -> None:
    keys = {
        entity_key(["account_id"], [1]),
        entity_key(["device_id"], [1]),
        entity_key(["account_id"], ["1"]),
        entity_key(["account_id"], [2]),
        entity_key(["account_id", "device_id"], [1, "d"]),
        entity_key(["device_id", "account_id"], ["d", 1]),
    }
    assert len(keys) == 6


def test_entity_key_is_canonical() -> None:
    assert entity_key(["a"], [7]) == b"\x01\x01ai" + (7).to_bytes(8, "big", signed=True)
    assert entity_key(["s"], ["é"]) == b"\x01\x01ss" + (2).to_bytes(4, "big") + "é".encode()


@pytest.mark.parametrize("bad", [True, 1.5, None, b"x"])
def test_entity_key_rejects_values_that_are_not_ints_or_strings(bad: object) -> None:
    with pytest.raises(EntityFrameError, match="integers or strings"):
        entity_key(["a"], [bad])


@given(
    st.tuples(st.integers(-(2**62), 2**62), st.integers(-(2**62), 2**62)),
    st.tuples(st.integers(-(2**62), 2**62), st.integers(-(2**62), 2**62)),
)
def test_header_byte_order_is_time_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert len(header(*a)) == HEADER_CHARS
    assert (header(*a) <= header(*b)) == (a <= b)


def test_value_round_trip() -> None:
    values = {
        "f": 1.5,
        "n": -3,
        "s": "x",
        "b": b"\x00\xff",
        "none": None,
        "arr": [1, 2],
        "ok": True,
    }
    row = OnlineRow("v", b"k", -5, 1_700_000_000_000_000, values)
    assert decode_value("v", b"k", encode_value(row)) == row
