"""Benchmarks: node import, harvest (and its floor), search latency and audit at scale.

Run ``python -m bench --size 1M``; see bench/README.md.
"""
