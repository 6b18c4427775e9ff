"""A small cache of the newest Merkle proofs the node and the catalogue served.

Many clients ask for the same proofs (consistency from the size they hold to the newest
checkpoint, inclusion in the newest tree); the answer for a given tree never changes, so
the cache key always holds the root of the tree the proof is for: a new checkpoint makes
new keys, and the least recently used proofs fall out.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["ProofCache"]


class ProofCache:
    """``{"proof": [base64...]}`` bodies by key, the ``size`` most recently used."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, dict[str, list[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable[[], list[bytes]]) -> dict[str, list[str]]:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return body
        body = {"proof": [base64.b64encode(h).decode() for h in make()]}
        with self._lock:
            self.misses += 1
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return body
