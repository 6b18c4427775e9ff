"""A tiny catalogue-shaped world built with the protocol package only, served over real HTTP.

Node logs publishing sample groups (exact and bounded), a catalogue log, mirrors and a
search response of interval sums.

The attack tests change what it serves (a dropped leaf, an altered content, a stale checkpoint)
with small, targeted edits, then run the auditor against it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from audit.livestate import FACETS
from audit.search_check import search_queries
from protocol.canonical import canonical, digest
from protocol.entries import make_catalogue_entry, make_entry
from protocol.merkle import CompactRange, consistency_proof, leaf_hash
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint

TIME = "2026-11-22T23:07:36Z"
SCHEMAS = {
    "biobank": "https://w3id.org/biobank-federation/schemas/v1/biobank.schema.json",
    "collection": "https://w3id.org/biobank-federation/schemas/v1/collection.schema.json",
    "sample-group": "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json",
}
GROUP = "sample-group"
K = 10  # every simulated node's k
SAMPLE_TYPES = ("WholeBlood", "Plasma", "Serum", "DNA")
FACET_NAMES = FACETS  # the facets the auditor checks (audit.livestate)


def group_id(n: int) -> str:
    """A well-formed group id."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digits = ""
    for _ in range(26):
        digits += alphabet[n % 32]
        n //= 32
    return "grp_" + digits


def group(n: int, biobank: str, collection: str, **changes: Any) -> dict[str, Any]:
    """Group `n`: exact counts (at least K donors) unless n % 3 == 2, then bounds below K."""
    if n % 3 == 2:
        counts: dict[str, Any] = {"samples": {"lt": K * (1 + n % 2)}, "donors": {"lt": K}}
    else:
        counts = {"samples": K + n % 5 + n % 4, "donors": K + n % 5}
    return {
        "id": group_id(n),
        "biobank": biobank,
        "collection": collection,
        "sample_type": SAMPLE_TYPES[n % len(SAMPLE_TYPES)],
        "storage_temperature": "-60to-85",
        "sex": ("female", "male")[n % 2],
        "age": {"min": 20 * (n % 4), "max": 20 * (n % 4) + 19},
        "period": {"from": 2020, "to": 2024},
        "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Genomic"],
        **counts,
        "nonce": secrets.token_hex(16),
        **changes,
    }


def interval(count: Any) -> tuple[int, int]:
    """What a published count says: n -> (n, n); {"lt": B} -> (1, B - 1)."""
    return (1, count["lt"] - 1) if isinstance(count, dict) else (count, count)


@dataclass
class NodeLog:
    """One node's signed log, as the node itself holds it."""

    origin: str
    country: str
    signer_keys: list[str]
    leaves: list[bytes] = field(default_factory=list)
    contents: list[Any] = field(default_factory=list)

    @classmethod
    def create(cls, origin: str, country: str) -> NodeLog:
        skey, _ = generate_key(origin)
        return cls(origin, country, [skey])

    @property
    def vkey(self) -> str:
        return Signer.from_key(self.signer_keys[-1]).vkey

    def _append(self, entry: dict[str, Any], content: Any) -> None:
        self.leaves.append(canonical(entry))
        self.contents.append(content)

    def publish(self, kind: str, content: dict[str, Any]) -> None:
        self._append(
            make_entry(
                log=self.origin,
                index=len(self.leaves),
                op="publish",
                time=TIME,
                kind=kind,
                id=content["id"],
                schema=SCHEMAS[kind],
                digest=digest(content),
            ),
            content,
        )

    def republish(self, rid: str, **changes: Any) -> dict[str, Any]:
        """Publish group `rid` again with changed content and a fresh nonce (same id)."""
        last = next(c for c in reversed(self.contents) if c is not None and c["id"] == rid)
        content = {**last, **changes, "nonce": secrets.token_hex(16)}
        self.publish(GROUP, content)
        return content

    def withdraw(self, kind: str, rid: str) -> None:
        for i, leaf in enumerate(self.leaves):
            if f'"id":"{rid}"'.encode() in leaf:
                self.contents[i] = None  # erased, as a node does on withdrawal
        self._append(
            make_entry(
                log=self.origin, index=len(self.leaves), op="withdraw", time=TIME, kind=kind, id=rid
            ),
            None,
        )

    def rotate_key(self) -> str:
        """Append a rotate-key entry; the next checkpoint is signed by the old and new keys."""
        skey, vkey = generate_key(self.origin)
        self._append(
            make_entry(
                log=self.origin, index=len(self.leaves), op="rotate-key", time=TIME, key=vkey
            ),
            None,
        )
        self.signer_keys.append(skey)
        return vkey

    def root(self, size: int | None = None) -> bytes:
        cr = CompactRange()
        for leaf in self.leaves[: len(self.leaves) if size is None else size]:
            cr.append(leaf_hash(leaf))
        return cr.root()

    def checkpoint(self, *, keys: list[str] | None = None, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        signers = [Signer.from_key(k) for k in (keys or self.signer_keys[-1:])]
        return sign_checkpoint(Checkpoint(self.origin, size, self.root(size)), signers)

    @property
    def biobank(self) -> str:
        return f"bbmri-eric:ID:{self.country}_{self.origin.split('.')[0].upper()}"

    def collection(self, name: str = "main") -> str:
        return f"{self.biobank}:collection:{name}"

    def seed(self, n_groups: int, start: int = 0) -> None:
        """Publish groups start..start+n_groups-1 (first the biobank record, if none yet)."""
        if not self.leaves:
            self.publish(
                "biobank",
                {
                    "id": self.biobank,
                    "name": f"Biobank {self.origin}",
                    "country": self.country,
                    "contact": {"email": "biobank@example.org"},
                },
            )
        for n in range(start, start + n_groups):
            self.publish(GROUP, group(n, self.biobank, self.collection()))

    def publish_collection(self, name: str) -> None:
        self.publish(
            "collection",
            {
                "id": self.collection(name),
                "biobank": self.biobank,
                "name": f"Collection {name}",
                "contact": {"email": "biobank@example.org"},
            },
        )


@dataclass
class Mirror:
    """The catalogue's copy of one node log."""

    url: str
    country: str
    leaves: list[bytes] = field(default_factory=list)
    contents: list[Any] = field(default_factory=list)
    checkpoint: str = ""


class Catalogue:
    """A catalogue that harvests honestly; tests then make it lie."""

    def __init__(self, origin: str = "catalogue.example/biobank-catalogue") -> None:
        self.origin = origin
        skey, self.vkey = generate_key(origin)
        self.signer = Signer.from_key(skey)
        self.leaves: list[bytes] = []
        self.mirrors: dict[str, Mirror] = {}
        self.search_override: dict[str, dict[str, Any]] = {}  # query string -> answer

    def _append(self, op: str, **fields: Any) -> None:
        self.leaves.append(
            canonical(
                make_catalogue_entry(
                    log=self.origin, index=len(self.leaves), op=op, time=TIME, **fields
                )
            )
        )

    def enrol(self, node: NodeLog, url: str = "http://127.0.0.1:9/") -> None:
        self._append(
            "enrol", node=node.origin, url=url, key=node.vkey, country=node.country, from_size=0
        )
        self.mirrors[node.origin] = Mirror(url=url, country=node.country)

    def harvest(self, node: NodeLog, note: str | None = None) -> str:
        note = note or node.checkpoint()
        mirror = self.mirrors[node.origin]
        mirror.leaves = list(node.leaves)
        mirror.contents = list(node.contents)
        mirror.checkpoint = note
        self._append("checkpoint", node=node.origin, checkpoint=note)
        return note

    def revoke(self, node: NodeLog, *, revoked: str, key: str, from_size: int) -> None:
        self._append("revoke", node=node.origin, key=key, revoked_key=revoked, from_size=from_size)

    def retire(self, origin: str) -> None:
        self._append("retire", node=origin)
        del self.mirrors[origin]

    def root(self, size: int | None = None) -> bytes:
        cr = CompactRange()
        for leaf in self.leaves[: len(self.leaves) if size is None else size]:
            cr.append(leaf_hash(leaf))
        return cr.root()

    def checkpoint(self) -> str:
        return sign_checkpoint(
            Checkpoint(self.origin, len(self.leaves), self.root()), [self.signer]
        )

    def searches(self) -> dict[str, dict[str, Any]]:
        """The answers to every search the auditor asks (by query string), as a bundle has."""
        return {q: self.search(q) for q in ["", *search_queries(self.search())]}

    def search(self, query: str = "") -> dict[str, Any]:
        """Counted independently of the auditor: a plain pass over each mirror, every count
        the interval sum over the live groups (samples [sum lo, sum hi]; donors [max lo,
        sum hi]). Filters: sex and country; a group failing one of them counts only in that
        one's facet."""
        if query in self.search_override:
            return self.search_override[query]
        wanted = dict(parse_qsl(query))
        live: dict[tuple[str, str], dict[str, Any]] = {}
        records: dict[tuple[str, str, str], dict[str, Any]] = {}
        for origin, mirror in self.mirrors.items():
            for leaf, content in zip(mirror.leaves, mirror.contents, strict=True):
                entry = json.loads(leaf)
                key = (origin, entry.get("kind", ""), entry.get("id", ""))
                if entry["op"] == "publish" and entry["kind"] == GROUP:
                    live[(origin, entry["id"])] = content
                elif entry["op"] == "publish":
                    records[key] = content
                elif entry["op"] == "withdraw":
                    live.pop((origin, entry["id"]), None)
                    records.pop(key, None)
        names = ("by country", "by biobank", "by collection", *FACET_NAMES)
        lo: dict[str, Counter[Any]] = {n: Counter() for n in names}
        hi: dict[str, Counter[Any]] = {n: Counter() for n in names}
        per: dict[tuple[str, str, str], list[int]] = {}
        total, donors = [0, 0], [0, 0]
        for (origin, _id), g in live.items():
            (n_lo, n_hi), (d_lo, d_hi) = interval(g["samples"]), interval(g["donors"])
            if n_lo == n_hi and d_lo == d_hi and n_lo < d_lo:
                continue  # an impossible group: rejected
            bb = records.get((origin, "biobank", g["biobank"]))
            country = bb["country"] if bb else self.mirrors[origin].country
            has = {"sex": g["sex"], "country": country}
            failed = [p for p, v in wanted.items() if has[p] != v]
            if len(failed) == 1:
                lo[failed[0]][has[failed[0]]] += n_lo
                hi[failed[0]][has[failed[0]]] += n_hi
            if failed:
                continue
            total = [total[0] + n_lo, total[1] + n_hi]
            donors = [max(donors[0], d_lo), donors[1] + d_hi]
            codes = [
                ("by country", country),
                ("by biobank", (g["biobank"], origin)),  # an id belongs to its node
                ("by collection", (g["collection"], origin)),
                ("country", country),
                ("sample_type", g["sample_type"]),
                ("storage_temperature", g["storage_temperature"]),
                ("sex", g["sex"]),
                ("diagnosis_chapter", "II"),  # every simulated diagnosis is C50.9
            ]
            codes += [("dataset_type", c) for c in g["dataset_types"]]
            codes += [("use_conditions", c) for c in g["use_conditions"]]
            for name, code in codes:
                lo[name][code] += n_lo
                hi[name][code] += n_hi
            for kind in ("biobank", "collection"):
                got = per.setdefault((origin, kind, g[kind]), [0, 0])
                got[0], got[1] = got[0] + n_lo, got[1] + n_hi

        def count(a: int, b: int) -> dict[str, int]:
            return {"min": a, "max": b}

        def items(name: str) -> list[dict[str, Any]]:
            order = sorted(hi[name], key=lambda c: (-hi[name][c], -lo[name][c], c))
            return [
                {"code": c[0], "origin": c[1]} | {"count": count(lo[name][c], hi[name][c])}
                if isinstance(c, tuple)
                else {"code": c, "count": count(lo[name][c], hi[name][c])}
                for c in order
            ]

        def cards(kind: str) -> list[dict[str, Any]]:
            out = []
            for origin, k, rid in sorted(records):
                if k != kind:
                    continue
                n = per.get((origin, kind, rid))
                card = {"id": rid, "samples": count(*n) if n else None, "published": True}
                if kind == "collection":
                    card["count_source"] = "groups" if n else "declared"
                    rec = records[origin, k, rid]
                    card["biobank"] = rec.get("biobank")
                    card["biobank_published"] = (origin, "biobank", rec.get("biobank")) in records
                    card["declared_size"] = rec.get("size")
                    card["subjects"] = rec.get("number_of_subjects")
                out.append(card | {"provenance": {"node": origin}})
            return out

        return {
            "query": wanted,
            "total": count(*total),
            "donors": count(*donors),
            "counts": {n: items(f"by {n}") for n in ("country", "biobank", "collection")},
            "facets": {n: items(n) for n in FACET_NAMES},
            "biobanks": {"items": cards("biobank"), "page": 1, "page_size": 20, "total": 0},
            "collections": {"items": cards("collection"), "page": 1, "page_size": 20, "total": 0},
            "nodes": [],
        }

    def app(self) -> FastAPI:
        return catalogue_app(self)


def _page(leaves: list[bytes], contents: list[Any], start: int, limit: int) -> dict[str, Any]:
    end = min(len(leaves), start + min(limit, 1000))
    return {
        "entries": [
            {"leaf": base64.b64encode(leaves[i]).decode(), "content": contents[i]}
            for i in range(start, end)
        ],
        "next": end if end < len(leaves) else None,
    }


def catalogue_app(cat: Catalogue) -> FastAPI:
    """The documented catalogue read API over a `Catalogue` (read at request time)."""
    app = FastAPI()

    @app.get("/.well-known/biobank-catalogue")
    def well_known() -> dict[str, str]:
        return {"origin": cat.origin, "verifier_key": cat.vkey}

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> str:
        return cat.checkpoint()

    @app.get("/v1/log/entries")
    def entries(start: int = 0, limit: int = 1000) -> dict[str, Any]:
        return _page(cat.leaves, [None] * len(cat.leaves), start, limit)

    @app.get("/v1/search")
    def search(request: Request) -> JSONResponse:
        return JSONResponse(cat.search(request.url.query))

    @app.get("/v1/nodes/{origin:path}/log/checkpoint", response_class=PlainTextResponse)
    def node_checkpoint(origin: str) -> str:
        if origin not in cat.mirrors:
            raise HTTPException(404)
        return cat.mirrors[origin].checkpoint

    @app.get("/v1/nodes/{origin:path}/log/entries")
    def node_entries(origin: str, start: int = 0, limit: int = 1000) -> dict[str, Any]:
        if origin not in cat.mirrors:
            raise HTTPException(404)
        m = cat.mirrors[origin]
        return _page(m.leaves, m.contents, start, limit)

    return app


def node_app(node: NodeLog, *, checkpoint: str | None = None) -> FastAPI:
    """The node's own log API (checkpoint and consistency proofs), for --node-direct."""
    app = FastAPI()

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    def cp() -> str:
        return checkpoint or node.checkpoint()

    @app.get("/v1/log/proof/consistency")
    def consistency(first: int = Query(alias="from"), to: int = Query()) -> dict[str, Any]:
        hashes = [leaf_hash(leaf) for leaf in node.leaves]
        proof = consistency_proof(hashes, first, to)
        return {"proof": [base64.b64encode(h).decode() for h in proof]}

    return app
