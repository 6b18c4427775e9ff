"""biobank-catalogue: enrols nodes, harvests and verifies their logs (`harvest/`) and serves
a combined faceted search (`search/`) over the API (`api/`)."""
