"""The audit's fast paths (issue 19) give the reference results.

`group_key` is built without generic calls and remembers code lists: it must equal
`(*combo_key(g), *bounds(samples), *bounds(donors))` on awkward groups. `line_ranges` cuts a
bundle file into blocks of whole lines that worker processes read themselves: read back, they
must be exactly the lines Python's line iterator reads, in order, counted right; and a whole
audit whose workers read those ranges reports what the serial audit reports.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.checks
from audit.checks import AuditOptions, run_audit
from audit.fetcher import (
    BundleSource,
    HttpSource,
    LineBlock,
    RecordingSource,
    decode_line,
    line_ranges,
    read_lines,
)
from audit.livestate import SETS, Chapters, bounds, combo_key, group_key
from federation.servers import live_server
from protocol.merkle import CompactRange, append_subtree, leaf_hash, range_subtrees
from tests.audit.conftest import DE, FR, make_world
from tests.audit.sim import K, group


def _awkward_groups() -> list[dict[str, Any]]:
    base = group(1, "bbmri-eric:ID:DE_X", "bbmri-eric:ID:DE_X:collection:a")
    out = [base, group(2, "bbmri-eric:ID:DE_X", "bbmri-eric:ID:DE_X:collection:a")]
    diagnoses = [
        [],
        [{"system": "ICD-10", "code": "C50.9"}, {"system": "ICD-10", "code": "C18"}],
        [{"system": "ICD-10", "code": "Z99.9"}, {"system": "ORPHA", "code": "ORPHA:558"}],
        [{"system": "ICD-10", "code": "U07.1"}, {"system": "ICD-10", "code": "E11.9"}] * 2,
    ]
    for n, diag in enumerate(diagnoses):
        out.append({**base, "diagnoses": diag, "samples": {"lt": K + n}, "donors": n + 1})
    for uses in ([], ["DUO:0000042", "DUO:0000007", "DUO:0000042"], ["DUO:0000007"]):
        out.append({**base, "use_conditions": uses, "dataset_types": list(reversed(uses))})
    for missing in ("diagnoses", "use_conditions", "dataset_types", "sex", "collection"):
        out.append({k: v for k, v in base.items() if k != missing})
    return out


def test_group_key_equals_the_combo_key_and_bounds_reference() -> None:
    chapters = Chapters()
    for g in _awkward_groups() * 2:  # the second round is answered from the remembered lists
        reference = (*combo_key(g, Chapters()), *bounds(g["samples"]), *bounds(g["donors"]))
        assert group_key(g, chapters) == reference, g


def test_group_key_code_lists_remembered_stay_bounded() -> None:
    chapters = Chapters()
    base = group(1, "bbmri-eric:ID:DE_X", "bbmri-eric:ID:DE_X:collection:a")
    for n in range(SETS + 10):
        uses = [f"DUO:{n:07d}", "DUO:0000042"]
        key = group_key({**base, "use_conditions": uses}, chapters)
        assert key[6] == tuple(sorted(set(uses)))
        assert len(chapters.sets) <= SETS


@pytest.mark.parametrize("seed", range(4))
def test_line_blocks_hold_the_lines_the_line_iterator_reads(seed: int, tmp_path: Path) -> None:
    """Blocks cover exactly the first `end` lines (a last line without a newline counts),
    each about `size` lines (never none, a line longer than the rest whole), at any read
    size; a worker reads each block's lines back from the file."""
    rng = random.Random(seed)
    path = tmp_path / "mirror.jsonl"
    for _ in range(300):
        n = rng.randint(0, 30)
        lines = [bytes(rng.choice(b'ab{}"') for _ in range(rng.randint(0, 9))) for _ in range(n)]
        if n and rng.random() < 0.3:
            lines[rng.randrange(n)] = b"x" * rng.randint(20, 60)  # a line longer than a block
        data = b"\n".join(lines) + (b"\n" if n and rng.random() < 0.7 else b"")
        path.write_bytes(data)
        end, size = rng.randint(0, 40), rng.randint(1, 7)
        expected = [x.rstrip(b"\n") for x in list(io.BytesIO(data))[:end]]
        with open(path, "rb") as fh:
            ranges = list(line_ranges(fh, end, size, read=rng.randint(1, 9)))
        blocks = [LineBlock(str(path), *r) for r in ranges]
        assert [x for b in blocks for x in read_lines(b)] == expected, (data, end, size)
        assert [len(read_lines(b)) for b in blocks] == [b.lines for b in blocks]
        assert all(b.lines > 0 for b in blocks)
        starts = [0] + [b.offset + b.length for b in blocks]
        assert [b.offset for b in blocks] == starts[: len(blocks)]


def _bundle_report(path: Path, workers: int) -> dict[str, Any]:
    report, _state = run_audit(
        BundleSource(path), state=None, options=AuditOptions(workers=workers, parallel_min=1)
    )
    return report.to_json()


def test_workers_read_the_bundle_lines_the_serial_audit_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle fetched from a live catalogue, then one mirror file given lines beyond its
    checkpoint (never read) and the other's last newline taken away: workers reading their
    own byte ranges report exactly what the serial audit reports, and it passes."""
    monkeypatch.setattr(audit.checks, "CHUNK", 5)  # several ranges per mirror
    world = make_world()
    with live_server(world.cat.app()) as server:
        source = RecordingSource(HttpSource(catalogue=server.url), tmp_path)
        try:
            run_audit(source, state=None, options=AuditOptions())
        finally:
            source.close()
    meta = json.loads((tmp_path / "bundle.json").read_text("utf-8"))
    files = [tmp_path / meta["mirrors"][origin]["file"] for origin in (DE, FR)]
    with open(files[0], "ab") as fh:
        fh.write(b'{"leaf": "not even base64!"}\n' * 3)
    files[1].write_bytes(files[1].read_bytes().rstrip(b"\n"))
    serial = _bundle_report(tmp_path, 1)
    assert serial["ok"] is True, serial
    assert _bundle_report(tmp_path, 2) == serial


@pytest.mark.parametrize(
    "leaf",
    ["eyJhIjoxfQ==", "not base64!", "YQ", "YQ===", "Y Q==", "é", "YWJj\n", 5, None]
    + ["QR==", "QUI=", "QUJ=", "=QUI", "QUI==", "QU=I", "QUJD\u00e9", "Q\x00==", ""],
)
def test_bundle_line_leaf_decodes_as_strict_b64decode(leaf: Any) -> None:
    """`decode_line` decodes the leaf with binascii directly: the same bytes, or the same
    error type and message, as `base64.b64decode(leaf, validate=True)`."""
    line = json.dumps({"leaf": leaf, "content": None}).encode()
    try:
        expected: Any = base64.b64decode(leaf, validate=True)
    except (TypeError, ValueError) as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = decode_line(line)[0]
    except (TypeError, ValueError) as exc:
        got = (type(exc), str(exc))
    assert got == expected


@pytest.mark.parametrize("seed", range(4))
def test_range_subtrees_rebuild_the_tree_appended_leaf_by_leaf(seed: int) -> None:
    """A worker hands back its leaves' tree as aligned perfect subtrees; appended to the
    compact range of the leaves before them, they give the tree (root and frontier) that
    appending every leaf gives, for chunks of any start and length."""
    rng = random.Random(seed)
    leaves = [leaf_hash(rng.randbytes(20)) for _ in range(700)]
    whole, chunked = CompactRange(), CompactRange()
    start = 0
    while start < len(leaves):
        n = rng.choice([1, 2, 3, 5, 64, 100, 128, 257])
        part = leaves[start : start + n]
        for height, root in range_subtrees(start, b"".join(part)):
            append_subtree(chunked, height, root)
        whole.extend(part)
        start += len(part)
        assert chunked == whole
        assert chunked.root() == whole.root()
    assert range_subtrees(5, b"") == ()


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=40),
    edit=st.tuples(st.integers(0, 60), st.sampled_from(["", "=", "==", "A", " ", "\n", "-", "é"])),
)
def test_fast_base64_decoder_equals_strict_b64decode(raw: bytes, edit: tuple[int, str]) -> None:
    """The leaf's base64 is decoded by pybase64 first (kept only when it encodes back to the
    same text): canonical text and text edited anywhere (padding, stray or non-ASCII
    characters) give `base64.b64decode(leaf, validate=True)`'s bytes or its error type."""
    text = base64.b64encode(raw).decode()
    at, insert = edit
    for leaf in (text, text[:at] + insert + text[at:], text[:at] + text[at + 1 :]):
        try:
            expected: Any = base64.b64decode(leaf, validate=True)
        except ValueError as exc:
            expected = type(exc)
        try:
            got: Any = decode_line(json.dumps({"leaf": leaf}).encode())[0]
        except ValueError as exc:
            got = type(exc)
        assert got == expected, leaf
