"""A tiny catalogue-shaped world built with the protocol package only, served over real HTTP.

Node logs, a catalogue log, mirrors and a search response.

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

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from protocol.canonical import canonical, digest
from protocol.entries import make_catalogue_entry, make_entry
from protocol.merkle import CompactRange, consistency_proof, leaf_hash
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint

TIME = "2026-11-22T23:07:36Z"
SCHEMA = "https://w3id.org/biobank-federation/schemas/v1/{kind}.schema.json"
SAMPLE_TYPES = ("WholeBlood", "Plasma", "Serum", "DNA")


def sample_id(n: int) -> str:
    """A well-formed pseudonymous sample id."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digits = ""
    for _ in range(26):
        digits += alphabet[n % 32]
        n //= 32
    return "smp_" + digits


def sample(n: int, biobank: str, collection: str) -> dict[str, Any]:
    return {
        "id": sample_id(n),
        "biobank": biobank,
        "collection": collection,
        "sample_type": SAMPLE_TYPES[n % len(SAMPLE_TYPES)],
        "storage_temperature": "-60to-85",
        "sex": ("female", "male")[n % 2],
        "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Genomic"],
        "nonce": secrets.token_hex(16),
    }


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
                schema=SCHEMA.format(kind=kind),
                digest=digest(content),
            ),
            content,
        )

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

    def seed(self, n_samples: int, start: int = 0) -> None:
        bb = f"bbmri-eric:ID:{self.country}_{self.origin.split('.')[0].upper()}"
        col = f"{bb}:collection:main"
        if not self.leaves:
            self.publish(
                "biobank",
                {
                    "id": bb,
                    "name": f"Biobank {self.origin}",
                    "country": self.country,
                    "contact": {"email": "biobank@example.org"},
                },
            )
        for n in range(start, start + n_samples):
            self.publish("sample", sample(n, bb, col))


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
        self.search_override: dict[str, Any] | None = None

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

    def search(self) -> dict[str, Any]:
        """Counted independently of the auditor: a plain pass over each mirror."""
        if self.search_override is not None:
            return self.search_override
        live: dict[tuple[str, str], dict[str, Any]] = {}
        countries: dict[str, str] = {}
        for origin, mirror in self.mirrors.items():
            for leaf, content in zip(mirror.leaves, mirror.contents, strict=True):
                entry = json.loads(leaf)
                if entry["op"] == "publish" and entry["kind"] == "sample":
                    live[(origin, entry["id"])] = content
                elif entry["op"] == "withdraw":
                    live.pop((origin, entry["id"]), None)
                elif entry["op"] == "publish" and entry["kind"] == "biobank":
                    countries[content["id"]] = content["country"]
        c: dict[str, Counter[str]] = {
            n: Counter()
            for n in (
                "country",
                "biobank",
                "collection",
                "sample_type",
                "storage_temperature",
                "sex",
                "dataset_type",
                "use_conditions",
                "diagnosis_chapter",
            )
        }
        for (origin, _id), s in live.items():
            country = countries.get(s["biobank"], self.mirrors[origin].country)
            c["country"][country] += 1
            c["biobank"][s["biobank"]] += 1
            c["collection"][s["collection"]] += 1
            for name in ("sample_type", "storage_temperature", "sex"):
                c[name][s[name]] += 1
            for code in s["dataset_types"]:
                c["dataset_type"][code] += 1
            for code in s["use_conditions"]:
                c["use_conditions"][code] += 1
            c["diagnosis_chapter"]["II"] += 1  # every simulated diagnosis is C50.9

        def items(counter: Counter[str]) -> list[dict[str, Any]]:
            return [{"code": k, "count": n if n >= 10 else "<10"} for k, n in counter.most_common()]

        total = len(live)
        return {
            "query": {},
            "total": total if total == 0 or total >= 10 else "<10",
            "counts": {n: items(c[n]) for n in ("country", "biobank", "collection")},
            "facets": {
                n: items(c[n])
                for n in (
                    "sample_type",
                    "storage_temperature",
                    "sex",
                    "dataset_type",
                    "use_conditions",
                    "diagnosis_chapter",
                )
            }
            | {"country": items(c["country"])},
            "biobanks": {"items": [], "page": 1, "page_size": 20, "total": 0},
            "collections": {"items": [], "page": 1, "page_size": 20, "total": 0},
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
    def search() -> JSONResponse:
        return JSONResponse(cat.search())

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
