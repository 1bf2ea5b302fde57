"""What a kohya training log says about speed: tqdm's ``1.52s/it`` or ``2.10it/s`` (the last one printed)."""

from __future__ import annotations

import re
from pathlib import Path

from lora_audit.errors import EvidenceError

_TAIL = 4 * 1024 * 1024
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(s/it|it/s)")


def seconds_per_step(text: str) -> float | None:
    matches = _RATE.findall(text)
    if not matches:
        return None
    value, unit = matches[-1]
    v = float(value)
    return v if unit == "s/it" else (1.0 / v if v else None)


def seconds_per_step_option(value: str) -> float:
    """``--seconds-per-step``: a number, or a kohya log to read it from; a positive, finite number of seconds."""
    s = _seconds_per_step_value(value)
    if not (0 < s < float("inf")):
        raise EvidenceError(f"--seconds-per-step must be a positive number of seconds, got {s:g}")
    return s


def _seconds_per_step_value(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    p = Path(value)
    if not p.is_file():
        raise EvidenceError("--seconds-per-step wants a number or a training log file", value)
    # the last speed printed is the one wanted: read the log's tail only, so a multi-GB log costs no memory
    try:
        with p.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - _TAIL))
            text = f.read(_TAIL).decode("utf-8", errors="replace").replace("\r", "\n")
    except OSError as e:
        raise EvidenceError(f"cannot read: {e.strerror or e}", value) from None
    s = seconds_per_step(text)
    if s is None:
        raise EvidenceError("no tqdm speed (s/it or it/s) in this log", value)
    return s
