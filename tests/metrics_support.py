"""Reading a Prometheus text exposition in tests: every sample by name and labels."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, labels: Mapping[str, str] | None = None) -> float:
    """One sample's value (KeyError naming what is missing)."""
    key = (name, frozenset((labels or {}).items()))
    if key not in samples:
        raise KeyError(f"no sample {name}{dict(labels or {})}")
    return samples[key]


def wait_ready(client: httpx.Client, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers 200 (the catalogue loads its index after start)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.05)


def node_secrets(home: Path) -> list[str]:
    """How a node's secrets could show up in text: the pseudonym secret (hex, base64) and
    every signing key's private part."""
    raw = (home / "pseudonym.secret").read_bytes()
    found = [raw.hex(), base64.b64encode(raw).decode().rstrip("=")]
    for key_file in home.glob("node.key*"):
        # "PRIVATE+KEY+name+hexid+base64": the base64 part may itself hold "+"
        found.append(key_file.read_text(encoding="utf-8").strip().split("+", 4)[4])
    return found
