"""canonical_parsed() (orjson's bytes when ASCII and float-free) equals the reference on values
parsed from JSON, and refuses exactly what canonical() refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    MAX_SAFE_INTEGER,
    canonical,
    canonical_parsed,
    canonical_reference,
    digest,
    parsed_digest,
)
from tests.protocol.test_canonical import CORPUS


def _same(value: Any) -> None:
    """canonical_parsed gives canonical()'s bytes (the reference's), or the same ValueError."""
    try:
        expected = canonical(value)
    except ValueError as exc:
        with pytest.raises(ValueError) as info:
            canonical_parsed(value)
        assert str(info.value) == str(exc)
        return
    assert canonical_parsed(value) == expected == canonical_reference(value)
    assert parsed_digest(value) == digest(value)


@pytest.mark.parametrize("value", CORPUS, ids=range(len(CORPUS)))
def test_canonical_parsed_agrees_with_reference_on_the_corpus(value: Any) -> None:
    _same(orjson.loads(orjson.dumps(value)))


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1.5}',
        b'{"a":[1,2.0]}',
        b"[1e20]",
        b"-0.0",
        b'{"age":{"max":49.0,"min":40}}',
        b'{"deep":[[[{"x":[0.5]}]]]}',
        b'{"n":9007199254740992}',  # 2^53: beyond the safe range
        b'{"s":"e\\u0301"}',  # not NFC
        b'{"e\\u0301":1}',
        b'{"\\ue000":1,"\\ud83d\\ude00":2}',  # astral key: UTF-16 order
        b'{"b":"x,5.3","a":"C50.9"}',  # a float-looking string is no float
        b'{"t":true,"f":false,"z":null}',
    ],
)
def test_canonical_parsed_refuses_what_canonical_refuses(text: bytes) -> None:
    _same(orjson.loads(text))


_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, database=None)
@given(_json)
def test_property_canonical_parsed_agrees_with_reference(value: Any) -> None:
    try:
        parsed = orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:  # integers beyond 64 bits: never parsed from a page
        return
    _same(parsed)
