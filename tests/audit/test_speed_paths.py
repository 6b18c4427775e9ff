"""The audit's fast paths (issue 19) give the reference results.

`group_key` is built without generic calls and remembers code lists: it must equal
`(*combo_key(g), *bounds(samples), *bounds(donors))` on awkward groups. `line_blocks` cuts a
bundle file into blocks of whole lines for worker processes: joined, they must be exactly
the lines Python's line iterator reads (a last line without a newline gets one), cut every
`size` lines, at any read size.
"""

from __future__ import annotations

import io
import random
from typing import Any

import pytest

from audit.fetcher import line_blocks
from audit.livestate import SETS, Chapters, bounds, combo_key, group_key
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
def test_line_blocks_cut_whole_lines_as_the_line_iterator_reads_them(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        n = rng.randint(0, 30)
        lines = [bytes(rng.choice(b'ab{}"') for _ in range(rng.randint(0, 6))) for _ in range(n)]
        data = b"\n".join(lines) + (b"\n" if n and rng.random() < 0.7 else b"")
        end, size = rng.randint(0, 40), rng.randint(1, 7)
        expected = [x if x.endswith(b"\n") else x + b"\n" for x in list(io.BytesIO(data))[:end]]
        blocks = list(line_blocks(io.BytesIO(data), end, size, read=rng.randint(1, 9)))
        assert b"".join(blocks) == b"".join(expected), (data, end, size)
        assert [b.count(b"\n") for b in blocks[:-1]] == [size] * (len(blocks) - 1)
        assert all(b.endswith(b"\n") for b in blocks)
