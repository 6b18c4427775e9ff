"""What the node's and the catalogue's services share: problem+json, probes, metrics, logs,
and the SQLite online backup."""
