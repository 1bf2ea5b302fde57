"""A training command (words after shell parsing) → Evidence, with kohya's argparse semantics.

Shared by the shell, batch, PowerShell and Markdown-notes parsers (which only turn text into words), and by the
embedded trainer (``parse_argv``), so there is one reading of kohya's command line.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from lora_audit.evidence.config_toml import parse_config_toml
from lora_audit.evidence.dataset_toml import parse_dataset_toml, run_settings
from lora_audit.kohya.catalog import ConversionError, catalog
from lora_audit.model import Evidence, Note, Setting

# every training script of the catalog (LoRA trainers and full fine-tunes; kohya/gen_catalog.py SCRIPTS)
TRAINING_SCRIPTS: tuple[str, ...] = catalog().scripts
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_MAX_ARG_NOTES = 100  # notes on single arguments kept for one command
# accelerate launch options that take no value
_ACCELERATE_FLAGS = {"--multi_gpu", "--cpu", "--use_deepspeed", "--use_fsdp", "--use_megatron_lm", "--quiet", "-q",
                     "--debug", "--no_python", "--module", "-m", "--tpu", "--use_xpu", "--same_network"}


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    line: int
    # the word holds a value only known when the script runs ($(...), an environment variable, "$1"): the text is
    # the expression as written, never a value
    runtime: bool = False


def _basename(word: str) -> str:
    if "/" not in word and "\\" not in word and word != ".":
        return word  # what PurePosixPath(word).name gives, without building a path (one call per command)
    return PureWindowsPath(word).name if "\\" in word else PurePosixPath(word).name


_LAUNCH_PREFIXES = ("env", "nohup", "time", "exec", "call", "&", "sudo")
_PYTHON = re.compile(r"(python|python3(\.\d+)?|py|python\.exe|python3\.exe|pythonw\.exe)")


def may_launch(head: str) -> bool:
    """Whether a command whose first word is ``head`` can be one ``find_training_command`` finds (a cheap test:
    False means it is certainly not; a reader skips such a command without expanding the rest of it)."""
    if head in _LAUNCH_PREFIXES or _ASSIGNMENT.match(head):
        return True
    name = _basename(head).lower()
    return name in ("accelerate", "accelerate.exe") or name.endswith(".py") or _PYTHON.fullmatch(name) is not None


# kohya's training entry points (train_network.py, sdxl_train_network.py, sdxl_train.py, flux_train_network.py,
# train_db.py, fine_tune.py ...); helper scripts (captioning, resizing, merging) are not training runs.
TRAINING_NAME = re.compile(r"(^|_)train(_|\.py$)|^fine_tune\.py$", re.IGNORECASE)


def launches_training(words: list[Token]) -> bool:
    """Whether a command launches one of kohya's training scripts (what a script reader keeps)."""
    found = find_training_command(words)
    return found is not None and TRAINING_NAME.search(found[0]) is not None


def find_training_command(words: list[Token]) -> tuple[str, list[Token], dict[str, Any]] | None:
    """Find ``script.py`` in a command and return (script basename, its arguments, launcher facts).

    Recognises ``[VAR=x ...] [env|nohup|time] accelerate launch [opts] script.py``, ``python[3][.exe] [-u]
    script.py``, ``python -m accelerate.commands.launch ...``, ``./script.py``. Launcher facts: the accelerate
    options (``num_processes`` matters for the effective batch).
    """
    i = 0
    while i < len(words) and (_ASSIGNMENT.match(words[i].text) or words[i].text in _LAUNCH_PREFIXES):
        i += 1
    if i >= len(words):
        return None
    launched = _launcher(words, i)
    if launched is None:
        return None
    launcher, rest = launched
    facts: dict[str, Any] = {"launcher": launcher}
    acc, j = _accelerate_options(rest)
    if j >= len(rest):
        return None
    if acc:
        facts["accelerate"] = acc
    return _basename(rest[j].text), rest[j + 1:], facts


def _launcher(words: list[Token], i: int) -> tuple[str, list[Token]] | None:
    """How ``words[i]`` starts the script ('accelerate launch', 'python', 'direct') and the words after the
    launcher itself; None when it is not a launcher (or ``python -m`` of another module)."""
    head = _basename(words[i].text).lower()
    rest = words[i + 1:]
    if head in ("accelerate", "accelerate.exe") and rest and rest[0].text == "launch":
        return "accelerate launch", rest[1:]
    if _PYTHON.fullmatch(head):
        while rest and rest[0].text.startswith("-") and not rest[0].text.endswith(".py"):
            if rest[0].text == "-m" and len(rest) > 1:
                if not rest[1].text.startswith("accelerate"):
                    return None  # python -m something_else
                rest = rest[2:]
                return "accelerate launch", rest[1:] if rest and rest[0].text == "launch" else rest
            rest = rest[1:]  # a Python option (-u, -X ...)
        return "python", rest
    if head.endswith(".py"):
        return "direct", words[i:]
    return None


def _accelerate_options(rest: list[Token]) -> tuple[dict[str, Any], int]:
    """The accelerate options before the script (``--num_processes 2``, ``--multi_gpu``...) and the index of
    the first word that ends in .py (``len(rest)`` when none does)."""
    acc: dict[str, Any] = {}
    j = 0
    while j < len(rest) and not rest[j].text.endswith(".py"):
        t = rest[j].text
        if t.startswith("-"):
            name, eq, val = t.partition("=")
            key = name.lstrip("-").replace("-", "_")
            if eq:
                acc[key] = val
            elif name in _ACCELERATE_FLAGS or j + 1 >= len(rest) or rest[j + 1].text.startswith("-") or \
                    rest[j + 1].text.endswith(".py"):
                acc[key] = True
            else:
                acc[key] = rest[j + 1].text
                j += 1
        j += 1
    return acc, j


def _group_flags(args: list[Token], ev: Evidence,
                 label: str) -> list[tuple[str, Token, list[Token] | None, str | None]]:
    """Split words into (dest, flag token, value tokens or None for a bare flag, abbreviation note)."""
    cat = catalog()
    out = []
    i = 0
    while i < len(args):
        tok = args[i]
        text = tok.text
        if tok.runtime and not text.startswith("-"):
            _warn(ev, f"{text} is only known at run time: the arguments it gives (if any) are not read here",
                  f"{label}:{tok.line}")
            i += 1
            continue
        if not text.startswith("-") or _NEGATIVE_NUMBER.match(text):
            _warn(ev, f"stray argument {text!r}: argparse would refuse it", f"{label}:{tok.line}")
            i += 1
            continue
        flag, eq, inline = text.partition("=")
        arg, abbrev = cat.for_flag(flag, ev.script)
        i += 1
        values: list[Token] = []
        if eq:
            values = [Token(inline, tok.line, tok.runtime)]
        elif arg is None or not arg.is_flag:
            many = arg is not None and arg.is_list
            while i < len(args) and (not args[i].text.startswith("-") or _NEGATIVE_NUMBER.match(args[i].text)
                                     or args[i].text in ("-", "")):
                values.append(args[i])
                i += 1
                if not many:
                    break
        if arg is None:
            near = cat.nearest(flag, ev.script)
            hint = f" (did you mean --{near}?)" if near else ""
            _warn(ev, f"unknown flag {flag}{hint}: kohya's argparse stops with 'unrecognized arguments'",
                  f"{label}:{tok.line}", ("unknown_flags", {"flag": flag, "value": " ".join(v.text for v in values)
                                                            or None, "source": f"{label}:{tok.line}", "nearest": near}))
            continue
        out.append((arg.name, tok, values if (values or not arg.is_flag) else None, abbrev))
    return out


def resolve_invocation(script: str, args: list[Token], path: Path | str, kind: str,
                       facts: dict[str, Any] | None = None, label: str | None = None) -> Evidence:
    """Type one training command's flags as kohya would and follow its config files.

    Precedence is kohya's (``train_util.read_config_from_file``): command line > ``--config_file`` > defaults;
    and for dataset parameters (``config_util.BlueprintGenerator``): dataset TOML subset > dataset > general >
    command line. Files are looked up relative to the evidence file's folder.
    """
    path = Path(path)
    label = label or str(path)
    ev = Evidence(path=label, kind=kind, script=script, complete=True, facts=dict(facts or {}))
    if script not in TRAINING_SCRIPTS:
        ev.warnings.append(Note(message=f"{script} is not one of {', '.join(TRAINING_SCRIPTS)}: its arguments are "
                                        "read with train_network.py's catalog", source=f"{label}"))
    cli = _command_line(script, args, ev, label)
    merged = _config_file(script, cli, path, ev, label)
    for name, s in cli.items():
        if name in merged and merged[name].value != s.value:
            s = s.model_copy(update={"note": _join(s.note, f"overrides {merged[name].source} "
                                                            f"({merged[name].value!r}): command line wins")})
        merged[name] = s
    if "dataset_config" in merged:
        _dataset_config(merged, path, ev, label)
    ev.settings = list(merged.values())
    hidden = ev.facts.pop("notes_not_shown", 0)
    if hidden:
        ev.warnings.append(Note(message=f"{hidden} more notes on single arguments of this command are not shown "
                                        f"(the first {_MAX_ARG_NOTES} are)", source=label))
    return ev


def _scripts_of(name: str) -> list[str]:
    """The training scripts that have argument ``name`` (for a foreign flag or key: catalog().foreign said so)."""
    arg = catalog().get(name)
    return list(arg.scripts) if arg is not None else []


def _command_line(script: str, args: list[Token], ev: Evidence, label: str) -> dict[str, Setting]:
    """The command's flags typed as ``script``'s argparse types them (the last of a repeated flag kept)."""
    cat = catalog()
    cli: dict[str, Setting] = {}
    for name, tok, values, abbrev in _group_flags(args, ev, label):
        src = f"{label}:{tok.line}"
        foreign = cat.foreign(name, script)
        if foreign:
            # argparse of this script has no such option: "unrecognized arguments" (or an abbreviation error)
            _warn(ev, foreign, src, ("foreign_flags", {"flag": f"--{name}", "script": script,
                                                      "scripts": _scripts_of(name), "source": src}))
        if tok.runtime or any(v.runtime for v in values or []):
            # the script computes it when it runs ($(...), an environment variable): shown as written, never typed
            shown = " ".join(v.text for v in values) if values else tok.text
            cli[name] = Setting(name=name, value=shown, source=src, origin="unknown",
                                note=f"known only when the script runs: {shown}")
            continue
        try:
            value = cat.convert(name, None if values is None else [v.text for v in values], script)
        except ConversionError as e:
            _warn(ev, f"{e}: argparse stops here", src)
            continue
        if name in cli:
            _warn(ev, f"--{name} given twice; argparse keeps the last ({cli[name].source} is overridden)", src)
        cli[name] = Setting(name=name, value=value, source=src, note=abbrev)
    return cli


def _config_file(script: str, cli: dict[str, Setting], path: Path, ev: Evidence, label: str) -> dict[str, Setting]:
    """The settings of the ``--config_file`` the command names (none when it names none or it is missing)."""
    merged: dict[str, Setting] = {}
    if "config_file" not in cli:
        return merged
    cfg_name = str(cli["config_file"].value)
    # read_config_from_file appends ".toml" when missing
    cfg_name = cfg_name if cfg_name.endswith(".toml") else cfg_name + ".toml"
    cfg_path = locate_file(cfg_name, path.parent)
    if cfg_path is None:
        ev.complete = False
        ev.warnings.append(Note(message=f"config file {cfg_name} not found next to the script: its settings are "
                                        "unknown", source=cli["config_file"].source))
        return merged
    cat = catalog()
    cfg = parse_config_toml(cfg_path, label=relative_label(cfg_path, path, label))
    ev.includes.append(str(cfg_path))
    ev.warnings.extend(cfg.warnings)
    for k in ("ignored_keys", "mistyped"):
        ev.facts.setdefault(k, []).extend(cfg.facts.get(k, []))
    for s in cfg.settings:
        foreign = cat.foreign(s.name, script)
        if foreign:
            # read_config_from_file puts every key on the namespace; this script never reads this one
            ev.warnings.append(Note(message=foreign.replace("would refuse it", "ignores it silently in a "
                                                                                  "config file"),
                                    source=s.source))
            ev.facts.setdefault("foreign_keys", []).append(
                {"key": s.name, "value": s.value, "source": s.source, "script": script,
                 "scripts": _scripts_of(s.name)})
            continue
        merged[s.name] = s
    return merged


def _dataset_config(merged: dict[str, Setting], path: Path, ev: Evidence, label: str) -> None:
    """Apply the ``dataset_config`` TOML to ``merged`` (in place): its values win, kohya reads it first."""
    ds_name = str(merged["dataset_config"].value)
    ds_path = locate_file(ds_name, path.parent)
    if ds_path is None:
        ev.complete = False
        ev.warnings.append(Note(message=f"dataset config {ds_name} not found: dataset settings are unknown",
                                source=merged["dataset_config"].source))
        return
    ds = parse_dataset_toml(ds_path, label=relative_label(ds_path, path, label))
    ev.includes.append(str(ds_path))
    ev.warnings.extend(ds.warnings)
    argvals = {k: s.value for k, s in merged.items()}
    resolved = ds.resolve(argvals, {k: s.source for k, s in merged.items()})
    ev.facts["datasets"] = [r.model_dump() for r in resolved]
    for s in run_settings(ds, resolved):
        if s.name in merged and merged[s.name].value != s.value and s.source != merged[s.name].source:
            s = s.model_copy(update={"note": _join(s.note, f"overrides {merged[s.name].source} "
                                                            f"({merged[s.name].value!r}): kohya takes the "
                                                            "dataset config first")})
            ev.warnings.append(Note(message=f"{s.name} from the dataset config overrides "
                                            f"{merged[s.name].value!r} at {merged[s.name].source}",
                                    source=s.source))
        merged[s.name] = s
    for ignored in ("train_data_dir", "reg_data_dir", "in_json"):
        if ignored in merged:
            ev.warnings.append(Note(message=f"--{ignored} is ignored by kohya when a dataset config is given",
                                    source=merged[ignored].source))


def _warn(ev: Evidence, message: str, source: str, fact: tuple[str, dict] | None = None) -> None:
    """A note on one argument (and its fact); past _MAX_ARG_NOTES only counted: a command of a million repeated
    flags keeps a bounded list."""
    if len(ev.warnings) < _MAX_ARG_NOTES:
        ev.warnings.append(Note.model_construct(message=message, source=source))
        if fact is not None:
            ev.facts.setdefault(fact[0], []).append(fact[1])
    else:
        ev.facts["notes_not_shown"] = ev.facts.get("notes_not_shown", 0) + 1


def parse_argv(argv: list[str], script: str = "train_network.py", base_dir: Path | None = None,
               label: str = "command line") -> Evidence:
    """Read a kohya argument vector (the words after ``script.py``) as kohya would, files relative to base_dir."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    tokens = [Token(t, i + 1) for i, t in enumerate(argv)]
    return resolve_invocation(script, tokens, base / "__argv__", kind="argv", label=label)


# Files a piece of evidence writes before its training command runs (a notebook's toml.dump): set by that reader
# while it resolves the command; name as written, or base name -> the file it was put into.
CREATED_FILES: ContextVar[dict[str, Path] | None] = ContextVar("created_files", default=None)


def locate_file(name: str, folder: Path) -> Path | None:
    """A file named in evidence: as written (absolute, or relative to the evidence's folder), else by its base
    name in that folder (scripts and GUI JSON often hold paths of another machine)."""
    p = Path(name.replace("\\", "/")) if "\\" in name else Path(name)
    created = CREATED_FILES.get() or {}
    for key in (name, p.name):
        if key in created:  # written by the evidence itself before the command runs
            return created[key]
    candidates = [p] if p.is_absolute() else [folder / p]
    candidates.append(folder / p.name)
    for c in candidates:
        if c.is_file():
            return c
    return None


def relative_label(target: Path, evidence_path: Path, evidence_label: str) -> str:
    """Label an included file the way its including evidence is labelled (same relative root)."""
    try:
        rel = target.resolve().relative_to(evidence_path.parent.resolve())
    except ValueError:
        return str(target)
    parent = str(Path(evidence_label).parent)
    return str(rel) if parent in ("", ".") else str(Path(parent) / rel)


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b
