"""Readers for biobank exports: CSV/TSV with a mapping, FHIR bundles, BBMRI-ERIC Directory."""
