"""PostgreSQL's chunk stores commit without waiting for the disk; accepted state still does
(issue 19 item 7: PostgreSQL's harvest at least as fast as SQLite's).

A staged chunk is a resume point only: a crash that loses the last chunks stored (never part
of one: each is one transaction with its `harvest_staging` row, and the WAL is replayed in
order) costs a resumed harvest a fetch again. The final commit, which accepts the step, waits
for its WAL to reach the disk as before, and that WAL holds every chunk written before it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from catalogue.context import build_context
from catalogue.db import bulk_insert, write_tx
from catalogue.harvest.apply import LEAF_COLUMNS
from catalogue.models import leaves, nodes
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.simulator import NodeSimulator, group

CHUNK = 20
BB, COLL = "bbmri-eric:ID:DE_SYNC", "bbmri-eric:ID:DE_SYNC:collection:main"


@pytest.mark.postgres
def test_postgresql_chunk_stores_skip_the_disk_wait_and_the_final_commit_keeps_it(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    sim = NodeSimulator("sync.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=BB, collection=COLL)
    for n in range(90):
        sim.publish("sample-group", group(n, biobank=BB, collection=COLL, samples=10, donors=6))
    serve(sim)
    with database("postgres", tmp_path, request) as url:
        settings = make_settings(
            url, tmp_path / "home", page_size=25, harvest_chunk=CHUNK, harvest_chunk_growth=1
        )
        ctx = build_context(settings)
        commits: list[tuple[str, int, int]] = []

        @event.listens_for(ctx.engine, "commit")
        def _seen(conn: Any) -> None:  # in the transaction, just before it commits
            raw = conn.connection.dbapi_connection
            row = raw.execute(
                "SELECT current_setting('synchronous_commit'),"
                " (SELECT count(*) FROM harvest_staging),"
                " (SELECT coalesce(max(tree_size), 0) FROM nodes)"
            ).fetchone()
            commits.append((row[0], int(row[1]), int(row[2])))

        try:
            cat = Catalogue(ctx)
            cat.enrol(sim, sim.url)
            assert cat.harvest()[sim.origin].ok
            with ctx.engine.connect() as conn:
                assert conn.execute(select(nodes.c.tree_size)).scalar_one() == len(sim.leaves)
            chunks = [c for c in commits if c[1] > 0]  # a step staged, not yet accepted
            assert len(chunks) >= len(sim.leaves) // CHUNK - 1
            assert {setting for setting, _staged, _size in chunks} == {"off"}
            final = [c for c in commits if c[1] == 0 and c[2] == len(sim.leaves)]
            assert final and {setting for setting, _s, _z in final} == {"on"}
            # and the setting holds for the chunk's transaction only: not for later ones
            commits.clear()
            with write_tx(ctx.engine) as conn:
                bulk_insert(conn, leaves, LEAF_COLUMNS, [])
            assert [c[0] for c in commits] == ["on"]
        finally:
            ctx.engine.dispose()
