"""kohya's names for the files a run saves along the way (``train_util.EPOCH_FILE_NAME`` = ``"{}-{:06d}"``,
``STEP_FILE_NAME`` = ``"{}-step{:08d}"``; the final file is the bare ``output_name``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

EPOCH_FILE = re.compile(r"^(?P<stem>.+?)-(?:(?P<epoch>\d{6})|step(?P<step>\d{8}))$")


def epoch_key(path: str | os.PathLike) -> tuple[str, int | None, str]:
    """(series stem, epoch or step number or None for the final file, "epoch"/"step"/"final") of a kohya output
    name: ``name-000003.safetensors`` -> ("name", 3, "epoch"), ``name-step00000500`` -> ("name", 500, "step")."""
    stem = Path(path).name
    if stem.endswith(".safetensors"):
        stem = stem[: -len(".safetensors")]
    m = EPOCH_FILE.match(stem)
    if not m:
        return stem, None, "final"
    if m.group("epoch"):
        return m.group("stem"), int(m.group("epoch")), "epoch"
    return m.group("stem"), int(m.group("step")), "step"


def epoch_order(path: str | os.PathLike) -> tuple[int, int, str]:
    """Sort key in training order: step files, epoch files, then the final file."""
    _, n, what = epoch_key(path)
    return ({"step": 0, "epoch": 0, "final": 1}[what], n or 0, what)


def series_files(path: str | os.PathLike) -> list[str]:
    """Every file of ``path``'s series in its folder (``name-000001.safetensors`` ... ``name.safetensors``), in
    training order; ``[path]`` when it has no siblings."""
    p = Path(path)
    stem = epoch_key(p)[0]
    try:
        found = [q for q in p.parent.glob("*.safetensors") if q.is_file() and epoch_key(q)[0] == stem]
    except OSError:
        found = []
    if p not in found:
        found.append(p)
    return [str(q) for q in sorted(found, key=epoch_order)]
