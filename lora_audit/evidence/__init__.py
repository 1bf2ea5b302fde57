"""One parser per evidence kind, and ``load_run()`` that merges them into a Run with provenance."""

from lora_audit.evidence.run import detect_kind, load_run, load_runs, parse_file

__all__ = ["detect_kind", "load_run", "load_runs", "parse_file"]
