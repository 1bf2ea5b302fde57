"""Moved to :mod:`lora_audit.commands.support` (the commands layer is the only place that imports click)."""

from lora_audit.commands.support import ML_EXTRA, HEAVY, echo_json, one_line, one_line_errors  # noqa: F401
