"""One evidence file -> its Evidence (the reader its kind needs), and the evidence files of one run folder read."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import is_readable_evidence, unreadable_reason
from lora_audit.evidence.discovery import intermediate_saves, older_gui_saves, walk_files
from lora_audit.model import Evidence, Note

_IGNORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".caption", ".log", ".npz", ".ckpt", ".pt", ".bin",
                     ".gif", ".csv"}
# Readers whose file may hold several training commands that are separate runs (a note's history, a notebook's
# LoRA and fine-tune cells): one run per command, never merged.
_SPLIT_KINDS = {"notes", "notebook"}
# Sections of the kohya_ss application's own settings file (bmaltais/kohya_ss "config example.toml", read by
# kohya_gui/class_gui_config.py): the GUI's defaults for its form, not a training config.
_GUI_APP_SECTIONS = {"settings", "server", "model", "folders", "configuration", "accelerate_launch", "basic",
                     "advanced", "dataset_preparation", "huggingface", "samples", "sdxl", "wd14_caption", "metadata"}

_SUFFIX_KINDS = {".sh": "shell", ".bash": "shell", ".zsh": "shell", ".bat": "bat", ".cmd": "bat", ".ps1": "ps1",
                 ".md": "notes", ".markdown": "notes", ".txt": "notes_txt", ".ipynb": "notebook",
                 ".safetensors": "safetensors", ".json": "json", ".toml": "toml"}


def detect_kind(path: Path) -> str | None:
    if path.name.lower() == "run.toml":
        return "run_toml"
    return _SUFFIX_KINDS.get(path.suffix.lower())


def parse_file(path: Path, label: str | None = None) -> list[Evidence]:
    """Parse one evidence file with the parser its kind needs (an empty list when it holds no evidence)."""
    path = Path(path)
    label = label or str(path)
    reader = _READERS.get(detect_kind(path) or "")
    return reader(path, label) if reader is not None else []


def _script(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence.shell import parse_shell

    return parse_shell(path)


def _notes(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence.notes import parse_notes

    return parse_notes(path, label)


def _notebook(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence.notebook import parse_notebook

    return parse_notebook(path, label)


def _safetensors(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence.safetensors_header import parse_safetensors

    return [parse_safetensors(path)]


def _json(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence._json_lines import load_json
    from lora_audit.evidence.gui_json import is_gui_json, parse_gui_json
    from lora_audit.evidence.metadata_dump import is_metadata_dump, parse_metadata_dump, python_repr_dump

    try:
        obj = load_json(path, label)  # regular file, 20 MB cap, any encoding; every failure one line
    except EvidenceError:
        # metadata saved with pprint (a Python dict, not JSON) under a .json name next to the LoRA
        dump = python_repr_dump(path, label)
        if dump is None:
            raise
        return [dump]
    if isinstance(obj, dict) and is_gui_json(obj):
        return [parse_gui_json(path)]
    if is_metadata_dump(obj):
        return [parse_metadata_dump(path, label)]
    return []


def _toml(path: Path, label: str) -> list[Evidence]:
    from lora_audit.evidence._toml_lines import read_toml
    from lora_audit.evidence.config_toml import is_dataset_toml, parse_config_toml

    data, _ = read_toml(path)
    if is_gui_app_settings(data):
        return [Evidence(path=label, kind="gui_settings", warnings=[Note(
            message="the kohya_ss GUI's own settings file (its form defaults), not a training config: skipped",
            source=label)])]
    if is_dataset_toml(data):
        from lora_audit.evidence.dataset_toml import parse_dataset_toml, run_settings

        ds = parse_dataset_toml(path, label=label)
        resolved = ds.resolve()
        return [Evidence(path=label, kind="dataset_toml", settings=run_settings(ds, resolved),
                         warnings=ds.warnings, facts={"datasets": [r.model_dump() for r in resolved]})]
    return [parse_config_toml(path, label=label)]


_READERS: dict[str, Callable[[Path, str], list[Evidence]]] = {
    "shell": _script, "bat": _script, "ps1": _script, "notes": _notes, "notes_txt": _notes, "notebook": _notebook,
    "safetensors": _safetensors, "json": _json, "toml": _toml}


def is_gui_app_settings(data: dict) -> bool:
    """The kohya_ss application's config.toml: its sections are the GUI's, and hold no kohya argument at the top."""
    tables = {k for k, v in data.items() if isinstance(v, dict)}
    return len(tables & _GUI_APP_SECTIONS) >= 2 and not (tables - _GUI_APP_SECTIONS - {"general"}) and \
        not any(not isinstance(v, dict) for v in data.values()) and bool(tables & {"wd14_caption", "folders",
                                                                                    "model", "settings", "server"})


def _files_of(path: Path) -> list[Path]:

    return walk_files(path, _IGNORED_SUFFIXES)


def missing_reason(path: Path) -> str:
    """Why a path that does not exist (to ``Path.exists``) is not there: a symlink loop, a broken link, or nothing."""
    return (unreadable_reason(path) if os.path.islink(path) else None) or "no such file or directory"


def read_folder(path: Path) -> tuple[dict[str, Any], list[tuple[Path, list[Evidence]]], list[Note], dict[str, Any]]:
    """run.toml, every evidence file's Evidence, warnings about files, facts about the run's files."""
    meta: dict[str, Any] = {}
    files = _files_of(path)
    skip, epochs = intermediate_saves(files)
    parsed: list[tuple[Path, list[Evidence]]] = []
    warnings: list[Note] = []
    older = older_gui_saves(files)
    if older:
        skip |= set(older)
        warnings.append(Note(message=f"{len(older)} older kohya_ss GUI config(s) of earlier trainings in the output "
                                     "folder not read (the latest one describes the files there): "
                                     + ", ".join(p.name for p in older[:5]) + (" ..." if len(older) > 5 else ""),
                             source=str(older[0].parent)))
    for f in files:
        label = str(f)
        kind = detect_kind(f)
        if kind is not None and path.is_dir() and not is_readable_evidence(f):
            # a FIFO, a device, a link to /dev/zero or a symlink loop in a run folder: never opened (it could block
            # or never end); named directly, its reader says so in one line
            warnings.append(Note(message=f"{unreadable_reason(f)}: skipped, not read", source=label))
            continue
        if kind == "run_toml":
            from lora_audit.evidence.run_toml import read_run_toml

            meta, toml_warnings = read_run_toml(f, label)  # every value checked: one line with the line otherwise
            warnings.extend(toml_warnings)
            continue
        if kind is None or f in skip:
            continue
        if kind == "notes_txt":
            from lora_audit.evidence.discovery import is_evidence_file

            if not is_evidence_file(f):
                continue  # a caption or a prompt list beside the images, not a note with a command
        parsed.append((f, parse_file(f, label)))
    included = {str(Path(i).resolve()) for _, evs in parsed for ev in evs for i in ev.includes}
    kept = []
    for f, evs in parsed:
        if str(f.resolve()) in included:
            continue  # read as part of the invocation that names it
        if not evs and detect_kind(f) in ("shell", "bat", "ps1", "notes", "notebook"):
            warnings.append(Note(message="no training command found in this file", source=str(f)))
        for e in evs:
            if e.kind == "gui_settings":
                warnings.extend(e.warnings)
        kept.append((f, [e for e in evs if e.kind != "gui_settings"]))
    facts: dict[str, Any] = {}
    if epochs:
        facts["epochs"] = epochs
    return meta, kept, warnings, facts


def commands_of(evs: list[Evidence]) -> list[Evidence]:
    return [e for e in evs if e.script]


def split_points(parsed: list[tuple[Path, list[Evidence]]]) -> list[tuple[Path, int]]:
    """(file, 1-based index) of every training command of a note or notebook that holds more than one."""
    out: list[tuple[Path, int]] = []
    for f, evs in parsed:
        cmds = commands_of(evs)
        if len(cmds) > 1 and detect_kind(f) in _SPLIT_KINDS | {"notes_txt"}:
            out.extend((f, i) for i in range(1, len(cmds) + 1))
    return out
