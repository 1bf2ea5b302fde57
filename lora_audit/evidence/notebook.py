"""Jupyter notebooks (Colab, Kaggle) → one Evidence per kohya training command. Read as JSON, never executed.

What a cell can launch training with, read as IPython would run it:
- ``!accelerate launch ... train_network.py ...`` and ``!python ...`` lines (``\\``-continued), after IPython's
  expansion of ``{expr}`` and ``$name`` from the notebook's Python variables (``IPython.utils.text.var_expand``;
  when one of them cannot be evaluated IPython leaves the whole line as it is, for the shell);
- ``%%bash`` / ``%%sh`` / ``%%script bash`` cells, read as bash scripts;
- ``subprocess.run([...])`` / ``call`` / ``check_call`` / ``Popen`` / ``os.system("...")`` /
  ``get_ipython().system("...")`` with literal arguments.
Python values come only from literals and expressions of literals (``_pyliteral``); a config dict written with
``toml.dump`` / ``toml.dumps`` into ``open(path, "w")`` is read as the file the command's ``--config_file`` or
``--dataset_config`` names, each key's source the line of the notebook that sets it. ``os.environ[...]`` and
``%env`` set environment variables the shell lines see. Sources are ``nb.ipynb:cell N:line M``. The statements
themselves are followed by ``_pywalk`` (functions read where called, loops over known values unrolled).
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import read_text
from lora_audit.evidence._json_lines import parse_json
from lora_audit.evidence._pyliteral import Env, Unknown, evaluate
from lora_audit.evidence._pysession import STEP_BUDGET, TRAINING_HINT, OverBudget, Session, Shell
from lora_audit.evidence._pywalk import _Walker
from lora_audit.evidence.invocation import CREATED_FILES
from lora_audit.evidence.shell import tokenizer, training_evidence
from lora_audit.model import Evidence, Note

_CELL_MAGIC = re.compile(r"^\s*%%(bash|sh|script\s+(?:bash|sh)|shell)\b")
_OTHER_CELL_MAGIC = re.compile(r"^\s*%%(time|timeit|capture|prun)\b.*$")
_WRITEFILE = re.compile(r"^\s*%%(?:writefile|file)\s+(?P<append>-a\s+)?(?P<path>\S+)\s*$")
_SKIP_CELL_MAGIC = re.compile(r"^\s*%%\w+")  # %%writefile, %%javascript ...: not Python
_SHELL_ASSIGN = re.compile(r"^(\s*)[\w., ]+=\s*!")
_EXPAND = re.compile(r"\$\$|\{([^{}]+)\}|\$([A-Za-z_]\w*)")
_RUN_SCRIPT = re.compile(r"^\s*(?:(?:bash|sh|source|\.)\s+)?(\S+\.(?:sh|bash))\s*$")


def new_session(path: Path, label: str) -> Session:
    """A reading session (its own temporary folder for the configs the code writes; ``close()`` removes it)."""
    return Session(label=label, path=Path(path), tmp=Path(tempfile.mkdtemp(prefix="lora-audit-nb-")), shell=_shell)


def parse_notebook(path: Path | str, label: str | None = None) -> list[Evidence]:
    """Every training command of a notebook, in cell order."""
    path = Path(path)
    label = label or str(path)
    nb = parse_json(read_text(path, label), label)
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        # nbformat 3 kept cells under worksheets
        sheets = nb.get("worksheets") if isinstance(nb, dict) else None
        cells = [c for w in sheets or [] if isinstance(w, dict) for c in w.get("cells", [])] if sheets else None
    if cells is None:
        raise EvidenceError("not a Jupyter notebook: no cells", label)
    s = new_session(path, label)
    try:
        for n, cell in enumerate(cells, 1):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            src = cell.get("source", "")
            text = "".join(str(x) for x in src) if isinstance(src, list) else str(src)
            run_cell(s, text.replace("\r\n", "\n"), f"{label}:cell {n}", 1)
        if s.unread:
            _unread_configs(s)
    finally:
        s.close()
    if s.out:
        s.out[0].warnings[:0] = s.notes
    return s.out


def run_cell(s: Session, text: str, label: str, first_line: int) -> None:
    """Read one cell (or one ```python fence of a note: ``first_line`` is its line in the note)."""
    lines = text.split("\n")
    if lines and _CELL_MAGIC.match(lines[0]):
        body = "\n".join([""] + lines[1:])
        _shell(s, Shell(body, 1), label, first_line)
        return
    if lines and _OTHER_CELL_MAGIC.match(lines[0]):
        lines[0] = ""
    elif lines and (m := _WRITEFILE.match(lines[0])):
        _writefile(s, m, lines[1:], label, first_line)
        return
    elif lines and _SKIP_CELL_MAGIC.match(lines[0]):
        return
    py, shells = _python_lines(s, lines)
    try:
        tree = ast.parse("\n".join(py))
    except (RecursionError, MemoryError, ValueError):
        s.notes.append(Note(message="a cell too deeply nested to read: not read", source=label))
        return
    except SyntaxError as e:
        s.notes.append(Note(message=f"not Python ({e.msg}): only its ! lines are read",
                            source=f"{label}:{(e.lineno or 1) + first_line - 1}"))
        for sh in shells.values():
            _shell(s, sh, label, first_line)
        return
    if s.steps > STEP_BUDGET:
        return
    try:
        _Walker(s, label, first_line, shells).block(tree.body, conditional=False)
    except OverBudget:
        s.notes.append(Note(message=f"more code than is read ({STEP_BUDGET:,} statements, loops unrolled): the "
                                    "rest of this code is not read", source=label))
    except RecursionError:
        s.notes.append(Note(message="code nested too deeply to follow: the rest of this cell is not read",
                            source=label))


def _python_lines(s: Session, lines: list[str]) -> tuple[list[str], dict[int, Shell]]:
    """The cell as Python: each ``!`` line (with its continuation lines) and line magic becomes ``pass`` on the same
    line, the ``!`` commands kept by line; ``%env`` sets the shell's environment."""
    shells: dict[int, Shell] = {}
    py: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        stripped = ln.lstrip()
        indent = ln[:len(ln) - len(stripped)]
        if stripped.startswith("!") or _SHELL_ASSIGN.match(ln):
            start = i
            cmd = [stripped[1:] if stripped.startswith("!") else ln.split("!", 1)[1]]
            while cmd[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd.append(lines[i])
            shells[start + 1] = Shell("\n".join(cmd), start + 1)
            py.append(f"{indent}pass")
            py.extend("" for _ in range(i - start))
        elif stripped.startswith("%"):
            magic = stripped[1:].split(None, 1)
            if magic and magic[0] == "env" and len(magic) > 1:
                k, _, v = magic[1].replace("=", " ", 1).partition(" ")
                s.env.environ[k.strip()] = v.strip()
            py.append(f"{indent}pass")
        else:
            py.append(ln)
        i += 1
    return py, shells


def expand(text: str, env: Env) -> tuple[str, list[str]]:
    """IPython's ``var_expand`` of a ``!`` line: ``{expr}`` and ``$name`` from the Python variables, ``$$`` → ``$``.
    When an expression cannot be evaluated IPython leaves the whole line unexpanded; here a variable the notebook
    assigns but whose value is not literal stays as written and is named in the second result."""
    unknown: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group(1) or m.group(2)
        if m.group(2) and m.group(2) not in env.assigned:
            return m.group(0)  # not a Python name: the shell expands it
        try:
            node = ast.parse(expr.strip(), mode="eval").body
            v = evaluate(node, env)
        except (Unknown, SyntaxError, ValueError, RecursionError):
            unknown.append(expr)
            return m.group(0)
        return str(v)

    out = _EXPAND.sub(sub, text)
    # os.environ / %env values the shell would see
    for k, v in env.environ.items():
        out = re.sub(rf"\$\{{{re.escape(k)}\}}|\${re.escape(k)}(?!\w)", _literal(v), out)
    return out, unknown


def _literal(text: str) -> Callable[[re.Match], str]:
    """A re.sub replacement that inserts ``text`` as it is (no backslash escapes, no group references)."""
    return lambda _m: text


def _shell(s: Session, sh: Shell, label: str, first_line: int, conditional: bool = False) -> None:
    line = sh.line + first_line - 1
    if sh.words is not None:
        text = " ".join(shlex.quote(w) for w in sh.words)
        unknown: list[str] = list(sh.unknown)
    else:
        text, unknown = expand(sh.text, s.env)
    run = _RUN_SCRIPT.match(text)
    if run and posixpath.basename(run.group(1)) in s.scripts:
        body, label, line = s.scripts[posixpath.basename(run.group(1))]
        text, unknown = body, []
    if not TRAINING_HINT.search(text):
        if any(TRAINING_HINT.search(s.texts.get(u.strip(), "")) for u in unknown):
            s.unread.append(f"{label}:{line}")
            s.notes.append(Note(message="a training command the notebook builds at run time (" + ", ".join(
                "{" + u + "}" for u in unknown) + "): not read", source=f"{label}:{line}"))
        return
    tok = tokenizer("shell", label)
    try:
        commands = tok.commands(text, first_line=line)
    except EvidenceError as e:
        s.notes.append(Note(message=f"a shell line that is not valid bash: {e.message}", source=f"{label}:{line}"))
        return
    token = CREATED_FILES.set({**(CREATED_FILES.get() or {}), **s.files})
    try:
        found = training_evidence(commands, s.path, "notebook", label)
    finally:
        CREATED_FILES.reset(token)
    marks = ["{" + u + "}" for u in unknown] + ["$" + u for u in unknown]
    for ev in found:
        _relabel(ev, s)
        for i, st in enumerate(ev.settings):
            texts = st.value if isinstance(st.value, list) else [st.value]
            if any(isinstance(t, str) and any(m in t for m in marks) for t in texts):
                # IPython expands it from a Python value we cannot know: the value is unknown, never the text
                ev.settings[i] = st.model_copy(update={"origin": "unknown", "value": None, "note": f"{st.value!r}: "
                                                       "a value the notebook computes at run time"})
        if unknown:
            ev.warnings.append(Note(message="Python values the notebook computes at run time, left as written: "
                                            + ", ".join("{" + u + "}" for u in unknown), source=f"{label}:{line}"))
        if conditional:
            ev.warnings.append(Note(message="this command runs only when a condition the notebook computes at run "
                                            "time holds", source=f"{label}:{line}"))
        if s.loops:
            ev.warnings.append(Note(message="this command is inside a loop: values that depend on the loop's item "
                                            "are unknown", source=f"{label}:{line}"))
        s.out.append(ev)


def _unread_configs(s: Session) -> None:
    """A notebook whose training command is built at run time still says what the configs it writes hold: their
    settings, as the notebook's evidence (not a whole invocation: the command's own flags are unknown)."""
    from lora_audit.evidence.parse import parse_file

    seen: set[str] = set()
    for name, tmp in s.files.items():
        key = str(tmp)
        if key in seen or key in s.used or "/" not in name:
            continue
        seen.add(key)
        try:
            evs = parse_file(tmp, key)
        except EvidenceError:
            continue
        for ev in evs:
            ev.kind = "notebook"
            ev.complete = False
            ev.path = s.label
            _relabel(ev, s)
            ev.warnings.insert(0, Note(message=f"{name}: the settings of a config the notebook writes; the command "
                                               f"that trains with it is built at run time ({', '.join(s.unread)}), "
                                               "so its own flags are unknown", source=s.label))
            s.out.append(ev)


def _writefile(s: Session, m: re.Match, body: list[str], label: str, first_line: int) -> None:
    """``%%writefile config.toml``: the cell's text is a file the notebook creates (a TOML, a script)."""
    path = m.group("path").strip("'\"")
    text = "\n".join(body)
    name = posixpath.basename(path)
    if name.endswith((".sh", ".bash")):
        s.scripts[name] = (text, label, first_line + 1)
        return
    if not name.endswith(".toml"):
        return
    tmp = s.tmp / f"{len(s.files)}-{name}"
    tmp.write_text(text, encoding="utf-8")
    s.files[path] = tmp
    s.files.setdefault(name, tmp)
    s.file_sources[str(tmp)] = {}
    s.file_lines[str(tmp)] = (label, first_line)  # the file's line k is the cell's line k + 1


def _relabel(ev: Evidence, s: Session) -> None:
    """Settings read from a config the notebook wrote: the notebook line that set each key, not the temp file."""
    for tmp, keys in s.file_sources.items():
        if tmp in ev.includes:
            s.used.add(tmp)
        ev.includes = [i for i in ev.includes if i != tmp]
        for i, st in enumerate(ev.settings):
            if st.source and st.source.startswith(tmp):
                src = keys.get(st.name, s.label)
                tail = st.source[len(tmp) + 1:]
                if tmp in s.file_lines and tail.isdigit():
                    cell, first = s.file_lines[tmp]
                    src = f"{cell}:{int(tail) + first}"
                ev.settings[i] = st.model_copy(update={"source": src})
        for w in ev.warnings:
            if w.source and w.source.startswith(tmp):
                w.source = s.label
        for k in ("datasets",):
            if ev.facts.get(k):
                ev.facts[k] = json.loads(json.dumps(ev.facts[k]).replace(tmp, s.label))
