"""Issue 16 item 6: the catalogue's mirror and own-log proof endpoints answer from stored
subtree hashes, equal to the O(n) reference, on SQLite and PostgreSQL, served for real."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from catalogue.app import create_app
from catalogue.models import own_leaves, subtrees
from catalogue.settings import Settings
from catalogue.subtrees import fill_all
from federation.servers import live_server
from protocol.merkle import leaf_hash
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.catalogue.simulator import NodeSimulator
from tests.protocol.reference import reference_consistency_proof, reference_inclusion_proof

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "home")


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings)
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def _proof(client: httpx.Client, path: str, **params: int) -> list[bytes]:
    resp = client.get(path, params={k.rstrip("_"): v for k, v in params.items()})
    assert resp.status_code == 200, resp.text
    return [base64.b64decode(p) for p in resp.json()["proof"]]


def test_mirror_proofs_come_from_stored_subtrees_and_equal_the_reference(
    client: httpx.Client, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(150)
    serve(sim)
    enrolled = client.post(
        "/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH
    )
    assert enrolled.status_code == 201, enrolled.text
    sizes = []
    for more in (0, 130, 300):  # several harvest steps: subtrees stored at each commit
        if more:
            sim.populate(more, start=len(sim.leaves))
        assert client.post("/v1/admin/harvest", headers=AUTH).status_code == 200
        sizes.append(len(sim.leaves))
    hashes = [leaf_hash(x) for x in sim.leaves]
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(subtrees)).scalar_one()
    assert stored >= len(hashes) // 16  # level-4 subtrees at least
    base = f"/v1/nodes/{sim.origin}/log/proof"
    rng = random.Random(6)
    n = len(hashes)
    for _ in range(25):
        size = rng.randint(1, n)
        index = rng.randrange(size)
        got = _proof(client, base + "/inclusion", index=index, size=size)
        assert got == reference_inclusion_proof(hashes, index, size)
        first = rng.randint(1, size)
        got = _proof(client, base + "/consistency", from_=first, to=size)
        assert got == reference_consistency_proof(hashes, first, size)
    cache = client.app.state.proofs  # type: ignore[attr-defined]
    hits = cache.hits
    again = _proof(client, base + "/consistency", from_=sizes[0], to=sizes[-1])
    again2 = _proof(client, base + "/consistency", from_=sizes[0], to=sizes[-1])
    assert again == again2 == reference_consistency_proof(hashes, sizes[0], sizes[-1])
    assert cache.hits >= hits + 1  # the newest proofs are served from the cache

    # a mirror kept before subtree hashes were stored: the same proofs, then filled in
    with engine.begin() as conn:
        conn.execute(subtrees.delete())
    got = _proof(client, base + "/inclusion", index=7, size=n - 1)
    assert got == reference_inclusion_proof(hashes, 7, n - 1)
    fill_all(engine)
    with engine.connect() as conn:
        refilled = conn.execute(
            select(func.count()).select_from(subtrees).where(subtrees.c.log_id != 0)
        ).scalar_one()
    assert refilled >= n // 16
    got = _proof(client, base + "/consistency", from_=33, to=n - 2)
    assert got == reference_consistency_proof(hashes, 33, n - 2)


def test_own_log_proofs_come_from_stored_subtrees(client: httpx.Client, serve: Any) -> None:
    sims = [NodeSimulator(origin=f"n{i}.example/node") for i in range(3)]
    for sim in sims:
        sim.populate(3)
        serve(sim)
        client.post("/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH)
    for _ in range(6):  # enrol + checkpoint leaves: more than 16 in the own log
        for sim in sims:
            sim.populate(1, start=len(sim.leaves))
        assert client.post("/v1/admin/harvest", headers=AUTH).status_code == 200
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        hashes = [
            bytes(h) for (h,) in conn.execute(select(own_leaves.c.hash).order_by(own_leaves.c.idx))
        ]
        own_rows = conn.execute(
            select(func.count()).select_from(subtrees).where(subtrees.c.log_id == 0)
        ).scalar_one()
    n = len(hashes)
    assert n > 16 and own_rows == n // 16
    for size in (n, n - 1, 17):
        for index in (0, size // 2, size - 1):
            got = _proof(client, "/v1/log/proof/inclusion", index=index, size=size)
            assert got == reference_inclusion_proof(hashes, index, size)
        got = _proof(client, "/v1/log/proof/consistency", from_=5, to=size)
        assert got == reference_consistency_proof(hashes, 5, size)
