"""HTTP routers of the catalogue (thin: they call services and shape responses)."""
