"""Search latency while 20 clients ask for proofs (issue 16 item 6).

``proof_load(url, rounds)`` measures the ``/v1/search`` mix of ``bench.federation`` on a
served catalogue twice: idle, then while ``clients`` threads in ANOTHER process (so that
their GIL is not the measuring one's) ask the node mirrors for consistency proofs from a
random size to the newest and inclusion proofs of random leaves, nonstop. A proof client
answered 503 (all proof slots busy past the wait) counts as ``busy``.

``python -m bench.proofload URL [--clients 20] [--rounds 20]`` runs it against any catalogue.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import httpx

from bench.federation import load_cli, mirrors, search_under_load

__all__ = ["proof_load"]


def _hammer(
    url: str,
    targets: list[tuple[str, int]],
    clients: int,
    stop: Any,
    results: Any,
) -> None:
    """``clients`` threads asking for proofs until ``stop`` is set; puts their counts."""
    counts = {"ok": 0, "busy": 0, "other": 0}
    lock = threading.Lock()

    def one(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                origin, size = rng.choice(targets)
                base = f"/v1/nodes/{origin}/log/proof"
                if rng.random() < 0.5:
                    params = {"from": rng.randint(1, size), "to": size}
                    resp = client.get(base + "/consistency", params=params)
                else:
                    params = {"index": rng.randrange(size), "size": size}
                    resp = client.get(base + "/inclusion", params=params)
                key = {200: "ok", 503: "busy"}.get(resp.status_code, "other")
                with lock:
                    counts[key] += 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(counts)


def proof_load(url: str, rounds: int, clients: int = 20) -> dict[str, Any]:
    """Search p50/p95 idle and under ``clients`` concurrent proof clients."""
    targets = [(origin, size) for origin, size in mirrors(url) if size > 1]
    if not targets:
        return {"skipped": "no mirrored log to ask proofs of"}
    idle, loaded, counts, seconds = search_under_load(url, rounds, _hammer, (url, targets, clients))
    return {
        "clients": clients,
        "mirrors": [{"origin": o, "size": s} for o, s in targets],
        "idle": idle,
        "loaded": loaded,
        "proofs": {**counts, "per_s": counts["ok"] / seconds},
    }


def main(argv: list[str] | None = None) -> None:
    load_cli("bench.proofload", __doc__, proof_load, "proofs", argv)


if __name__ == "__main__":
    main()
