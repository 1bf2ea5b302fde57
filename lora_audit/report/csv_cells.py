"""Moved to ``lora_audit.format`` (values written out; every layer may use it). Kept for importers not yet
updated: import from ``lora_audit.format``."""

from lora_audit.format import FORMULA_START, csv_cell, csv_row

__all__ = ["FORMULA_START", "csv_cell", "csv_row"]
