"""decode_payloads (issue 19) decodes the stored payloads of a read. A corrupt payload (truncated,
or with bytes after its map) must fail as decode_payload fails on it alone, never be read across
its neighbour's bytes into another row's values (as one msgpack call over them all did)."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from parity.online.encoding import decode_payload, decode_payloads


def test_a_truncated_payload_never_takes_its_neighbours_bytes_as_values() -> None:
    # A bytes value cut short by 3 bytes: read on, it takes the next payload's map header and
    # key (b'\x81\xa1y') as its last bytes, and the next row becomes that key's map value.
    truncated = msgpack.packb({"blob": b"abcde"}, use_bin_type=True)[:-3]
    neighbour = msgpack.packb({"y": {"a": 1}})
    with pytest.raises(ValueError):
        decode_payload(truncated)
    with pytest.raises(ValueError):
        decode_payloads([truncated, neighbour])


def test_a_truncated_payload_never_realigns_on_its_neighbours_insides() -> None:
    # Cut 5 bytes short, the bytes value takes what follows it up to the inside of the next
    # payload's list, whose [nil, map] then reads as a frame's nil and map: whatever marks the
    # frame between payloads, contents can mimic it. Only decoding each alone is safe.
    truncated = msgpack.packb({"blob": b"abcdefgh"}, use_bin_type=True)[:-5]
    neighbour = msgpack.packb({"y": [None, {"a": 1}]})
    with pytest.raises(ValueError):
        decode_payload(truncated)
    with pytest.raises(ValueError):
        decode_payloads([truncated, neighbour])


def _value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(8 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random()
    if kind == 2:
        return rnd.randrange(-300, 300)
    if kind == 3:
        return "".join(rnd.choice("ab\u00e9") for _ in range(rnd.randrange(6)))
    if kind == 4:
        return rnd.randbytes(rnd.randrange(6))
    if kind == 5:
        return [_value(rnd, depth + 1) for _ in range(rnd.randrange(3))]
    return {rnd.choice("abxyz"): _value(rnd, depth + 1) for _ in range(rnd.randrange(3))}


def test_any_one_corrupt_payload_fails_the_batch_as_it_fails_alone() -> None:
    rnd = random.Random(19)
    checked = 0
    for _ in range(20_000):
        payloads = [
            msgpack.packb(
                {rnd.choice(["x", "y", "blob"]): _value(rnd) for _ in range(rnd.randrange(1, 4))},
                use_bin_type=True,
            )
            for _ in range(rnd.randrange(2, 5))
        ]
        bad = rnd.randrange(len(payloads))
        if rnd.random() < 0.7:
            payloads[bad] = payloads[bad][: -rnd.randrange(1, 4)]
        else:
            payloads[bad] += rnd.randbytes(rnd.randrange(1, 4))
        try:
            decode_payload(payloads[bad])
        except Exception as alone:
            checked += 1
            with pytest.raises(type(alone)):
                decode_payloads(payloads)
    assert checked > 10_000
