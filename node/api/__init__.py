"""HTTP routers of the node (thin: they read the store and shape responses)."""
