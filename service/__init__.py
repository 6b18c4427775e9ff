"""What the node's and the catalogue's HTTP services share: problem+json, probes, metrics, logs."""
