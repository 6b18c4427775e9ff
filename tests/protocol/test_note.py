"""Signed notes and checkpoints: the Go sumdb/note known answers, tampering, unknown keys."""

from __future__ import annotations

import base64

import pytest

from protocol.errors import ConfigError, MalformedEntry, OriginMismatch, SignatureError
from protocol.note import (
    Checkpoint,
    Signer,
    Verifier,
    generate_key,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)

# golang.org/x/mod/sumdb/note example (note_test.go / example_test.go)
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1"
    "FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_known_answer_verifies() -> None:
    verifier = Verifier.from_key(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id.hex() == "c74f20a3"
    assert verifier.vkey == GO_VKEY
    text, signed_by = open_note(GO_NOTE, [verifier])
    assert text == GO_TEXT
    assert signed_by == [verifier]


def test_go_signer_reproduces_the_known_signature() -> None:
    signer = Signer.from_key(GO_SKEY)
    assert signer.vkey == GO_VKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


@pytest.mark.parametrize("position", [0, 10, len(GO_TEXT) - 2])
def test_changed_text_byte_fails(position: int) -> None:
    swap = "X" if GO_NOTE[position] != "X" else "Y"
    changed = GO_NOTE[:position] + swap + GO_NOTE[position + 1 :]
    with pytest.raises(SignatureError, match="invalid signature by known key PeterNeumann"):
        open_note(changed, [Verifier.from_key(GO_VKEY)])


def test_changed_signature_byte_fails() -> None:
    sig_line = GO_NOTE.split("\n")[-2]
    raw = bytearray(base64.b64decode(sig_line.split(" ")[-1]))
    raw[10] ^= 1
    bad = GO_NOTE.replace(sig_line.split(" ")[-1], base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(bad, [Verifier.from_key(GO_VKEY)])


def test_unknown_key_signature_is_ignored() -> None:
    other_skey, other_vkey = generate_key("someone-else")
    both = sign_note(GO_TEXT, [Signer.from_key(other_skey), Signer.from_key(GO_SKEY)])
    text, signed_by = open_note(both, [Verifier.from_key(GO_VKEY)])
    assert text == GO_TEXT
    assert [v.vkey for v in signed_by] == [GO_VKEY]


def test_no_known_signature_raises() -> None:
    _, other_vkey = generate_key("PeterNeumann")  # same name, different key id
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        open_note(GO_NOTE, [Verifier.from_key(other_vkey)])
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        open_note(GO_NOTE, [])


def test_known_key_signing_twice_is_malformed() -> None:
    lines = GO_NOTE.split("\n")
    twice = GO_NOTE + lines[-2] + "\n"
    with pytest.raises(SignatureError, match="signed twice"):
        open_note(twice, [Verifier.from_key(GO_VKEY)])


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,  # no signatures at all
        GO_NOTE[:-1],  # no final newline
        GO_TEXT + "\n- PeterNeumann AAAA\n",  # hyphen instead of em dash
        GO_TEXT + "\n\u2014 PeterNeumann !!!!\n",  # not base64
        GO_TEXT + "\n\u2014 PeterNeumann AAAA\n",  # too short to hold an id and a signature
        GO_TEXT + "\n\u2014  AAAAAAAA\n",  # empty name
        GO_NOTE.replace("you don't", "you\x01don't"),
    ],
)
def test_malformed_notes_raise(note: str) -> None:
    with pytest.raises(SignatureError, match="malformed note|invalid signature"):
        open_note(note, [Verifier.from_key(GO_VKEY)])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3+ApRc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong algorithm
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+zzzzzzzz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_verifier_keys_raise_config_error(vkey: str) -> None:
    with pytest.raises(ConfigError):
        Verifier.from_key(vkey)


def test_bad_signer_key_does_not_echo_the_secret() -> None:
    bad = GO_SKEY.replace("+c74f20a3+", "+00000000+")
    with pytest.raises(ConfigError) as info:
        Signer.from_key(bad)
    assert "AYEKFALV" not in str(info.value)
    with pytest.raises(ConfigError):
        Signer.from_key("PRIVATE+KEY+x")


def test_generated_keys_round_trip() -> None:
    skey, vkey = generate_key("example.org/node")
    signer = Signer.from_key(skey)
    assert signer.vkey == vkey
    assert Verifier.from_key(vkey).verify(b"msg", signer.sign(b"msg"))
    assert not Verifier.from_key(vkey).verify(b"msh", signer.sign(b"msg"))


def test_checkpoint_round_trip_and_verify() -> None:
    skey, vkey = generate_key("example.org/node")
    cp = Checkpoint("example.org/node", 42, bytes(range(32)))
    assert cp.to_text() == (
        "example.org/node\n42\n" + base64.b64encode(bytes(range(32))).decode() + "\n"
    )
    note = sign_checkpoint(cp, [Signer.from_key(skey)])
    assert verify_checkpoint(note, [Verifier.from_key(vkey)], "example.org/node") == cp
    with pytest.raises(OriginMismatch, match="expected 'other.org/node'"):
        verify_checkpoint(note, [Verifier.from_key(vkey)], "other.org/node")


def test_checkpoint_accepts_extension_lines() -> None:
    root = base64.b64encode(bytes(32)).decode()
    cp = Checkpoint.from_text(f"o\n1\n{root}\nextra line\n")
    assert cp.extensions == ("extra line",)
    assert cp.size == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("o\n1\n", "needs at least 3"),
        ("o\n01\n" + "A" * 43 + "=\n", "not a decimal"),
        ("o\n-1\n" + "A" * 43 + "=\n", "not a decimal"),
        ("o\n+1\n" + "A" * 43 + "=\n", "not a decimal"),
        ("o\n1\nAAAA\n", "not 32"),
        ("o\n1\n%%%%\n", "not base64"),
        ("\n1\n" + "A" * 43 + "=\n", "origin line is empty"),
        ("o\n1\n" + "A" * 43 + "=", "newline"),
        ("o\n1\n" + "A" * 43 + "=\n\n", "empty extension"),
    ],
)
def test_malformed_checkpoint_bodies(body: str, reason: str) -> None:
    with pytest.raises(MalformedEntry, match=reason):
        Checkpoint.from_text(body)
