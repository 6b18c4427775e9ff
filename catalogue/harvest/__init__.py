"""Harvest: fetch each enrolled node's log, verify it, store it and apply it to the index.

Everything a harvest step does lives here, in the order a step runs:

    harvester.py  the `Harvester`: lanes, worker processes, outcomes per node
    fetcher.py    HTTP reads from one node with a timeout, deadline and size limit
    stream.py     one node's step: fetch pages, verify leaf by leaf, store chunk by chunk
    keys.py       node key histories (rotations, revocations) the verification follows
    apply.py      write a step: staged chunks, the final commit, failures and halts
    index.py      apply the verified record changes of a step to the search index

`index.py` is here rather than in `catalogue.search` because it runs inside the final
commit of a harvest step (it is how a step is applied); search only reads what it wrote.
`catalogue.mirror` (the read side of the mirrored logs, served by the API) stays at the top
level: it reads what a harvest stored, and nothing in a harvest calls it.
"""

from __future__ import annotations

import sys

# httpx imports its command-line client (`httpx._main`: rich, pygments and click) when they
# are installed, as they are here for other reasons, unless that module is marked absent
# (it then defines a `main` that says so). No harvest uses it, and every harvest worker
# process paid for it: 4.4 MB of each (71 -> 67 MB warm) and their import at its start.
# Marked only when httpx is not imported yet (`setdefault`): a process that imported it
# first keeps what it has.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from catalogue.harvest.fetcher import NodeFetcher  # noqa: E402
from catalogue.harvest.harvester import Harvester, KeptWorkers, LaneEvent, Outcome
from catalogue.harvest.keys import load_history, node_keys, revoke

__all__ = [
    "Harvester",
    "KeptWorkers",
    "LaneEvent",
    "NodeFetcher",
    "Outcome",
    "load_history",
    "node_keys",
    "revoke",
]
