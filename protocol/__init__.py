"""The shared protocol package: canonical bytes, Merkle log, signed notes, entries, verification.

Pure functions and small classes used by node, catalogue and auditor alike; it imports no web
framework or database. Modules: errors, canonical, merkle, note, entries, verify, schema,
codelists (and keys, the key-history rules shared by harvest and audit).
"""
