"""The durable vote store: ``votes.sqlite`` in the comparison folder (stdlib sqlite3, WAL).

Every connection is short-lived and every write is one ``BEGIN IMMEDIATE`` transaction, so two browsers (two server
threads, or two server processes) voting at once lose nothing, and a killed server loses nothing that it had
acknowledged. An undone vote is kept, marked ``undone_at``, and no longer counted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lora_audit.errors import EvidenceError

FILE = "votes.sqlite"
TIE = "tie"
BOTH_BAD = "both_bad"
NON_MODEL_CHOICES = (TIE, BOTH_BAD)
MODES = ("best-of", "pairwise")
KINDS = ("human", "machine")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    comparison_id TEXT    NOT NULL,
    prompt        TEXT    NOT NULL,
    seed          INTEGER NOT NULL,
    mode          TEXT    NOT NULL,           -- best-of | pairwise
    shown         TEXT    NOT NULL,           -- JSON list of model names, in the order shown (left to right)
    choice        TEXT    NOT NULL,           -- one of the shown model names, 'tie' or 'both_bad'
    notes         TEXT    NOT NULL DEFAULT '',
    voter         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,           -- human | machine
    judge         TEXT,                       -- machine votes: the metric that decided, e.g. grid_fit:max
    created_at    TEXT    NOT NULL,           -- UTC, ISO 8601
    undone_at     TEXT                        -- set by undo; such a vote is kept but not counted
);
CREATE INDEX IF NOT EXISTS votes_item ON votes (comparison_id, voter);
"""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Vote:
    comparison_id: str
    prompt: str
    seed: int
    mode: str
    shown: tuple[str, ...]
    choice: str
    voter: str
    kind: str = "human"
    notes: str = ""
    judge: str | None = None
    created_at: str = field(default_factory=now)
    undone_at: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if len(self.shown) < 2 or len(set(self.shown)) != len(self.shown):
            raise ValueError("shown must name two or more different models")
        if self.mode == "pairwise" and len(self.shown) != 2:
            raise ValueError("a pairwise vote shows exactly two models")
        if self.choice not in self.shown and self.choice not in NON_MODEL_CHOICES:
            raise ValueError(f"choice must be a shown model, {TIE!r} or {BOTH_BAD!r}, not {self.choice!r}")

    @property
    def winner(self) -> str | None:
        """The chosen model, or None for a tie / both bad."""
        return None if self.choice in NON_MODEL_CHOICES else self.choice

    @property
    def key(self) -> tuple[str, frozenset[str]]:
        """What was judged: the (prompt, seed) and the set of models shown, whatever their order."""
        return self.comparison_id, frozenset(self.shown)


COLUMNS = ("id", "comparison_id", "prompt", "seed", "mode", "shown", "choice", "notes", "voter", "kind", "judge",
           "created_at", "undone_at")


class VoteStore:
    def __init__(self, folder: Path | str):
        self.path = Path(folder) / FILE
        if self.path.exists() and not self.path.is_file():  # a FIFO or a device would hang or stream forever
            raise EvidenceError("not a vote store: not a regular file", str(self.path))
        if self.path.is_symlink() and not self.path.exists():  # sqlite would create the file it points to
            raise EvidenceError("not a vote store: a symlink to nothing", str(self.path))
        with self._connect(setup=False) as db:  # nothing is written before the file is known to be ours
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "votes" in tables:
                cols = tuple(r[1] for r in db.execute("PRAGMA table_info(votes)"))
                if cols != COLUMNS:
                    raise EvidenceError(f"not a vote store of lora-audit: its votes table has the columns "
                                        f"{', '.join(cols)}", str(self.path))
            elif tables - {"sqlite_sequence"}:  # someone else's database: never written into
                raise EvidenceError("not a vote store of lora-audit (no votes table; other tables: "
                                    f"{', '.join(sorted(tables))})", str(self.path))
        with self._connect() as db:
            db.executescript(_SCHEMA)
        if "votes" in tables:
            self.votes(include_undone=True)  # every row checked on opening: a bad store is one line, never a 500

    @contextmanager
    def _connect(self, setup: bool = True) -> Iterator[sqlite3.Connection]:
        """A short-lived connection; any SQLite error (garbage, a truncated file, a lock held too long) becomes one
        EvidenceError naming the file."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.DatabaseError as e:
            raise EvidenceError(f"cannot open the vote store: {e}", str(self.path)) from None
        try:
            db.execute("PRAGMA busy_timeout=30000")
            if setup:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            yield db
        except sqlite3.DatabaseError as e:
            raise EvidenceError(f"not a readable vote store ({e}): move it away to start a new one",
                                str(self.path)) from None
        finally:
            db.close()

    def add(self, vote: Vote) -> Vote:
        """Store one vote (one transaction, durable when this returns); the stored vote, with its id."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(
                "INSERT INTO votes (comparison_id, prompt, seed, mode, shown, choice, notes, voter, kind, judge, "
                "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (vote.comparison_id, vote.prompt, vote.seed, vote.mode, json.dumps(list(vote.shown)), vote.choice,
                 vote.notes, vote.voter, vote.kind, vote.judge, vote.created_at))
            db.execute("COMMIT")
            return Vote(**{**vote.__dict__, "id": cur.lastrowid})

    def add_many(self, votes: list[Vote]) -> int:
        """Store several votes in one transaction (machine judging); how many."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO votes (comparison_id, prompt, seed, mode, shown, choice, notes, voter, kind, judge, "
                "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(v.comparison_id, v.prompt, v.seed, v.mode, json.dumps(list(v.shown)), v.choice, v.notes, v.voter,
                  v.kind, v.judge, v.created_at) for v in votes])
            db.execute("COMMIT")
        return len(votes)

    def undo_last(self, voter: str, kind: str = "human") -> Vote | None:
        """Mark this voter's latest counted vote as undone; that vote, or None when there is none."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM votes WHERE voter=? AND kind=? AND undone_at IS NULL "
                             "ORDER BY id DESC LIMIT 1", (voter, kind)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            stamp = now()
            db.execute("UPDATE votes SET undone_at=? WHERE id=?", (stamp, row[0]))
            db.execute("COMMIT")
        v = _row(row, self.path)
        return Vote(**{**v.__dict__, "undone_at": stamp})

    def votes(self, *, kind: str | None = None, voter: str | None = None, mode: str | None = None,
              include_undone: bool = False) -> list[Vote]:
        """Votes in the order they were cast; undone ones only when asked."""
        sql, args = "SELECT * FROM votes WHERE 1=1", []
        for col, val in (("kind", kind), ("voter", voter), ("mode", mode)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        if not include_undone:
            sql += " AND undone_at IS NULL"
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [_row(r, self.path) for r in rows]

    def judged(self, voter: str, kind: str = "human") -> set[tuple[str, frozenset[str]]]:
        """The (comparison_id, models shown) this voter has a counted vote on."""
        return {v.key for v in self.votes(voter=voter, kind=kind)}


_ROW_TYPES: dict[str, type | tuple[type, ...]] = {
    "comparison_id": str, "prompt": str, "seed": int, "mode": str, "shown": str, "choice": str, "notes": str,
    "voter": str, "kind": str, "judge": (str, type(None)), "created_at": str, "undone_at": (str, type(None))}


def _row(r: tuple, path: Path | str = FILE) -> Vote:
    """One stored row as a Vote; EvidenceError naming the file and the row when it is not one this tool wrote
    (SQLite columns take any type, so each is checked)."""
    values = dict(zip(COLUMNS, r))
    where = f"row id {values.get('id')!r}"
    try:
        for col, kind in _ROW_TYPES.items():
            if not isinstance(values[col], kind):
                raise ValueError(f"{col} is {type(values[col]).__name__}")
        shown = json.loads(values["shown"])
        if not isinstance(shown, list) or not all(isinstance(m, str) for m in shown):
            raise ValueError("shown is not a JSON list of model names")
        return Vote(comparison_id=values["comparison_id"], prompt=values["prompt"], seed=values["seed"],
                    mode=values["mode"], shown=tuple(shown), choice=values["choice"], notes=values["notes"],
                    voter=values["voter"], kind=values["kind"], judge=values["judge"],
                    created_at=values["created_at"], undone_at=values["undone_at"], id=values["id"])
    except RecursionError:
        raise EvidenceError(f"{where}: shown is nested too deeply", str(path)) from None
    except (ValueError, KeyError) as e:  # json errors and int digit limits are ValueErrors
        raise EvidenceError(f"{where}: not a vote ({e})", str(path)) from None


def has_votes(folder: Path | str) -> bool:
    """Whether the folder has a vote store (anything by that name: a FIFO or a broken link is then refused by
    VoteStore in one line rather than ignored)."""
    p = Path(folder) / FILE
    return p.exists() or p.is_symlink()
