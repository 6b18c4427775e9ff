"""A node simulator: a FastAPI app serving a signed log from memory; helpers alter and re-sign it.

It publishes biobank, collection and sample-group records (`exact_group`, `bounded_group`).

Like python-tuf's RepositorySimulator: each attack test changes what the simulator serves
(content, leaves, checkpoint, behaviour) and asserts exactly how the catalogue reacts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse, Response

from protocol.canonical import canonical, digest
from protocol.entries import make_entry
from protocol.merkle import consistency_proof, leaf_hash
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from protocol.schema import SchemaSet
from tests.protocol.reference import root_from_leaf_hashes

SCHEMAS = SchemaSet.default()
TIME = "2026-11-22T12:00:00Z"
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def group_id(n: int) -> str:
    """A well-formed, stable sample-group id for group number `n`."""
    raw = hashlib.sha256(f"group:{n}".encode()).digest()
    return "grp_" + "".join(_B32[b % 32] for b in raw[:26])


def upper_bound(samples: int, k: int) -> int:
    """The bound a node publishes for a group of fewer than k donors holding `samples`."""
    return k if samples < k else k * (samples // k + 1)


def group(
    n: int,
    *,
    biobank: str,
    collection: str,
    samples: int | dict[str, int],
    donors: int | dict[str, int],
    **fields: Any,
) -> dict[str, Any]:
    """A sample-group record (number `n`) with the given counts; `fields` override (None:
    omit) the default attributes."""
    rec = {
        "id": group_id(n),
        "biobank": biobank,
        "collection": collection,
        "sample_type": "Plasma",
        "storage_temperature": "-60to-85",
        "sex": "female",
        "age": {"min": 40, "max": 49},
        "period": {"from": 2015, "to": 2019},
        "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Genomic"],
        "samples": samples,
        "donors": donors,
        "nonce": hashlib.md5(f"nonce{n}".encode(), usedforsecurity=False).hexdigest(),
    }
    rec.update(fields)
    return {k: v for k, v in rec.items() if v is not None}


def varied_group(
    n: int, *, biobank: str, collection: str, schema_invalid: bool = True
) -> dict[str, Any]:
    """Group `n` with attributes and counts that vary: absent attributes, lists of several
    codes in any order, groups sharing a combo, bounded counts, and some breaking the node's
    k (10) by their exact counts; `schema_invalid`: every 17th with a diagnosis code no
    schema accepts."""
    bad = schema_invalid and n % 17 == 0
    fields: dict[str, Any] = {
        "sex": ("female", "male", None)[n % 3],
        "age": {"min": 10 * (n % 4), "max": 10 * (n % 4) + 9} if n % 5 else None,
        "diagnoses": [
            {"system": "ORPHA", "code": "bad" if bad else f"ORPHA:{100 + n % 3}"},
            {"system": "ICD-10", "code": ("C50.9", "E11", "C18.0")[n % 3]},
        ][: n % 3]
        or None,
        "use_conditions": ["DUO:0000042", "DUO:0000006"][: 1 + n % 2],
        "dataset_types": None if n % 4 == 0 else ["Genomic"],
    }
    samples: Any
    donors: Any
    if n % 7 == 0:
        samples, donors = {"lt": 20}, {"lt": 10}
    elif n % 11 == 0:
        samples, donors = 12, 3  # exact donors below k: refused
    elif n % 13 == 0:
        samples, donors = 11, 12  # fewer samples than donors: refused
    else:
        samples, donors = 10 + n % 6, 10 + n % 3
    return group(
        n, biobank=biobank, collection=collection, samples=samples, donors=donors, **fields
    )


def exact_group(
    n: int, *, biobank: str, collection: str, samples: int, donors: int, **fields: Any
) -> dict[str, Any]:
    """A group of at least k donors: exact counts."""
    return group(
        n, biobank=biobank, collection=collection, samples=samples, donors=donors, **fields
    )


def bounded_group(
    n: int, *, biobank: str, collection: str, samples: int, k: int, **fields: Any
) -> dict[str, Any]:
    """A group of fewer than k donors holding `samples`: both counts published as bounds."""
    return group(
        n,
        biobank=biobank,
        collection=collection,
        samples={"lt": upper_bound(samples, k)},
        donors={"lt": k},
        **fields,
    )


class NodeSimulator:
    """One node's log in memory: leaves, contents, and the checkpoint it serves."""

    def __init__(
        self, origin: str = "sim.example/biobank-node", *, country: str = "DE", k: int = 10
    ) -> None:
        self.origin = origin
        self.country = country
        self.k = k
        skey, self.verifier_key = generate_key(origin)
        self.signer = Signer.from_key(skey)
        self.leaves: list[bytes] = []
        self.contents: list[dict[str, Any] | None] = []
        self.note: str | None = None  # served checkpoint; None = sign the current tree
        self.url = ""
        # misbehaviour switches, set by tests
        self.entries_hook: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        self.raw_entries: bytes | None = None
        self.hang = threading.Event()
        self.release = threading.Event()
        self.descriptor_key: str | None = None
        self.served: list[int] = []  # start index of every entries page served
        self.page_delay = 0.0  # seconds each entries page waits (a slow node)
        # the leaves its consistency proofs are computed over (None: `leaves`; a fork: others)
        self.proof_leaves: list[bytes] | None = None

    # -- building the log -------------------------------------------------------------
    def publish(self, kind: str, record: dict[str, Any]) -> int:
        entry = make_entry(
            log=self.origin,
            index=len(self.leaves),
            op="publish",
            time=TIME,
            kind=kind,
            id=record["id"],
            schema=SCHEMAS.schema_id(kind),
            digest=digest(record),
        )
        return self.append_leaf(canonical(entry), record)

    def withdraw(self, kind: str, record_id: str) -> int:
        entry = make_entry(
            log=self.origin,
            index=len(self.leaves),
            op="withdraw",
            time=TIME,
            kind=kind,
            id=record_id,
        )
        index = self.append_leaf(canonical(entry), None)
        for i, leaf in enumerate(self.leaves[:-1]):  # the node erases the withdrawn content
            if f'"id":"{record_id}"'.encode() in leaf:
                self.contents[i] = None
        return index

    def append_leaf(self, leaf: bytes, content: dict[str, Any] | None) -> int:
        self.leaves.append(leaf)
        self.contents.append(content)
        return len(self.leaves) - 1

    def populate(
        self,
        n_groups: int,
        *,
        biobank: str = "bbmri-eric:ID:DE_SIM",
        collection: str = "bbmri-eric:ID:DE_SIM:collection:main",
        start: int = 0,
        **fields: Any,
    ) -> None:
        """Publish the biobank and collection (once) and groups `start` .. `start + n_groups`,
        each of k samples of k donors unless `fields` say otherwise (one leaf each)."""
        if not any(c and c.get("id") == biobank for c in self.contents):
            self.publish(
                "biobank",
                {
                    "id": biobank,
                    "name": f"Biobank {biobank}",
                    "country": self.country,
                    "contact": {"email": "biobank@example.org"},
                    "description": "A simulated biobank",
                },
            )
            self.publish(
                "collection",
                {"id": collection, "biobank": biobank, "name": f"Collection {collection}"},
            )
        counts = {"samples": self.k, "donors": self.k} | fields
        for n in range(start, start + n_groups):
            self.publish("sample-group", group(n, biobank=biobank, collection=collection, **counts))

    # -- signing ----------------------------------------------------------------------
    def root(self, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        return root_from_leaf_hashes([leaf_hash(x) for x in self.leaves[:size]])

    def sign(
        self, size: int | None = None, signer: Signer | None = None, root: bytes | None = None
    ) -> str:
        size = len(self.leaves) if size is None else size
        cp = Checkpoint(self.origin, size, root if root is not None else self.root(size))
        return sign_checkpoint(cp, [signer or self.signer])

    def checkpoint(self) -> str:
        return self.note if self.note is not None else self.sign()

    def rewrite_leaf(self, index: int, **changes: Any) -> None:
        """Replace leaf `index` by a canonical entry with `changes` (a different history)."""
        import orjson

        entry = orjson.loads(self.leaves[index])
        entry.update(changes)
        self.leaves[index] = canonical(entry)

    # -- serving ----------------------------------------------------------------------
    def descriptor(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "name": "Simulated node",
            "country": self.country,
            "organisation": "Simulation",
            "contact": "node@example.org",
            "url": self.url,
            "verifier_key": self.descriptor_key or self.verifier_key,
            "schemas": SCHEMAS.ids,
            "policy": {
                "k": self.k,
                "change_set_donors": self.k,
                "age_band": 10,
                "period_width": 5,
                "diagnosis_precision": "full",
                "published_fields": ["sex", "age"],
            },
        }

    def app(self) -> FastAPI:
        app = FastAPI()
        sim = self

        async def maybe_hang() -> None:
            while sim.hang.is_set() and not sim.release.is_set():
                await asyncio.sleep(0.05)

        @app.get("/.well-known/biobank-node")
        def well_known() -> dict[str, Any]:
            return sim.descriptor()

        @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
        async def checkpoint() -> str:
            await maybe_hang()
            return sim.checkpoint()

        @app.get("/v1/log/entries")
        async def entries(
            start: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=1000)
        ) -> Response:
            await maybe_hang()
            if sim.page_delay:
                await asyncio.sleep(sim.page_delay)
            if sim.raw_entries is not None:
                return Response(sim.raw_entries, media_type="application/json")
            sim.served.append(start)
            end = min(start + limit, len(sim.leaves))
            out = [
                {"leaf": base64.b64encode(sim.leaves[i]).decode(), "content": sim.contents[i]}
                for i in range(start, end)
            ]
            if sim.entries_hook is not None:
                out = sim.entries_hook(out)
            import orjson

            body = {"entries": out, "next": end if end < len(sim.leaves) else None}
            return Response(orjson.dumps(body), media_type="application/json")

        @app.get("/v1/log/proof/consistency")
        def consistency(first: int = Query(alias="from", ge=1), to: int = Query(ge=1)) -> Any:
            tree = sim.proof_leaves if sim.proof_leaves is not None else sim.leaves
            proof = consistency_proof([leaf_hash(x) for x in tree], first, to)
            return {"proof": [base64.b64encode(h).decode() for h in proof]}

        return app


def other_signer(origin: str) -> Signer:
    """A well-formed key with the node's name that the catalogue never enrolled."""
    return Signer.from_key(generate_key(origin)[0])


def nonce() -> str:
    return secrets.token_hex(16)
