"""biobank-node: import a biobank's exports, check them, publish a signed append-only log."""
