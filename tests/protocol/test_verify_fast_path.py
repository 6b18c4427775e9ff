"""StepVerifier.feed's fast path (issue 19 item 4): the schema's compiled verdict asked
directly, the canonical bytes handed on. Every verdict must equal the full check's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from protocol.canonical import bytes_digest, canonical, digest
from protocol.entries import make_entry
from protocol.errors import DigestMismatch
from protocol.verify import StepVerifier, VerifiedEntry
from tests.protocol.test_verify import ORIGIN, SAMPLE_ID, SCHEMAS, TIME, LogSim

BIOBANK_ID = "https://w3id.org/biobank-federation/schemas/v1/biobank.schema.json"


def _feed_all(sim: LogSim) -> tuple[StepVerifier, list[VerifiedEntry]]:
    step = StepVerifier(None, sim.checkpoint(), [sim.verifier], SCHEMAS)
    entries = [step.feed(leaf, content) for leaf, content in sim.pairs()]
    step.finish()
    return step, entries


def _publish_as(sim: LogSim, entry_id: str, record: Any, schema: str, kind: str) -> None:
    sim.append(
        make_entry(
            log=ORIGIN,
            index=len(sim.leaves),
            op="publish",
            kind=kind,
            id=entry_id,
            schema=schema,
            digest=digest(record),
            time=TIME,
        ),
        record,
    )


def test_fed_entry_carries_the_canonical_bytes_it_hashed() -> None:
    sim = LogSim()
    record = {"sex": "female", "id": "s0"}  # not in key order: the body is sorted
    sim.publish(record)
    sim.withdraw("s0")
    _step, (published, withdrawn) = _feed_all(sim)
    assert published.body == canonical(record) == b'{"id":"s0","sex":"female"}'
    assert bytes_digest(published.body) == published.entry["digest"]
    assert withdrawn.body is None and withdrawn.content is None


def test_schema_verdicts_of_the_fast_path_equal_the_full_check() -> None:
    """Each way a record can fail its schema check, next to valid ones: the same rejections
    (index, id, field, reason) as the problem list gives, and valid records accepted."""
    sim = LogSim()
    sim.publish({"id": "ok0", "sex": "female"})
    sim.publish({"id": "bad-value", "sex": "Weiblich"})  # fails the schema
    sim.publish({"id": "extra", "sex": "male", "x": 1})  # additionalProperties
    _publish_as(sim, "b1", {"id": "b1"}, BIOBANK_ID, "sample-group")  # schema of another kind
    _publish_as(sim, "s4", {"id": "other", "sex": "male"}, SAMPLE_ID, "sample-group")  # id
    _publish_as(sim, "s5", {"id": "s5"}, "https://example.org/v9/x.json", "sample-group")
    _publish_as(sim, "s6", ["not", "an", "object"], SAMPLE_ID, "sample-group")
    sim.publish({"id": "ok7", "sex": "male"})
    step, entries = _feed_all(sim)
    got = [(r.index, r.id, r.problems[0].field) for r in step.rejections]
    assert got == [
        (1, "bad-value", "/sex"),
        (2, "extra", "/x"),
        (3, "b1", "/"),
        (4, "s4", "/id"),
        (5, "s5", "/"),
        (6, "s6", "/"),
    ]
    reasons = {r.index: r.problems[0].reason for r in step.rejections}
    assert "schema is for biobank records" in reasons[3]
    assert "record id differs" in reasons[4]
    assert "unknown schema" in reasons[5]
    assert [e.accepted for e in entries] == [True, False, False, False, False, False, False, True]
    for e in entries:  # the problems a VerifiedEntry carries are its rejection's
        expected = [r.problems for r in step.rejections if r.index == e.index]
        assert list(e.problems) == (list(expected[0]) if expected else [])


@pytest.mark.parametrize("value", [1.0, 1e21, 0.5])
def test_a_digest_over_orjson_bytes_of_a_float_is_refused(value: float) -> None:
    """A node that hashed orjson's bytes of a record holding a float (not its RFC 8785
    bytes, which write 1.0 as 1 and 1e21 as 1e+21) is refused, and so is any float (no
    canonical form in this protocol): the bytes kept for the store are only ever canonical."""
    sim = LogSim()
    record = {"id": "s0", "sex": "female", "n": value}
    sim.append(
        make_entry(
            log=ORIGIN,
            index=0,
            op="publish",
            kind="sample-group",
            id="s0",
            schema=SAMPLE_ID,
            digest=bytes_digest(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)),
            time=TIME,
        ),
        record,
    )
    with pytest.raises(DigestMismatch, match="leaf 0"):
        _feed_all(sim)
