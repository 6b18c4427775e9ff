"""canonical() is byte-identical to rfc8785; parse_canonical() refuses non-canonical bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    MAX_SAFE_INTEGER,
    canonical,
    canonical_reference,
    digest,
    nfc,
    parse_canonical,
)
from protocol.errors import NonCanonicalError

CORPUS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    MAX_SAFE_INTEGER,
    -MAX_SAFE_INTEGER,
    2**53 - 2,
    2**31,
    -(2**31),
    "",
    "plain",
    "é ü ß 中文 全血",
    "\u2028\u2029",
    "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1e\x1f\x7f",
    '"quote" \\backslash/ slash',
    "😀 emoji 𝄞 and \U0001f9ec dna",
    "\ue000\uffff\ufffd",
    [],
    {},
    [[]],
    [{}],
    {"": ""},
    {"a": {}},
    {"a": []},
    {"b": 1, "a": 2, "c": {"z": [1, 2, {"y": None, "x": True}], "aa": "é"}},
    # key order: UTF-16 code units, not code points (astral sorts before U+E000..U+FFFF)
    {"\ue000": 1, "😀": 2, "a": 3, "\uffff": 4, "𝄞": 5, "Z": 6, "é": 7, "": 8},
    {"outer": {"\ufb01": 1, "\U0001f600x": 2}, "list": [{"\U00010000": 0, "\ud7ff": 1}]},
    {"\u2028key": "\u2029value", "ctl\x01": "\x1f", 'esc"\\': "/"},
    {
        "id": "grp_abc",
        "age": {"min": 40, "max": 49},
        "nonce": "0" * 32,
        "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
        "n": MAX_SAFE_INTEGER,
    },
    [1, "a", None, True, [False, {"k": -MAX_SAFE_INTEGER}]],
]


@pytest.mark.parametrize("value", CORPUS, ids=range(len(CORPUS)))
def test_canonical_equals_reference(value: Any) -> None:
    expected = canonical_reference(value)
    assert canonical(value) == expected
    assert parse_canonical(expected) == json.loads(expected)


def test_utf16_key_order_differs_from_code_point_order() -> None:
    out = canonical({"\ue000": 1, "😀": 2})
    assert out == '{"😀":2,"\ue000":1}'.encode()


def test_escapes_follow_ecmascript() -> None:
    assert canonical("\x00\x08\x1f\u2028\x7f") == b'"\\u0000\\b\\u001f\xe2\x80\xa8\x7f"'


@pytest.mark.parametrize(
    ("value", "pointer", "reason"),
    [
        (1.5, "/", "floats are not allowed"),
        ({"a": [1, 2.0]}, "/a/1", "floats are not allowed"),
        ({"n": 2**53}, "/n", "outside"),
        ([-(2**53)], "/0", "outside"),
        ({"s": "e\u0301"}, "/s", "not NFC"),
        ({"e\u0301": 1}, "/e\u0301", "key is not NFC"),
        ({1: "x"}, "/", "keys must be strings"),
        ({"a/b~": {"x": b"bytes"}}, "/a~1b~0/x", "type bytes"),
    ],
)
def test_canonical_rejects_with_pointer(value: Any, pointer: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical(value)
    assert f"cannot canonicalise {pointer}=" in str(info.value)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1, "b":2}',  # whitespace
        b' {"a":1}',
        b'{"a":1}\n',
        b'{"b":1,"a":2}',  # key order
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":1,"a":2}',
        b'"\\u00e9"',  # needless escape
        b'"\\/"',
        b'"\\u001F"',  # upper-case hex escape
        b'"\x01"',  # raw control character (not even valid JSON)
        b"1.0",  # float forms
        b"1e2",
        b"1.5",
        b"-0",
        b"01",
        b"9007199254740992",  # beyond 2^53-1
        b'"e\xcc\x81"',  # non-NFC (e + combining acute)
        b'{"\xee\x80\x80":1,"\xf0\x9f\x98\x80":2}',  # code point order instead of UTF-16 order
        b'"\xff"',  # invalid UTF-8
        b"",
        b'{"a":tru}',
    ],
)
def test_parse_canonical_rejects(data: bytes) -> None:
    with pytest.raises(NonCanonicalError):
        parse_canonical(data, what="leaf 3")


def test_parse_canonical_names_what() -> None:
    with pytest.raises(NonCanonicalError, match=r"^leaf 17 is not in RFC 8785 canonical form"):
        parse_canonical(b'{"b":1,"a":2}', what="leaf 17")


def test_digest_is_sha256_of_canonical_bytes() -> None:
    assert digest({}) == ("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    assert digest({"b": 1, "a": "x"}) == digest({"a": "x", "b": 1})


def test_nfc_normalises_keys_and_values() -> None:
    value = nfc({"e\u0301": ["e\u0301", 1, None]})
    assert value == {"\u00e9": ["\u00e9", 1, None]}
    assert canonical(value) == canonical_reference(value)


_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=6).map(nfc)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12).map(nfc)
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(_json)
def test_property_canonical_equals_reference_and_round_trips(value: Any) -> None:
    data = canonical_reference(value)
    assert canonical(value) == data
    assert canonical(parse_canonical(data)) == data
