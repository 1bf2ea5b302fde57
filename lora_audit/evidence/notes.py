"""Markdown and text notes → the training commands pasted into them.

Each fenced block is read with the shell its info string names (```bash, ```powershell, ```bat ...; a block without
one is recognised by its continuations), prompts (``$ ``, ``PS C:\\> ``, ``C:\\> ``) are taken off, and line
numbers are the lines of the note. Variables carry from one block to the next of the same shell, as in a session.
A ```python / ```ipython block is read as a notebook cell (its ``!`` lines, literal ``subprocess`` calls and
``toml.dump`` configs: ``notebook.run_cell``); a ```json block holding ``ss_*`` keys is a LoRA's metadata (the dump
people paste into READMEs). Outside fences, a line that starts a training command (``accelerate launch ...``,
``python train_network.py ...``, with its continuation lines) is read too: ``.txt`` notes are mostly that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.evidence._script import read_script
from lora_audit.evidence.shell import Tokenizer, tokenizer, training_evidence
from lora_audit.model import Evidence

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*\{?\.?(?P<lang>[^\s`{}]*)")
_LANGS = {
    "shell": {"bash", "sh", "shell", "zsh", "ksh", "console", "shell-session", "shellsession", "sh-session",
              "terminal", "text", "txt", "plain", "plaintext"},
    "ps1": {"powershell", "ps1", "pwsh", "ps", "posh", "pwsh-session", "ps1con", "powershell-session"},
    "bat": {"bat", "batch", "cmd", "dos", "batchfile", "doscon", "winbatch"},
}
_SESSION_LANGS = {"console", "shell-session", "shellsession", "sh-session", "terminal", "pwsh-session", "ps1con",
                  "powershell-session", "doscon"}
# a prompt before a command: `$ `, `# ` (root), `% ` (zsh), `(venv) user@host:~/x$ `, `PS C:\x> `, `C:\x>`
_PROMPTS = {
    "shell": re.compile(r"^\s*(?:\([^)\n]*\)\s*)?(?:[\w.-]+@[\w.-]+(?::\S*)?\s*)?[$%]\s"),
    "ps1": re.compile(r"^\s*(?:\([^)\n]*\)\s*)?PS(?:\s+[^>\n]*)?>\s?"),
    "bat": re.compile(r"^\s*(?:\([^)\n]*\)\s*)?[A-Za-z]:\\[^>\n]*>"),
}
_CONTINUATION = {"shell": "\\", "ps1": "`", "bat": "^"}
# the prompt a session shows on a continued line (bash PS2, PowerShell, cmd)
_CONTINUATION_PROMPTS = {"shell": re.compile(r"^\s*> "), "ps1": re.compile(r"^\s*>> ?"),
                         "bat": re.compile(r"^\s*More\? ")}


@dataclass
class CodeBlock:
    """A fenced code block: its info string's first word and its lines."""

    lang: str
    first_line: int  # line of the block's first content line in the .md file
    lines: list[str]


_DATA_LANGS = {"toml", "yaml", "yml", "ini", "cfg", "conf", "csv", "xml", "html", "markdown", "md"}
_PY_LANGS = {"python", "py", "python3", "ipython", "ipython3", "jupyter", "ipynb"}
_JSON_LANGS = {"json", "jsonc", "json5", "javascript", "js"}
# an unfenced line that starts a training command (an optional prompt or `!`, env assignments, the launcher)
_UNFENCED = re.compile(
    r"^\s*(?:[-*>]\s+)?`?(?:\$\s+|%\s+|!\s*|PS [^>]*>\s*|[A-Za-z]:\\[^>]*>)?"
    r"(?:[A-Za-z_]\w*=\S*\s+)*(?:accelerate(?:\.exe)?\s+launch\b|python[\w.]*\s+(?:-\S+\s+)*\S*"
    r"(?:train\w*|fine_tune)\.py\b|\S*(?:train\w*|fine_tune)\.py\s+--)")


def parse_notes(path: Path | str, label: str | None = None) -> list[Evidence]:
    """The training commands of a note (``.md``, ``.txt``), one Evidence each, sources as ``note.md:line``.
    A metadata block (```json with ``ss_*`` keys) gives an Evidence of kind ``metadata``."""
    path = Path(path)
    label = label or str(path)
    note_text = read_script(path, label)
    if note_text.lstrip().startswith("{") and '"ss_' in note_text:
        # `python tools/show_metadata.py --model x.safetensors > x.txt`: the whole note is the metadata
        whole = _metadata_block(CodeBlock(lang="json", first_line=1, lines=note_text.split("\n")), label)
        if whole is not None:
            return [whole]
    found: list[tuple[int, list[Evidence]]] = []
    shells: dict[str, Tokenizer] = {}
    seen: set[int] = set()
    session = None
    blocks = fenced_blocks(note_text)
    for block in blocks:
        if block.lang in _PY_LANGS or (not block.lang and any(ln.lstrip().startswith("!") for ln in block.lines)):
            from lora_audit.evidence.notebook import new_session, run_cell

            session = session or new_session(path, label)
            before = len(session.out)
            run_cell(session, "\n".join(block.lines), label, block.first_line)
            found.append((block.first_line, session.out[before:]))
            continue
        if block.lang in _JSON_LANGS or (not block.lang and '"ss_' in "\n".join(block.lines)):
            md = _metadata_block(block, label) or _gui_block(block, path, label)
            if md is not None:
                found.append((block.first_line, [md]))
            continue
        kind = _kind(block)
        if kind is None:
            continue
        text = "\n".join(_strip_prompts(block, kind))
        tok = shells.setdefault(kind, tokenizer(kind, label))
        try:
            commands = tok.commands(text, first_line=block.first_line)
        except (EvidenceError, RecursionError) as e:
            # A note's blocks also hold logs and prose ("don't"); only a block that names a training script is
            # held to a shell's syntax.
            if re.search(r"train\w*\.py", text):
                if isinstance(e, RecursionError):  # "((((" thousands deep (guard only)
                    raise EvidenceError("brackets or substitutions nested too deeply to read", label,
                                        block.first_line) from None
                raise
            continue
        # a tokenizer kept across blocks may hand back the session's earlier commands too: each is read once
        commands = [c for c in commands if id(c) not in seen]
        seen.update(id(c) for c in commands)
        found.append((block.first_line, training_evidence(commands, path, "notes", label)))
    found.extend(_unfenced(note_text, blocks, path, label))
    found.extend(_pre_blocks(note_text, label))
    if session is not None:
        session.close()
        if session.notes and session.out:
            session.out[0].warnings[:0] = session.notes
    found.sort(key=lambda t: t[0])
    return [e for _, evs in found for e in evs]


def _metadata_block(block: CodeBlock, label: str) -> Evidence | None:
    import json

    from lora_audit.evidence.metadata_dump import metadata_evidence, metadata_of

    body = "\n".join(block.lines)
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        # an abbreviated dump ("...", {...}) as people paste them: the keys that are written out
        lenient = re.sub(r"(?m)^\s*(\.\.\.|…),?\s*$", "", body)
        lenient = re.sub(r"\{\s*(\.\.\.|…)\s*\}", "{}", lenient)
        lenient = re.sub(r"\[\s*(\.\.\.|…)\s*\]", "[]", lenient)
        lenient = re.sub(r",(\s*[}\]])", r"\1", lenient)
        try:
            obj = json.loads(lenient)
        except (ValueError, RecursionError):
            return None
    md = metadata_of(obj)
    if md is None:
        return None
    lines: dict[str, int] = {}
    for n, ln in enumerate(block.lines, 1):
        m = re.match(r'\s*"((?:ss_|sshs_|modelspec\.)[\w.]+)"\s*:', ln)
        if m:
            lines.setdefault(m.group(1), n)
    return metadata_evidence(md, label, lines, first_line=block.first_line)


def _gui_block(block: CodeBlock, path: Path, label: str) -> Evidence | None:
    """A kohya_ss GUI config pasted into a ```json block ("my parameters"): read as the GUI would, lines of the note."""
    import json
    import tempfile

    from lora_audit.evidence.gui_json import is_gui_json, parse_gui_json

    body = "\n".join(block.lines)
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(obj, dict) and is_gui_json(obj)):
        return None
    with tempfile.TemporaryDirectory(prefix="lora-audit-note-") as tmp:
        f = Path(tmp) / "block.json"
        f.write_text(body, encoding="utf-8")
        ev = parse_gui_json(f, label=label)
    shift = block.first_line - 1

    def moved(src: str | None) -> str | None:
        if src and src.startswith(label + ":") and src[len(label) + 1:].isdigit():
            return f"{label}:{int(src[len(label) + 1:]) + shift}"
        return src

    ev.settings = [st.model_copy(update={"source": moved(st.source)}) for st in ev.settings]
    for w in ev.warnings:
        w.source = moved(w.source)
    ev.facts["kohya_defaults"] = {k: moved(v) for k, v in (ev.facts.get("kohya_defaults") or {}).items()}
    ev.includes = []
    return ev


_PRE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.S | re.I)


def _pre_blocks(text: str, label: str) -> list[tuple[int, list[Evidence]]]:
    """Metadata pasted into an HTML ``<pre>`` block of a README."""
    import html

    out = []
    for m in _PRE.finditer(text):
        if '"ss_' not in m.group(1):
            continue
        first = text.count("\n", 0, m.start(1)) + 1
        block = CodeBlock(lang="json", first_line=first, lines=html.unescape(m.group(1)).split("\n"))
        md = _metadata_block(block, label)
        if md is not None:
            out.append((first, [md]))
    return out


def _unfenced(text: str, blocks: list[CodeBlock], path: Path, label: str) -> list[tuple[int, list[Evidence]]]:
    """Training commands written outside any fence: the line that starts one and its continuation lines."""
    lines = text.split("\n")
    fenced: set[int] = set()
    for b in blocks:
        fenced.update(range(b.first_line - 1, b.first_line + len(b.lines) + 1))
    out: list[tuple[int, list[Evidence]]] = []
    i = 0
    while i < len(lines):
        n = i + 1
        if n in fenced or not _UNFENCED.match(lines[i]):
            i += 1
            continue
        cmd = [_unprompt(lines[i])]
        kind = "shell"
        # a bash prompt ($, %, IPython's !) says bash: only \ continues its lines
        bash_prompt = bool(re.match(r"^\s*(?:[-*>]\s+)?`?(?:\$|%|!)", lines[i]))
        while i + 1 < len(lines) and (i + 2) not in fenced:
            tail = cmd[-1].rstrip()
            if tail.endswith("\\"):
                kind = "shell"
            elif bash_prompt:
                break
            elif tail.endswith("^"):
                kind = "bat"
            elif tail.endswith("`") and not tail.endswith("``"):
                kind = "ps1"
            else:
                break
            i += 1
            cmd.append(lines[i])
        body = "\n".join(cmd)
        if body.strip().endswith("`") and body.count("`") % 2 == 1 and kind != "ps1":
            body = body.rstrip()[:-1]
        tok = tokenizer(kind, label)
        try:
            commands = tok.commands(body, first_line=n)
            evs = training_evidence(commands, path, "notes", label)
        except (EvidenceError, RecursionError):
            evs = []  # prose around an inline command: not held to a shell's syntax
        out.append((n, evs))
        i += 1
    return out


def _unprompt(line: str) -> str:
    """An unfenced command line without its list marker, inline-code backtick, prompt or ``!``."""
    s = re.sub(r"^\s*(?:[-*>]\s+)?`?", "", line)
    s = re.sub(r"^(?:\$\s+|%\s+|!\s*|PS [^>]*>\s*|[A-Za-z]:\\[^>]*>)", "", s)
    if s.rstrip().endswith("`") and s.count("`") == 1:
        s = s.rstrip()[:-1]
    return s


def fenced_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown text (CommonMark: an unclosed fence runs to the end)."""
    blocks: list[CodeBlock] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in lines[i][m.end("fence"):]):
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent").expandtabs(4))
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(_dedent(lines[j], indent))
            j += 1
        blocks.append(CodeBlock(lang=m.group("lang").lower(), first_line=i + 2, lines=body))
        i = j + 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    k = 0
    while k < len(line) and k < indent and line[k] in " \t":
        k += 1
    return line[k:]


def _kind(block: CodeBlock) -> str | None:
    for kind, langs in _LANGS.items():
        if block.lang in langs:
            if block.lang in ("", "text", "txt", "plain", "plaintext"):
                break
            return kind
    else:
        # toml, yaml, ini ...: data, not a shell; any other language (```diff, ```log, ```accelerate ...) is read when
        # one of its lines starts a training command
        if block.lang in _DATA_LANGS or (block.lang and not any(_UNFENCED.match(ln) for ln in block.lines)):
            return None
    # no language: recognise the shell by its continuations and variables
    stripped = [ln.rstrip() for ln in block.lines]
    if any(ln.endswith("^") for ln in stripped):
        return "bat"
    if any(ln.endswith("`") for ln in stripped) or any("$env:" in ln for ln in stripped):
        return "ps1"
    return "shell"


def _strip_prompts(block: CodeBlock, kind: str) -> list[str]:
    """Take prompts off command lines; in a session block (```console) lines without a prompt are output."""
    prompt, cont = _PROMPTS[kind], _CONTINUATION[kind]
    session = block.lang in _SESSION_LANGS or any(prompt.match(ln) for ln in block.lines)
    out: list[str] = []
    in_command = False
    for ln in block.lines:
        m = prompt.match(ln)
        if m:
            ln = ln[m.end():]
            in_command = True
        elif session and not in_command:
            ln = ""  # output of the previous command: keeps the line count
        elif session:
            c = _CONTINUATION_PROMPTS[kind].match(ln)
            ln = ln[c.end():] if c else ln
        out.append(ln)
        in_command = in_command and ln.rstrip().endswith(cont)
    return out
