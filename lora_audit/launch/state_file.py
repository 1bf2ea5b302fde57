"""The launch state file (``launch.sqlite`` in a study folder) checked before SQLite opens it: a directory, another
tool's file or one cut short is refused with one line that says how to start over. Used by ``launch.state``."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from lora_audit.errors import EvidenceError

DB_NAME = "launch.sqlite"


def db_path(study: Path) -> Path:
    return Path(study) / DB_NAME


_SQLITE_HEADER = b"SQLite format 3\x00"


def bad_state(study: Path, what: str) -> EvidenceError:
    """The one line for a launch state file that cannot be used: what is wrong, and how to start over."""
    path = db_path(study)
    q = shlex.quote(str(path))
    what = " ".join("".join(ch if ch.isprintable() else " " for ch in what).split())[:200]  # SQLite's own text
    return EvidenceError(f"launch state unreadable ({what}); to start over, move it away "
                         f"(mv {q} {q}.bad) and launch again: attempts are numbered after the logs on disk "
                         "and variants whose LoRA is on disk are not retrained", str(path))


def check_state_file(study: Path) -> None:
    """Refuse a launch.sqlite that is not a file, not SQLite, or cut short; before SQLite opens it.

    An empty file is fine (a launcher creating it this moment, or SQLite's own fresh file)."""
    path = db_path(study)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise bad_state(study, e.strerror or str(e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise bad_state(study, "a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise bad_state(study, "not a regular file")
    if st.st_size == 0:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise bad_state(study, e.strerror or str(e)) from None
    if not head.startswith(_SQLITE_HEADER):
        raise bad_state(study, "not an SQLite file")
    if len(head) < 100:
        raise bad_state(study, f"truncated: {st.st_size} bytes")
    # https://www.sqlite.org/fileformat.html: page size at 16 (1 means 65536); the size in pages at 28 is valid
    # when the change counter (24) equals the version-valid-for number (92)
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96] and pages > 0
    # while a WAL holds pages, a checkpoint in progress may have written page 1 before the pages after it
    wal = Path(f"{path}-wal")
    valid = valid and not (wal.exists() and wal.stat().st_size > 0)
    if page < 512 or page & (page - 1) or st.st_size % page or (valid and st.st_size < pages * page):
        raise bad_state(study, f"truncated: {st.st_size} bytes")
