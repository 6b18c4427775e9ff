"""biobank-audit: verify a catalogue and its nodes from published material alone.

Modules: `fetcher` (where material comes from: HTTP or a bundle directory, and `fetch` to save
one), `state` (the last verified catalogue checkpoint), `catalogue_log` (replaying the
catalogue's own log), `node_logs` (rebuilding node trees and the live state, applying what
`examine` found per leaf; `parallel` runs `examine` in worker processes for big bundle logs),
`livestate` (live records and interval sums), `search_check` (comparing them with the
search API), `checks` (the whole run), `report` (human and JSON output), `cli` (the console
script). Only `protocol` is imported, never node or catalogue.
"""
