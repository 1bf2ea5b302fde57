"""Every command of ``lora-audit`` (walked from the group, subcommands too) has --help text and a row in the
README's command table, and every row of the table is a command that exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lora_audit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


COMMANDS = [(path, cmd) for path, cmd in walk(main) if path]


def table_rows(markdown: str) -> list[str]:
    """The first cells of the table under '## Commands'."""
    section = markdown.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    cells = []
    for line in section.splitlines():
        if line.startswith("|") and "lora-audit" in line:
            cells.append(re.split(r"(?<!\\)\|", line)[1])
    return cells


def row_commands(cell: str) -> set[tuple[str, ...]]:
    """The command paths a row names: `lora-audit bisect start ...` · `bisect good\\|bad ...` gives
    (bisect, start), (bisect, good), (bisect, bad)."""
    paths: set[tuple[str, ...]] = set()
    for span in re.findall(r"`([^`]+)`", cell):
        words = span.replace("\\|", "|").split()
        if words and words[0] == "lora-audit":
            words = words[1:]
        prefix: list[list[str]] = []
        for w in words:
            if not re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", w):
                break
            prefix.append(w.split("|"))
        combos: list[tuple[str, ...]] = [()]
        for alternatives in prefix:
            combos = [(*c, a) for c in combos for a in alternatives]
        paths.update(c for c in combos if c)
    return paths


README_ROWS = table_rows((ROOT / "README.md").read_text(encoding="utf-8"))
IN_TABLE = set().union(*(row_commands(c) for c in README_ROWS))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help_and_a_readme_row(path, cmd):
    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    summary = (cmd.help or "").strip()
    assert summary, f"lora-audit {' '.join(path)} has no help text"
    assert summary.split()[0] in result.output
    # a group (bisect) is in the table through its subcommands' rows
    assert any(p[: len(path)] == path for p in IN_TABLE), (
        f"lora-audit {' '.join(path)} has no row in README.md's command table")
    if not isinstance(cmd, click.Group):
        assert path in IN_TABLE, f"lora-audit {' '.join(path)} has no row in README.md's command table"
        bare = [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not p.hidden and not p.help]
        assert not bare, f"lora-audit {' '.join(path)}: options without help text: {bare}"
        for p in cmd.params:  # what --help prints for each option
            if isinstance(p, click.Option) and not p.hidden:
                assert p.opts[0] in result.output


def test_every_readme_row_is_a_command():
    known = {p for p, _ in COMMANDS}
    stale = sorted(" ".join(p) for p in IN_TABLE - known)
    assert not stale, f"README.md's command table names commands that do not exist: {stale}"


def test_group_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name}" in out for name in main.commands)


def test_row_parser():
    assert row_commands("`lora-audit infer-dim SIZE [--arch sd15\\|sdxl]`") == {("infer-dim",)}
    assert row_commands("`lora-audit bisect start [RUNS...] --good RUN` · `bisect good\\|bad --study DIR` · "
                        "`bisect next`") == {("bisect", "start"), ("bisect", "good"), ("bisect", "bad"),
                                             ("bisect", "next")}
    assert row_commands("`lora-audit weights FILE\\|FOLDER... [--json]`") == {("weights",)}
