"""Attacks by a lying catalogue, each caught by a named check that names the exact entry.

The catalogue runs on loopback behind `Liar`, which rewrites one kind of response.
"""

from __future__ import annotations

import json
from pathlib import Path

from federation.servers import LiveServer
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from tests.audit.conftest import DE, FR, World
from tests.audit.helpers import audit, check, failed
from tests.audit.liar import Liar, constant, edit_page, mirror_path
from tests.audit.sim import Catalogue


def _only(report: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    fails = failed(report)
    assert name in fails, fails
    return fails[name]


def test_catalogue_drops_an_entry_from_a_mirror(liar: Liar, served: LiveServer) -> None:
    liar.lie(mirror_path(DE, "entries"), edit_page(lambda _s, es: es[:7] + es[8:]))
    code, report = audit("--catalogue", served.url)
    assert code == 1
    findings = _only(report, "node-tree")
    assert any(f.startswith(f"node {DE} leaf 7: IndexOrderError") for f in findings), findings
    assert any("entries dropped" in f or "rebuild" in f for f in findings)


def test_catalogue_alters_a_content(liar: Liar, served: LiveServer) -> None:
    def alter(_start: int, entries: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        entries[5]["content"]["sample_type"] = (
            "Serum" if entries[5]["content"]["sample_type"] != "Serum" else "Plasma"
        )
        return entries

    liar.lie(mirror_path(DE, "entries"), edit_page(alter))
    code, report = audit("--catalogue", served.url)
    assert code == 1
    findings = _only(report, "content-digest")
    assert findings[0].startswith(f"node {DE} leaf 5: content of sample-group grp_")
    assert "does not match digest" in findings[0]
    assert set(failed(report)) == {"content-digest", "search-totals"}


def test_catalogue_reorders_entries(liar: Liar, served: LiveServer) -> None:
    liar.lie(mirror_path(FR, "entries"), edit_page(lambda _s, es: [es[0], es[2], es[1], *es[3:]]))
    code, report = audit("--catalogue", served.url)
    assert code == 1
    findings = _only(report, "node-tree")
    assert any(f.startswith(f"node {FR} leaf 1: IndexOrderError") for f in findings), findings
    assert any("signed root" in f for f in findings)


def test_catalogue_serves_an_old_checkpoint_after_a_newer_one(
    world: World, liar: Liar, served: LiveServer, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    old = world.cat.checkpoint()
    assert audit("--catalogue", served.url, "--state", state)[0] == 0
    world.de.seed(2, start=200)
    world.cat.harvest(world.de)
    assert audit("--catalogue", served.url, "--state", state)[0] == 0
    before = state.read_text()
    liar.lie(r"/v1/log/checkpoint", constant(old))  # frozen: the auditor is shown the past
    code, report = audit("--catalogue", served.url, "--state", state)
    assert code == 1
    findings = _only(report, "catalogue-consistency")
    assert "size 5 is smaller than the verified size 6" in findings[0]
    assert state.read_text() == before


def _fork(world: World) -> Catalogue:
    """The same catalogue key and mirrors, but another history of the same size."""
    fork = Catalogue(world.cat.origin)
    fork.signer, fork.vkey = world.cat.signer, world.cat.vkey
    fork.enrol(world.fr)
    fork.enrol(world.de, url=world.cat.mirrors[DE].url)
    notes = [
        json.loads(leaf)["checkpoint"]
        for leaf in world.cat.leaves
        if json.loads(leaf)["op"] == "checkpoint"
    ]
    fork.harvest(world.fr, note=notes[2])
    fork.harvest(world.de, note=notes[0])
    fork.harvest(world.de, note=notes[1])
    fork.mirrors = world.cat.mirrors
    return fork


def test_catalogue_shows_two_auditors_different_logs(
    world: World, liar: Liar, served: LiveServer, tmp_path: Path
) -> None:
    alice, bob = tmp_path / "alice.json", tmp_path / "bob.json"
    assert audit("--catalogue", served.url, "--state", alice)[0] == 0
    fork = _fork(world)
    liar.lie(r"/v1/log/checkpoint", lambda _q, _b: fork.checkpoint().encode())
    liar.lie(
        r"/v1/log/entries",
        lambda _q, _b: json.dumps(
            {
                "entries": [
                    {"leaf": __import__("base64").b64encode(leaf).decode(), "content": None}
                    for leaf in fork.leaves
                ],
                "next": None,
            }
        ).encode(),
    )
    code, report = audit("--catalogue", served.url, "--state", bob)
    assert code == 0, failed(report)  # on its own, Bob's view is self-consistent
    code, report = audit("--catalogue", served.url, "--state", alice)
    assert code == 1
    assert "split view" in _only(report, "catalogue-consistency")[0]
    # gossip: Bob's state shows the view Alice was given is not his either
    liar.lies.clear()
    code, report = audit("--catalogue", served.url, "--state", bob)
    assert code == 1 and "split view" in _only(report, "catalogue-consistency")[0]


def test_catalogue_forges_a_node_checkpoint(world: World, liar: Liar, served: LiveServer) -> None:
    skey, _ = generate_key(DE)  # a key with the node's name that the node never had
    forged = sign_checkpoint(
        Checkpoint(DE, len(world.de.leaves), world.de.root()), [Signer.from_key(skey)]
    )
    liar.lie(mirror_path(DE, "checkpoint"), constant(forged))
    code, report = audit("--catalogue", served.url)
    assert code == 1
    findings = _only(report, "node-checkpoint-signatures")
    assert findings[0].startswith(f"node {DE} mirror checkpoint size 44: SignatureError")
    assert set(failed(report)) == {"node-checkpoint-signatures"}


def test_catalogue_keeps_content_of_a_withdrawn_record(
    world: World, liar: Liar, served: LiveServer
) -> None:
    def keep(_start: int, entries: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        entries[world.withdrawn_leaf]["content"] = world.withdrawn_content
        return entries

    liar.lie(mirror_path(DE, "entries"), edit_page(keep))
    code, report = audit("--catalogue", served.url)
    assert code == 1
    findings = _only(report, "withdrawn-content")
    assert findings == [
        f"node {DE} leaf {world.withdrawn_leaf}: content of sample-group "
        f"{world.withdrawn_content['id']} still served after its withdrawal "
        f"at leaf 43"
    ]


def test_catalogue_reports_a_search_total_that_differs_from_the_logs(
    world: World, liar: Liar, served: LiveServer
) -> None:
    honest = world.cat.search()["total"]

    def inflate(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        data["total"]["max"] += 1
        return json.dumps(data).encode()

    liar.lie(r"/v1/search", inflate)
    code, report = audit("--catalogue", served.url)
    assert code == 1
    lo, hi = honest["min"], honest["max"]
    assert _only(report, "search-totals") == [
        f"search total: search reports [{lo}, {hi + 1}], the logs give [{lo}, {hi}]"
    ]


def test_catalogue_narrows_an_interval_the_logs_only_bound(
    world: World, liar: Liar, served: LiveServer
) -> None:
    """DE's count includes bounded groups: claiming a tighter lower bound is a lie."""
    de = next(i["count"] for i in world.cat.search()["counts"]["country"] if i["code"] == "DE")
    assert de["min"] < de["max"]

    def narrow(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        for item in data["counts"]["country"]:
            if item["code"] == "DE":
                item["count"]["min"] += 5
        return json.dumps(data).encode()

    liar.lie(r"/v1/search", narrow)
    code, report = audit("--catalogue", served.url)
    assert code == 1
    assert _only(report, "search-totals") == [
        f"search counts.country 'DE': search reports [{de['min'] + 5}, {de['max']}], "
        f"the logs give [{de['min']}, {de['max']}]"
    ]
    assert check(report, "search-totals")["checked"] > 10


def test_catalogue_shifts_an_interval_and_a_donor_count(
    world: World, liar: Liar, served: LiveServer
) -> None:
    honest = world.cat.search()
    sex = {i["code"]: i["count"] for i in honest["facets"]["sex"]}
    donors = honest["donors"]

    def shift(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        for item in data["facets"]["sex"]:
            if item["code"] == "female":
                item["count"] = {"min": item["count"]["min"] - 2, "max": item["count"]["max"] - 2}
        data["donors"]["min"] = data["donors"]["max"]  # as if donors added up across groups
        return json.dumps(data).encode()

    liar.lie(r"/v1/search", shift)
    code, report = audit("--catalogue", served.url)
    assert code == 1
    f = sex["female"]
    assert _only(report, "search-totals") == [
        f"search donors: search reports [{donors['max']}, {donors['max']}], "
        f"the logs give [{donors['min']}, {donors['max']}]",
        f"search facets.sex 'female': search reports [{f['min'] - 2}, {f['max'] - 2}], "
        f"the logs give [{f['min']}, {f['max']}]",
    ]


def test_catalogue_shows_a_count_that_is_no_interval(liar: Liar, served: LiveServer) -> None:
    """The old small-count form "<10" is no longer an answer: every count is an interval."""

    def hide(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        data["counts"]["country"][0]["count"] = "<10"
        return json.dumps(data).encode()

    liar.lie(r"/v1/search", hide)
    code, report = audit("--catalogue", served.url)
    assert code == 1
    assert _only(report, "search-totals") == [
        "search counts.country 'DE': shows '<10', not an interval {'min': int, 'max': int}"
    ]
