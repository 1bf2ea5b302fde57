"""Votes on a comparison folder: the durable store (store.py), what a folder holds (data.py), the blind voting
page (server.py), machine votes (judge.py), statistics (stats.py) and exports (export.py)."""
