"""Durable launch state: SQLite (WAL) in the study folder, one row per variant attempt.

Why SQLite: several processes (launchers, ``status``, ``launch --cancel``) read and write the state at once, and
a ``kill -9`` of a launcher must never leave it half-written. Every change is one short transaction.

Rules the schema enforces:
- a variant has at most one live attempt (queued or running): a partial UNIQUE index, so two launchers can never
  both create or claim one; a queued row is claimed with ``UPDATE ... WHERE state='queued'`` (rowcount says who won);
- a running row names its launcher; a launcher writes a heartbeat, and a running row whose launcher is gone (its
  pid is dead on this host, or its heartbeat is stale) is marked ``interrupted``, and the next launch re-runs the
  variant as a new attempt.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

DB_NAME = "launch.sqlite"
LIVE = ("queued", "running")
# a launcher on another host is presumed dead when its heartbeat is this old (seconds)
STALE_AFTER = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,            -- queued running done failed cancelled interrupted
    hash TEXT,
    launcher TEXT,
    pid INTEGER,                    -- the train.sh process (leader of its own process group)
    slot TEXT,
    queued_at REAL, started REAL, ended REAL,
    exit_code INTEGER,
    log TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    last_step INTEGER, total_steps INTEGER, last_epoch TEXT, last_loss REAL, eta TEXT,
    failure TEXT,
    reused_from TEXT,
    UNIQUE (variant, attempt)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_attempt ON attempts(variant) WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS launchers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    cancel INTEGER NOT NULL DEFAULT 0,
    ended REAL
);
"""


@dataclass
class Attempt:
    """One row of ``attempts``."""

    id: int
    variant: str
    attempt: int
    state: str
    hash: str | None = None
    launcher: str | None = None
    pid: int | None = None
    slot: str | None = None
    queued_at: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    log: str | None = None
    outputs: list[str] = field(default_factory=list)
    last_step: int | None = None
    total_steps: int | None = None
    last_epoch: str | None = None
    last_loss: float | None = None
    eta: str | None = None
    failure: str | None = None
    reused_from: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Attempt":
        d = dict(row)
        d["outputs"] = json.loads(d.get("outputs") or "[]")
        return cls(**d)


def db_path(study: Path) -> Path:
    return Path(study) / DB_NAME


class StudyState:
    """The state of one study folder. Opens (and creates) ``launch.sqlite``; every method is one transaction."""

    def __init__(self, study: Path, create: bool = True, readonly: bool = False):
        self.study = Path(study)
        path = db_path(self.study)
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            if not create and not path.exists():
                raise FileNotFoundError(path)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit; BEGIN by hand
            self._init_schema()
        self.db.row_factory = sqlite3.Row

    def _init_schema(self) -> None:
        # switching a new file to WAL can answer "database is locked" at once (no busy wait) when two launchers
        # start together; retry for as long as the busy timeout would have waited
        deadline = time.monotonic() + 30
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")  # readers see all tables or none
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                time.sleep(0.05)

    @property
    def ready(self) -> bool:
        """False while a launcher has created the file but not yet its tables (a reader then sees no state)."""
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE name IN ('attempts', 'launchers')").fetchall()
        return len(rows) == 2

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------------------------
    def _tx(self):
        return _Immediate(self.db)

    # -- launchers ----------------------------------------------------------------------------------------------
    def register_launcher(self) -> str:
        lid = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        now = time.time()
        with self._tx():
            self.db.execute("INSERT INTO launchers (id, host, pid, started, heartbeat) VALUES (?,?,?,?,?)",
                            (lid, socket.gethostname(), os.getpid(), now, now))
        return lid

    def heartbeat(self, lid: str) -> bool:
        """Refresh ``lid``'s heartbeat; True when someone asked it to cancel."""
        with self._tx():
            self.db.execute("UPDATE launchers SET heartbeat=? WHERE id=?", (time.time(), lid))
            row = self.db.execute("SELECT cancel FROM launchers WHERE id=?", (lid,)).fetchone()
        return bool(row and row["cancel"])

    def end_launcher(self, lid: str) -> None:
        with self._tx():
            self.db.execute("UPDATE launchers SET ended=? WHERE id=?", (time.time(), lid))

    def live_launchers(self) -> list[str]:
        rows = self.db.execute("SELECT * FROM launchers WHERE ended IS NULL").fetchall()
        return [r["id"] for r in rows if _alive(r)]

    def request_cancel(self) -> list[str]:
        """Ask every live launcher to stop its variants; returns their ids."""
        live = self.live_launchers()
        with self._tx():
            for lid in live:
                self.db.execute("UPDATE launchers SET cancel=1 WHERE id=?", (lid,))
        return live

    def recover(self) -> list[Attempt]:
        """Mark running rows whose launcher is gone as interrupted (and their queued rows as queued for anyone).

        Returns the attempts marked, so the caller can stop what their dead launcher left running."""
        marked = []
        with self._tx():
            launchers = {r["id"]: r for r in self.db.execute("SELECT * FROM launchers")}
            for row in self.db.execute("SELECT * FROM attempts WHERE state='running'").fetchall():
                lrow = launchers.get(row["launcher"])
                if lrow is not None and lrow["ended"] is None and _alive(lrow):
                    continue
                self.db.execute("UPDATE attempts SET state='interrupted', ended=?, failure=? WHERE id=?",
                                (time.time(), "launcher stopped (killed or crashed) while it ran", row["id"]))
                marked.append(Attempt.from_row(row))
            for lid, lrow in launchers.items():
                if lrow["ended"] is None and not _alive(lrow):
                    self.db.execute("UPDATE launchers SET ended=? WHERE id=?", (time.time(), lid))
        return marked

    # -- attempts -----------------------------------------------------------------------------------------------
    def enqueue(self, variant: str, hash_: str | None, rerun_failed: bool = False) -> Attempt | None:
        """A queued attempt for ``variant`` unless it is done, already live, or failed (and not ``rerun_failed``)."""
        with self._tx():
            last = self._last(variant)
            if last is not None:
                if last.state in LIVE or last.state == "done":
                    return None
                if last.state == "failed" and not rerun_failed:
                    return None
            n = (last.attempt if last else 0) + 1
            self.db.execute("INSERT INTO attempts (variant, attempt, state, hash, queued_at) VALUES (?,?,?,?,?)",
                            (variant, n, "queued", hash_, time.time()))
            return self._last(variant)

    def claim(self, attempt_id: int, lid: str, slot: str, log: str) -> bool:
        """Atomically take a queued attempt: True for the one launcher whose UPDATE changed the row."""
        with self._tx():
            cur = self.db.execute("UPDATE attempts SET state='running', launcher=?, slot=?, log=?, started=? "
                                  "WHERE id=? AND state='queued'", (lid, slot, log, time.time(), attempt_id))
            return cur.rowcount == 1

    def update(self, attempt_id: int, **values) -> None:
        if "outputs" in values:
            values["outputs"] = json.dumps(values["outputs"])
        cols = ", ".join(f"{k}=?" for k in values)
        with self._tx():
            self.db.execute(f"UPDATE attempts SET {cols} WHERE id=?", (*values.values(), attempt_id))

    def finish(self, attempt_id: int, state: str, **values) -> None:
        self.update(attempt_id, state=state, ended=time.time(), **values)

    def get(self, attempt_id: int) -> Attempt:
        return Attempt.from_row(self.db.execute("SELECT * FROM attempts WHERE id=?", (attempt_id,)).fetchone())

    def _last(self, variant: str) -> Attempt | None:
        row = self.db.execute("SELECT * FROM attempts WHERE variant=? ORDER BY attempt DESC LIMIT 1",
                              (variant,)).fetchone()
        return Attempt.from_row(row) if row else None

    def last(self, variant: str) -> Attempt | None:
        return self._last(variant)

    def attempts(self, variant: str | None = None) -> list[Attempt]:
        if variant is None:
            rows = self.db.execute("SELECT * FROM attempts ORDER BY variant, attempt").fetchall()
        else:
            rows = self.db.execute("SELECT * FROM attempts WHERE variant=? ORDER BY attempt", (variant,)).fetchall()
        return [Attempt.from_row(r) for r in rows]

    def queued(self, lid_variants: list[str] | None = None) -> list[Attempt]:
        rows = self.db.execute("SELECT * FROM attempts WHERE state='queued' ORDER BY id").fetchall()
        out = [Attempt.from_row(r) for r in rows]
        return [a for a in out if lid_variants is None or a.variant in lid_variants]

    def done_with_hash(self, hash_: str) -> Attempt | None:
        """A finished, trained (not itself linked) attempt of this config hash."""
        row = self.db.execute("SELECT * FROM attempts WHERE hash=? AND state='done' AND reused_from IS NULL "
                              "ORDER BY ended LIMIT 1", (hash_,)).fetchone()
        return Attempt.from_row(row) if row else None

    def running_with_hash(self, hash_: str) -> bool:
        row = self.db.execute("SELECT 1 FROM attempts WHERE hash=? AND state='running'", (hash_,)).fetchone()
        return row is not None


class _Immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so read-then-write is atomic."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _alive(launcher_row: sqlite3.Row) -> bool:
    """Is this launcher still running? Same host: its pid exists (and is not a zombie); else a fresh heartbeat."""
    fresh = time.time() - float(launcher_row["heartbeat"]) < STALE_AFTER
    if launcher_row["host"] == socket.gethostname():  # the heartbeat also guards against a reused pid
        return fresh and pid_alive(int(launcher_row["pid"]))
    return fresh


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for us
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
