"""comparison.json and votes.sqlite as a careless or hostile user leaves them: every command that reads them
(vote, vote --judge, stats, export, audit --compare/--study, bisect --from-votes) says what is wrong in one line
``error: <file>: <what>`` and exits 2: no traceback, no hang."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comparison_fixture import make_comparison  # noqa: E402
from conftest import write_run  # noqa: E402
from test_bisect_cli import BAD, GOOD  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402


def _set(path: str, value):
    def edit(data):
        x = data
        keys = path.split(".")
        for k in keys[:-1]:
            x = x[int(k)] if isinstance(x, list) else x[k]
        last = keys[-1]
        if isinstance(x, list):
            x[int(last)] = value
        else:
            x[last] = value
        return json.dumps(data)
    return edit


def _raw(text: str | bytes):
    return lambda data: text


def _deep(n: int) -> str:
    return json.dumps({"comparisons": []})[:-1] + ', "metadata": ' + "[" * n + "]" * n + "}"


JSON_CASES = {
    "empty": _raw(""),
    "truncated": lambda data: json.dumps(data)[:300],
    "garbage": _raw(b"\x00\xffPK\x03\x04 garbage \xfe"),
    "latin-1": lambda data: json.dumps(data, ensure_ascii=False).replace("a knight", "a kni\u00e9ght")
    .encode("latin-1"),
    "utf-16": lambda data: json.dumps(data).encode("utf-16"),
    "a list": _raw("[]"),
    "null": _raw("null"),
    "comparisons a string": _raw('{"comparisons": "x"}'),
    "no comparisons": _raw('{"comparisons": []}'),
    "seed a string": _set("comparisons.0.seed", "1"),
    "seed a float": _set("comparisons.0.seed", 1.5),
    "seed a bool": _set("comparisons.0.seed", True),
    "seed null": _set("comparisons.0.seed", None),
    "model name a list": _set("comparisons.0.models.0.name", ["base"]),
    "models null": _set("comparisons.0.models", None),
    "models a dict": _set("comparisons.0.models", {"name": "x"}),
    "model a string": _set("comparisons.0.models.1", "lora_a"),
    "metrics nested": _set("comparisons.0.models.0.metrics", {"grid_fit": {"a": [1]}}),
    "metrics a list": _set("comparisons.0.models.0.metrics", [1, 2]),
    "strength a formula": _set("comparisons.0.models.1.lora_strength", "=1+1"),
    "strength 1e400": lambda data: _set("comparisons.0.models.1.lora_strength", 12345.5)(data).replace(
        "12345.5", "1e400"),
    "image null": _set("comparisons.0.models.0.image", None),
    "statistics a list": _set("statistics", [1]),
    "statistics.models strings": _set("statistics.models", ["x"]),
    "timing a string": _set("statistics.models", [{"model_name": "base", "timing": "fast"}]),
    "distance a number": _set("statistics.models", [{"model_name": "base", "distance_to_base": 3}]),
    "findings numbers": _set("findings", [1, 2]),
    "metadata a string": _set("metadata", "x"),
    "duplicate model": lambda data: _set("comparisons.0.models.1.name", data["comparisons"][0]["models"][0]["name"])(
        data),
    "depth bomb": _raw("[" * 100_000),
    "object depth bomb": _raw('{"a":' * 100_000),
    "deep but parseable": _raw(_deep(200)),
    "huge integer": lambda data: _set("comparisons.0.seed", 7)(data).replace('"seed": 7', '"seed": ' + "9" * 5000),
}

SPECIAL_JSON = ["missing", "a directory", "a fifo", "a symlink to /dev/zero", "a dangling symlink"]


def _store(folder: Path) -> None:
    store = VoteStore(folder)
    for _ in range(30):
        store.add(Vote("cmp-001-1", "a knight", 1, "best-of", ("base", "lora_a", "lora_b"), "lora_a", "me",
                       notes="x" * 200))


def _sql(*statements: str):
    def make(path: Path) -> None:
        db = sqlite3.connect(path)
        for s in statements:
            db.execute(s)
        db.commit()
        db.close()
    return make


_ROW = ("INSERT INTO votes (comparison_id, prompt, seed, mode, shown, choice, notes, voter, kind, judge, created_at) "
        "VALUES ({})")


def _row(**kw) -> str:
    values = {"comparison_id": "'cmp-001-1'", "prompt": "'a knight'", "seed": "1", "mode": "'best-of'",
              "shown": "'[\"base\", \"lora_a\"]'", "choice": "'base'", "notes": "''", "voter": "'me'",
              "kind": "'human'", "judge": "NULL", "created_at": "'2026-01-01'", **kw}
    return _ROW.format(", ".join(values.values()))


def _valid_then(*statements: str):
    def make(path: Path) -> None:
        VoteStore(path.parent)
        _sql(*statements)(path)
    return make


SQLITE_CASES = {
    "garbage": lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8),
    "random bytes": lambda p: p.write_bytes(bytes((i * 37 + 11) % 256 for i in range(5000))),
    "truncated": "truncated",
    "wrong schema": _sql("CREATE TABLE votes (a, b)", "INSERT INTO votes VALUES (1, 2)"),
    "foreign database": _sql("CREATE TABLE photos (id INTEGER, path TEXT)"),
    "seed text": _valid_then(_row(seed="'one'")),
    "shown not json": _valid_then(_row(shown="'base,lora_a'")),
    "shown a string": _valid_then(_row(shown="'\"base\"'")),
    "shown depth bomb": _valid_then(_row(shown="'" + "[" * 100_000 + "'")),
    "shown huge int": _valid_then(_row(shown="'[" + "9" * 5000 + "]'")),
    "choice not shown": _valid_then(_row(choice="'lora_b'")),
    "mode bogus": _valid_then(_row(mode="'best-of-3'")),
    "kind bogus": _valid_then(_row(kind="'robot'")),
    "prompt a blob": _valid_then(_row(prompt="x'00ff'")),
    "a directory": lambda p: p.mkdir(),
    "a fifo": lambda p: os.mkfifo(p),
    "a symlink to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
    "a dangling symlink": lambda p: p.symlink_to(p.parent / "nowhere" / "votes.sqlite"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    good = write_run(root, "good", GOOD, "good")
    bad = write_run(root, "bad", BAD, "bad")
    study = root / "study"
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                  "--json"])
    assert r.exit_code == 0, r.output
    return good, bad, study


def _commands(folder: Path, runs: tuple[Path, Path, Path], tmp: Path) -> dict[str, list[str]]:
    good, bad, study = runs
    wrapper = tmp / "wrapped-study"
    wrapper.mkdir(exist_ok=True)
    link = wrapper / "compare"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(folder.resolve(), target_is_directory=True)
    return {
        "vote": ["vote", str(folder), "--port", "0"],
        "vote --judge": ["vote", str(folder), "--judge", "distance_to_base"],
        "stats": ["stats", str(folder)],
        "export csv": ["export", str(folder), "--format", "csv"],
        "export json": ["export", str(folder), "--format", "json", "--out", str(tmp / "e.json")],
        "audit --compare": ["audit", str(good), str(bad), "--compare", str(folder), "--out", str(tmp / "r.md")],
        "audit --study": ["audit", str(good), str(bad), "--study", str(wrapper), "--out", str(tmp / "r.md")],
        "bisect --from-votes": ["bisect", "bad", "--study", str(study), "--from-votes", str(folder)],
    }


@pytest.fixture(autouse=True)
def never_serve(monkeypatch):
    """A vote command that got past its checks would serve forever: make that a failure instead."""
    import uvicorn

    def refuse(*a, **k):
        raise AssertionError("the vote page was served")

    monkeypatch.setattr(uvicorn.Server, "run", refuse)


def _assert_one_line(r, name: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert name in lines[0], lines[0]


@pytest.mark.parametrize("case", list(JSON_CASES) + SPECIAL_JSON)
def test_bad_comparison_json(tmp_path, runs, case):
    folder = make_comparison(tmp_path / "cmp")
    f = folder / "comparison.json"
    data = json.loads(f.read_text())
    data["statistics"]["models"] = [{"model_name": "base", "timing": {"images": 4, "images_per_s": 2.0}}]
    if case in JSON_CASES:
        out = JSON_CASES[case](data)
        f.write_bytes(out if isinstance(out, bytes) else out.encode())
    else:
        f.unlink()
        {"missing": lambda: None, "a directory": f.mkdir, "a fifo": lambda: os.mkfifo(f),
         "a symlink to /dev/zero": lambda: f.symlink_to("/dev/zero"),
         "a dangling symlink": lambda: f.symlink_to(tmp_path / "nowhere.json")}[case]()
    for args in _commands(folder, runs, tmp_path).values():
        r = CliRunner().invoke(main, args)
        _assert_one_line(r, "comparison.json" if case != "missing" else "comparison")


def test_the_valid_fixture_passes_every_command(tmp_path, runs):
    """The same commands on the untouched folder succeed (so the failures above are the readers' doing)."""
    folder = make_comparison(tmp_path / "cmp")
    _store(folder)
    for command, args in _commands(folder, runs, tmp_path).items():
        if command in ("vote", "bisect --from-votes"):
            continue  # vote would serve; the fixture's models are not the study's variants
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, (command, r.output)


@pytest.mark.parametrize("case", list(SQLITE_CASES))
def test_bad_votes_sqlite(tmp_path, runs, case):
    folder = make_comparison(tmp_path / "cmp")
    p = folder / "votes.sqlite"
    if case == "truncated":
        _store(folder)
        data = p.read_bytes()
        assert len(data) > 8192
        p.write_bytes(data[: len(data) // 2 + 100])
    else:
        SQLITE_CASES[case](p)
    before = p.read_bytes() if p.is_file() else None
    commands = _commands(folder, runs, tmp_path)
    for args in commands.values():
        r = CliRunner().invoke(main, args)
        _assert_one_line(r, "votes.sqlite")
    if before is not None:
        assert p.read_bytes() == before  # nothing was written into it
