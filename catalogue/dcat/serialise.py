"""Content negotiation for `/v1/dcat` and the serialised bytes (Turtle or JSON-LD)."""

from __future__ import annotations

from rdflib import Graph

__all__ = ["MEDIA_TYPES", "choose", "serialise"]

# media type -> rdflib format; the first is the default
MEDIA_TYPES = {"text/turtle": "turtle", "application/ld+json": "json-ld"}
_ALIASES = {"ttl": "text/turtle", "turtle": "text/turtle", "jsonld": "application/ld+json"}
_WILDCARDS = {"*/*": "text/turtle", "text/*": "text/turtle", "application/*": "application/ld+json"}


def choose(accept: str | None, fmt: str | None = None) -> str | None:
    """The media type to answer with: `fmt` (`ttl` or `jsonld`) when given, else the Accept
    header's most preferred type offered (Turtle when absent); None when nothing fits."""
    if fmt is not None:
        return _ALIASES.get(fmt)
    if not accept or not accept.strip():
        return "text/turtle"
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        offered = media if media in MEDIA_TYPES else _WILDCARDS.get(media)
        if offered is not None and q > 0:
            ranked.append((-q, position, offered))
    return min(ranked)[2] if ranked else None


def serialise(g: Graph, media_type: str) -> bytes:
    data = g.serialize(format=MEDIA_TYPES[media_type], encoding="utf-8")
    return data if isinstance(data, bytes) else data.encode("utf-8")
