"""Enrol and retire nodes; both recorded in the catalogue's own log in the same transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, select

from catalogue.db import write_tx
from catalogue.errors import EnrolmentError, UnknownNode
from catalogue.harvest.fetcher import NodeFetcher
from catalogue.models import alerts, nodes
from catalogue.ownlog import CatalogueKey, append
from protocol.entries import utc_now
from protocol.errors import ConfigError
from protocol.note import Verifier
from protocol.tls import client_tls

__all__ = ["DEFAULT_K", "clear_halt", "enrol", "fetch_descriptor", "policy_k", "retire"]

DEFAULT_K = 10  # a node whose descriptor states no k


async def fetch_descriptor(
    url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 10.0,
    max_bytes: int = 1 << 20,
    ca_bundle: Path | None = None,
) -> dict[str, Any]:
    """The node's descriptor, its certificate verified against `ca_bundle` (CATALOGUE_CA_BUNDLE)
    or the system store."""
    verify = client_tls(ca_bundle, setting="CATALOGUE_CA_BUNDLE")
    async with httpx.AsyncClient(transport=transport, timeout=timeout, verify=verify) as client:
        return await NodeFetcher(client, url, max_bytes=max_bytes, timeout=timeout).descriptor()


def policy_k(descriptor: dict[str, Any]) -> int:
    """The node's k-anonymity threshold from its descriptor policy (default 10)."""
    policy = descriptor.get("policy") or {}
    k = policy.get("k") if isinstance(policy, dict) else None
    return k if isinstance(k, int) and k >= 1 else DEFAULT_K


def enrol(
    engine: Engine, key: CatalogueKey, url: str, verifier_key: str, descriptor: dict[str, Any]
) -> dict[str, Any]:
    """Record a node whose descriptor (fetched by the caller) carries the out-of-band key."""
    try:
        Verifier.from_key(verifier_key)
    except ConfigError as exc:
        raise EnrolmentError(f"the verifier key given is malformed: {exc.message}") from exc
    served = descriptor.get("verifier_key")
    if served != verifier_key:
        raise EnrolmentError(
            f"key mismatch for {url}: the node's descriptor says {served!r}, the operator gave "
            f"{verifier_key!r}; nothing was recorded"
        )
    origin = descriptor.get("origin")
    if not isinstance(origin, str) or not origin:
        raise EnrolmentError(f"{url}/.well-known/biobank-node has no 'origin'")
    name = Verifier.from_key(verifier_key).name
    if name != origin:
        raise EnrolmentError(f"the key is named {name!r} but the node's origin is {origin!r}")
    country = descriptor.get("country")
    if not isinstance(country, str) or len(country) != 2 or not country.isupper():
        raise EnrolmentError(
            f"{url}/.well-known/biobank-node: 'country' must be an ISO 3166-1 "
            f"alpha-2 code, got {country!r}"
        )
    now = utc_now()
    with write_tx(engine) as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
        fields = {
            "url": url,
            "key": verifier_key,
            "country": country,
            "name": descriptor.get("name"),
            "descriptor": orjson.dumps(descriptor).decode(),
            "k": policy_k(descriptor),
            "state": "active",
            "enrolled_at": now,
            "retired_at": None,
        }
        if row is not None and row.state != "retired":
            raise EnrolmentError(f"{origin} is already enrolled (state {row.state})")
        if row is not None:
            if row.key != verifier_key:
                raise EnrolmentError(
                    f"{origin} was enrolled with another key; re-enrolling "
                    "under a new key is a revocation, not an enrolment"
                )
            conn.execute(nodes.update().where(nodes.c.id == row.id).values(**fields))
            from_size = int(row.tree_size)
        else:
            conn.execute(nodes.insert().values(origin=origin, tree_size=0, **fields))
            from_size = 0
        append(
            conn,
            key,
            "enrol",
            node=origin,
            url=url,
            key=verifier_key,
            country=country,
            from_size=from_size,
        )
    return {"origin": origin, "url": url, "country": country, "verifier_key": verifier_key}


def retire(engine: Engine, key: CatalogueKey, origin: str) -> None:
    """End a node's participation: no more harvests, its records leave the search results."""
    with write_tx(engine) as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
        if row is None:
            raise UnknownNode(f"no enrolled node with origin {origin!r}")
        if row.state == "retired":
            raise EnrolmentError(f"{origin} is already retired")
        conn.execute(
            nodes.update().where(nodes.c.id == row.id).values(state="retired", retired_at=utc_now())
        )
        append(conn, key, "retire", node=origin)


def clear_halt(engine: Engine, origin: str) -> int:
    """An operator clears a halted node after investigating; returns alerts cleared."""
    with write_tx(engine) as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
        if row is None:
            raise UnknownNode(f"no enrolled node with origin {origin!r}")
        if row.state != "halted":
            raise EnrolmentError(f"{origin} is not halted (state {row.state})")
        conn.execute(nodes.update().where(nodes.c.id == row.id).values(state="active"))
        result = conn.execute(
            alerts.update()
            .where(alerts.c.node_id == row.id, alerts.c.cleared_at.is_(None))
            .values(cleared_at=utc_now())
        )
        return int(result.rowcount)
