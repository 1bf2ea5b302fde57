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

from lora_audit.launch.state_file import bad_state, check_state_file, db_path

LIVE = ("queued", "running")
FOUND_SLOT = "disk"  # the slot of an attempt recorded from what was on disk, not run by a launcher
# the slot of an attempt submitted to Slurm: its job lives on without the launcher, so a dead launcher does not
# make it interrupted (the Slurm launcher re-attaches to it instead)
SLURM_SLOT = "slurm"
# columns added after the first release: a launch.sqlite written before them is read without them and gets them
# (ALTER TABLE ... ADD COLUMN) when a launcher next opens it for writing
_ADDED_COLUMNS = {"attempts": {"job_id": "TEXT", "slurm_state": "TEXT"}}
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
    job_id TEXT,                    -- the Slurm job id (launch --executor slurm); NULL for local attempts
    slurm_state TEXT,               -- the Slurm job state last seen (PENDING RUNNING COMPLETED TIMEOUT ...)
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


# the columns each table must have; a file whose tables lack them is not our state (another tool's, or damaged)
_COLUMNS = {
    "attempts": {"id", "variant", "attempt", "state", "hash", "launcher", "pid", "slot", "queued_at", "started",
                 "ended", "exit_code", "log", "outputs", "last_step", "total_steps", "last_epoch", "last_loss",
                 "eta", "failure", "reused_from"},
    "launchers": {"id", "host", "pid", "started", "heartbeat", "cancel", "ended"},
}
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
    job_id: str | None = None
    slurm_state: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Attempt:
        """A row as we wrote it; a value edited by hand into the wrong type reads as unknown (None), not a crash."""
        d = {k: v for k, v in dict(row).items() if k in _FIELDS}
        try:
            outputs = json.loads(d.get("outputs") or "[]")
        except (ValueError, RecursionError):
            outputs = []
        d["outputs"] = [o for o in outputs if isinstance(o, str)] if isinstance(outputs, list) else []
        for k, v in d.items():
            want = _FIELDS[k]
            if v is not None and k != "outputs" and not isinstance(v, want):
                d[k] = float(v) if want is float and isinstance(v, int) else None
        if not isinstance(d.get("variant"), str) or not isinstance(d.get("state"), str):
            raise sqlite3.DatabaseError(f"attempt row {d.get('id')} has no variant or state")
        d["attempt"] = d.get("attempt") if isinstance(d.get("attempt"), int) else 0
        return cls(**d)


_FIELDS: dict[str, type] = {"id": int, "variant": str, "attempt": int, "state": str, "hash": str, "launcher": str,
                            "pid": int, "slot": str, "queued_at": float, "started": float, "ended": float,
                            "exit_code": int, "log": str, "outputs": list, "last_step": int, "total_steps": int,
                            "last_epoch": str, "last_loss": float, "eta": str, "failure": str, "reused_from": str,
                            "job_id": str, "slurm_state": str}


class StudyState:
    """The state of one study folder. Opens (and creates) ``launch.sqlite``; every method is one transaction."""

    def __init__(self, study: Path, create: bool = True, readonly: bool = False):
        self.study = Path(study)
        path = db_path(self.study)
        check_state_file(self.study)
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            else:
                if not create and not path.exists():
                    raise FileNotFoundError(path)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit; BEGIN by hand
            self._check_schema()
            if not readonly:
                self._init_schema()
        except sqlite3.DatabaseError as e:
            if _busy(e):
                raise
            raise bad_state(self.study, str(e)) from None
        self.db.row_factory = sqlite3.Row

    def _check_schema(self) -> None:
        """Our tables with our columns, or none yet (a new file); and pages SQLite can read."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, columns in _COLUMNS.items():
            if table not in tables:
                continue
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                raise bad_state(self.study, f"table {table} lacks {', '.join(sorted(columns - have))}")
        foreign = tables - set(_COLUMNS) - {"sqlite_sequence"}
        if foreign and not tables & set(_COLUMNS):
            raise bad_state(self.study, f"not a lora-audit launch state (tables: {', '.join(sorted(foreign))})")
        check = self.db.execute("PRAGMA quick_check").fetchone()
        if check and check[0] != "ok":
            raise bad_state(self.study, f"damaged: {check[0]}")

    def _init_schema(self) -> None:
        # switching a new file to WAL can answer "database is locked" at once (no busy wait) when two launchers
        # start together; retry for as long as the busy timeout would have waited
        deadline = time.monotonic() + 30
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")  # readers see all tables or none
                self._migrate()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Add the columns a launch.sqlite written by an older version lacks (one transaction)."""
        with self._tx():
            for table, cols in _ADDED_COLUMNS.items():
                have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                for name, kind in cols.items():
                    if name not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

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

    def launcher_gone(self, lid: str | None) -> bool:
        """Launcher ``lid`` is unknown, ended, or no longer alive: an attempt it left ``running`` was interrupted."""
        row = self.db.execute("SELECT * FROM launchers WHERE id=?", (lid,)).fetchone() if lid else None
        return row is None or row["ended"] is not None or not _alive(row)

    def has_slurm_attempts(self) -> bool:
        """Was any variant of this study ever submitted to Slurm?"""
        return self.db.execute("SELECT 1 FROM attempts WHERE slot=? LIMIT 1", (SLURM_SLOT,)).fetchone() is not None

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
                if row["slot"] == SLURM_SLOT:  # a Slurm job outlives its launcher: lora_audit.launch.slurm
                    continue
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
    def enqueue(self, variant: str, hash_: str | None, rerun_failed: bool = False, after: int = 0,
                rerun_done: bool = False) -> Attempt | None:
        """A queued attempt for ``variant`` unless it is done (and not ``rerun_done``), already live, or failed
        (and not ``rerun_failed``). Its number follows both the state's last attempt and ``after`` (the highest
        attempt the variant's files on disk show)."""
        with self._tx():
            last = self._last(variant)
            if last is not None:
                if last.state in LIVE or (last.state == "done" and not rerun_done):
                    return None
                if last.state == "failed" and not rerun_failed:
                    return None
            n = max(last.attempt if last else 0, after) + 1
            self.db.execute("INSERT INTO attempts (variant, attempt, state, hash, queued_at) VALUES (?,?,?,?,?)",
                            (variant, n, "queued", hash_, time.time()))
            return self._last(variant)

    def record_found(self, variant: str, hash_: str | None, attempt: int, log: str | None,
                     outputs: list[str]) -> Attempt | None:
        """Record a variant the state does not know but whose finished LoRA is on disk (the state file was lost
        after it trained) as done, without training it again. Its slot reads ``disk``. None when the state knows
        the variant after all (another launcher recorded it first)."""
        with self._tx():
            if self._last(variant) is not None:
                return None
            now = time.time()
            self.db.execute("INSERT INTO attempts (variant, attempt, state, hash, slot, queued_at, started, ended, "
                            "log, outputs) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (variant, max(attempt, 1), "done", hash_, FOUND_SLOT, now, now, now, log,
                             json.dumps(outputs)))
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

    def finish_running(self, attempt_id: int, state: str, **values) -> bool:
        """``finish`` only while the attempt is still running: True for the one caller that ended it (two Slurm
        launchers watching the same job both see it end)."""
        if "outputs" in values:
            values["outputs"] = json.dumps(values["outputs"])
        values = {"state": state, "ended": time.time(), **values}
        cols = ", ".join(f"{k}=?" for k in values)
        with self._tx():
            cur = self.db.execute(f"UPDATE attempts SET {cols} WHERE id=? AND state='running'",
                                  (*values.values(), attempt_id))
            return cur.rowcount == 1

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


def _busy(e: sqlite3.DatabaseError) -> bool:
    """Another process holds the file (retry), as opposed to a file that is not a usable state (give up)."""
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


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
    try:
        fresh = time.time() - float(launcher_row["heartbeat"]) < STALE_AFTER
        if launcher_row["host"] == socket.gethostname():  # the heartbeat also guards against a reused pid
            return fresh and pid_alive(int(launcher_row["pid"]))
    except (TypeError, ValueError, OverflowError):  # a row edited by hand: not a launcher we can wait for
        return False
    return fresh


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and -1 would name a process group or every process, never one launcher
        return False
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
