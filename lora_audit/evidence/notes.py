"""Markdown notes → the training commands pasted into their fenced code blocks.

Each block is read with the shell its info string names (```bash, ```powershell, ```bat ...; a block without one
is recognised by its continuations), prompts (``$ ``, ``PS C:\\> ``, ``C:\\> ``) are taken off, and line numbers
are the lines of the ``.md`` file. Variables carry from one block to the next of the same shell, as in a session.
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


def parse_notes(path: Path | str, label: str | None = None) -> list[Evidence]:
    """The training commands in a Markdown note's code blocks, one Evidence each, sources as ``note.md:line``."""
    path = Path(path)
    label = label or str(path)
    out: list[Evidence] = []
    shells: dict[str, Tokenizer] = {}
    for block in fenced_blocks(read_script(path, label)):
        kind = _kind(block)
        if kind is None:
            continue
        text = "\n".join(_strip_prompts(block, kind))
        tok = shells.setdefault(kind, tokenizer(kind, label))
        try:
            commands = tok.commands(text, first_line=block.first_line)
        except EvidenceError:
            # A note's blocks also hold logs and prose ("don't"); only a block that names a training script is
            # held to a shell's syntax.
            if re.search(r"train\w*\.py", text):
                raise
            continue
        out.extend(training_evidence(commands, path, "notes", label))
    return out


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
        if block.lang:
            return None  # python, toml, json, yaml ...: not a shell
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
