"""Training scripts (bash/sh, Windows .bat/.cmd, PowerShell .ps1) → one Evidence per kohya training command.

The tokenizers (``_bash``, ``_batch``, ``_powershell``) only turn text into commands of words, each word with the
line it is written on; ``invocation.find_training_command`` finds the training script among the words and
``invocation.resolve_invocation`` reads its arguments with kohya's argparse semantics.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from lora_audit.errors import EvidenceError
from lora_audit.evidence._bash import BashTokenizer
from lora_audit.evidence._batch import BatchTokenizer
from lora_audit.evidence._powershell import PowerShellTokenizer
from lora_audit.evidence._script import Command, read_script, unique_notes
from lora_audit.evidence.invocation import (
    CREATED_FILES,
    TRAINING_NAME,
    Token,
    find_training_command,
    resolve_invocation,
)
from lora_audit.kohya.catalog import catalog
from lora_audit.model import Alternative, Evidence, Note, Setting

Tokenizer = BashTokenizer | BatchTokenizer | PowerShellTokenizer
KINDS = {"shell": BashTokenizer, "bat": BatchTokenizer, "ps1": PowerShellTokenizer}


def script_kind(path: Path) -> str:
    """The dialect of a script by its suffix: "bat" (.bat/.cmd), "ps1", else "shell"."""
    suffix = path.suffix.lower()
    return "bat" if suffix in (".bat", ".cmd") else "ps1" if suffix == ".ps1" else "shell"


def tokenizer(kind: str, label: str, path: Path | str | None = None) -> Tokenizer:
    """A tokenizer for one dialect; ``path`` (the script's file) lets bash read the files it sources."""
    if kind == "shell":
        return BashTokenizer(label, Path(path) if path is not None else None)
    return KINDS[kind](label)


def parse_shell(path: Path | str, label: str | None = None) -> list[Evidence]:
    """Every kohya training command of a script, read as its shell would run it (usually one; [] if none)."""
    path = Path(path)
    label = label or str(path)
    kind = script_kind(path)
    return parse_shell_text(read_script(path, label), path, kind, label)


def parse_shell_text(text: str, path: Path | str, kind: str = "shell", label: str | None = None,
                     first_line: int = 1) -> list[Evidence]:
    """Shell text that sits inside another file (a notebook's ``%%bash`` cell, a note's fence) → Evidence.

    ``path`` is the file the text is in (relative files resolve from its folder), ``label`` how sources name it,
    ``first_line`` the line of the text's first line in that file.
    """
    path = Path(path)
    label = label or str(path)
    try:
        commands = tokenizer(kind, label, path).commands(text, first_line)
    except RecursionError:  # "((((" thousands deep: one line, not a traceback (guard only)
        raise EvidenceError("brackets or substitutions nested too deeply to read", label, first_line) from None
    return training_evidence(commands, path, kind, label)


def training_evidence(commands: list[Command], path: Path, kind: str, label: str) -> list[Evidence]:
    """Evidence for each command that launches a training script; the expansion notes of those commands only."""
    out = []
    for cmd in commands:
        found = find_training_command(cmd.words)
        if found is None:
            continue
        script, args, facts = found
        if not TRAINING_NAME.search(script):
            continue
        if cmd.error is not None:
            raise cmd.error
        ev = _resolve(cmd, script, args, path, kind, facts, label)
        if cmd.variants:
            ev = _conditional(ev, cmd, path, kind, label)
        ev.warnings = unique_notes(cmd.notes + ev.warnings)
        if cmd.variables:
            # where each value came from, for an editor that changes the value rather than the flag's line
            seen = {}
            for v in cmd.variables:
                seen[(v["name"], v["defined"])] = {**v, "value": v["value"]}
            ev.facts["variables"] = list(seen.values())
        out.append(ev)
    return out


def _resolve(cmd: Command, script: str, args: list[Token], path: Path, kind: str, facts: dict,
             label: str) -> Evidence:
    """resolve_invocation, with the files the script wrote itself (heredocs) found where it put them."""
    if not cmd.created:
        return resolve_invocation(script, args, path, kind, facts=facts, label=label)
    with tempfile.TemporaryDirectory(prefix="lora-audit-heredoc-") as tmp:
        created: dict[str, Path] = {}
        where: dict[str, tuple[str, int, bool]] = {}
        for i, (name, (text, src_label, line)) in enumerate(cmd.created.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            f = folder / (PurePosixPath(name.replace("\\", "/")).name or "file")
            f.write_text(text, encoding="utf-8")
            created.setdefault(name, f)
            created.setdefault(f.name, f)
            where[str(f)] = (src_label, line, "$" in text)
        token = CREATED_FILES.set({**(CREATED_FILES.get() or {}), **created})
        try:
            try:
                ev = resolve_invocation(script, args, path, kind, facts=facts, label=label)
            except EvidenceError as e:
                bad = next((k for k in where if e.path == k), None)
                if bad is None:
                    raise
                # a file written with values only known at run time is no TOML here: read the command without it
                CREATED_FILES.set({k: v for k, v in created.items() if str(v) != bad})
                ev = resolve_invocation(script, args, path, kind, facts=facts, label=label)
                src_label, line, _ = where[bad]
                ev.warnings.append(Note(message=f"the file the script writes at line {line} cannot be read before "
                                                f"the script runs ({e.message}): its settings are unknown",
                                        source=f"{src_label}:{line + (e.line or 1) - 1}"))
        finally:
            CREATED_FILES.reset(token)
        return _relabel(ev, where)


def _line_shift(label: str, first: int) -> Callable[[re.Match], str]:
    """``<tmp>:N`` (line N of a written file) → the script's line that wrote it (the file starts at ``first``)."""
    return lambda m: f"{label}:{first + int(m.group(1)) - 1}"


def _relabel(ev: Evidence, where: dict[str, tuple[str, int, bool]]) -> Evidence:
    """Sources inside a written file → the script's lines that wrote them."""
    def fix(s: str) -> str:
        for tmp, (src_label, first, _) in where.items():
            if tmp in s:
                s = re.sub(re.escape(tmp) + r":(\d+)", _line_shift(src_label, first), s)
                s = s.replace(tmp, f"{src_label}:{first}")
        return s

    data = json.loads(json.dumps(ev.model_dump(), default=str))

    def walk(x):
        if isinstance(x, str):
            return fix(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    data = walk(data)
    written = [i for i in ev.includes if i in where]
    data["includes"] = [i for i in ev.includes if i not in where]
    if written:
        data["facts"]["written_by_script"] = [f"{where[i][0]}:{where[i][1]}" for i in written]
    return Evidence.model_validate(data)


def _conditional(ev: Evidence, cmd: Command, path: Path, kind: str, label: str) -> Evidence:
    """A command using a value set in a branch the script cannot decide: one reading per combination of values;
    a parameter they agree on stays explicit, one they disagree on is unknown with each candidate listed."""
    readings: list[tuple[Evidence, str]] = []
    for words, when in cmd.variants:
        found = find_training_command(words)
        if found is None:
            continue
        script, args, facts = found
        scratch = Command(words=words, created=cmd.created)
        readings.append((_resolve(scratch, script, args, path, kind, facts, label), when))
    if not readings:
        return ev
    cat = catalog()
    by_reading = [{s.name: s for s in r.settings} for r, _ in readings]
    names = list(dict.fromkeys(n for r in by_reading for n in r))
    settings: list[Setting] = []
    for name in names:
        got = [r.get(name) for r in by_reading]
        values = [None if s is None else s.value for s in got]
        first = next(s for s in got if s is not None)
        if all(s is not None for s in got) and all(v == values[0] for v in values):
            settings.append(first)
            continue
        # per value, the conditions every reading giving it shares (the others do not matter to this parameter)
        groups: dict[str, tuple[object, list[str], str | None]] = {}
        for s, (_, when) in zip(got, readings):
            arg = cat.get(name) if s is None else None  # None when name is not in the catalog
            value = (arg.default if arg is not None else None) if s is None else s.value
            key = repr(value)
            conds = [c for c in when.split("; ") if c]
            if key in groups:
                v, common, src = groups[key]
                groups[key] = (v, [c for c in common if c in conds], src)
            else:
                groups[key] = (value, conds, None if s is None else s.source)
        alternatives: list[Alternative] = []
        for value, common, src in groups.values():
            when = "; ".join(common) or "in the other cases"
            note = f"{when} ({src})" if src else f"not given (kohya's default) {when}"
            alternatives.append(Alternative(value=value, note=note))
        settings.append(Setting(name=name, value=None, source=first.source, origin="unknown",
                                note="depends on a condition the script cannot decide: "
                                     + " | ".join(f"{a.value!r} {a.note}" for a in alternatives),
                                alternatives=alternatives))
    ev.settings = settings
    return ev
