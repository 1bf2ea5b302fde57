"""Run discovery: which folders and files are runs. One rule, used by every command (inspect, diff, audit, ablate,
bisect) through ``evidence.run.load_runs``.

- A folder is **one run** when it holds evidence at its top level: a training script, a config, a note or notebook
  with a training command, a GUI JSON, a metadata dump, ``run.toml`` or a LoRA. Its subfolders (``output/``,
  ``config/``, ``logs/``, ``sample/``, image folders ``10_name/``) belong to it and are read as that run's.
- A folder with no top-level evidence whose evidence lies only in such part folders is one run too
  (``a/config/c.toml`` + ``a/output/x.safetensors`` is run ``a``).
- Otherwise a folder whose subfolders are runs is a **folder of runs**; each run subfolder is a run (recursively).

A note or notebook holding several training commands is split into one run per command later, by ``load_runs``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lora_audit.evidence._io import is_readable_evidence, read_text

# Subfolders that belong to the run around them (kohya's own layout, the GUI's, and the usual hand-made ones).
PART_DIRS = {
    "config", "configs", "cfg", "conf", "output", "outputs", "out", "log", "logs", "logging", "sample", "samples",
    "img", "imgs", "image", "images", "train", "train_data", "reg", "reg_data", "regularization", "dataset",
    "datasets", "data", "model", "models", "lora", "loras", "checkpoint", "checkpoints", "tensorboard", "script",
    "scripts", "notes", "notebook", "notebooks", "metadata",
}
# kohya's image folders: "<repeats>_<name>" (train_util: the folder name's number is num_repeats)
_IMAGE_DIR = re.compile(r"^\d+_")
# A text file that holds a training command, or a metadata dump in a note.
_COMMAND = re.compile(r"[\w./\\-]*train\w*\.py|fine_tune\.py|accelerate\s+launch")
_SS_KEY = re.compile(r"""["']ss_\w+["']\s*:""")
_TEXT_KINDS = {"shell", "bat", "ps1", "notes", "notes_txt", "notebook"}
# Text evidence bigger than this is not looked into for discovery (the reader itself caps at _io.TEXT_CAP).
_SNIFF_CAP = 4 * 1024 * 1024


def is_part_dir(name: str) -> bool:
    n = name.lower()
    return n in PART_DIRS or bool(_IMAGE_DIR.match(n)) or n.endswith("-state")


def _sniff(path: Path) -> str:
    try:
        if path.stat().st_size > _SNIFF_CAP:
            return ""
        return read_text(path)
    except (OSError, Exception):  # an unreadable file is reported by the reader, not by discovery
        return ""


def is_evidence_file(path: Path) -> bool:
    """True when ``path`` (a file directly in a folder) makes that folder a run."""
    from lora_audit.evidence.parse import detect_kind

    if path.name.startswith(".") or not is_readable_evidence(path):
        return False
    kind = detect_kind(path)
    if kind is None:
        return False
    if kind == "toml":
        # the kohya_ss application's own settings (config.toml with [model], [wd14_caption] ...) is no run's evidence
        sections = set(re.findall(r"^\s*\[([\w.]+)\]", _sniff(path), re.M))
        from lora_audit.evidence.parse import is_gui_app_settings

        return not is_gui_app_settings({k: {} for k in sections})
    if kind in ("run_toml", "safetensors"):
        return True
    text = _sniff(path)
    if kind in _TEXT_KINDS:
        return bool(_COMMAND.search(text) or (kind in ("notes", "notes_txt") and _SS_KEY.search(text)))
    if kind == "json":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # a depth bomb is the reader's one-line error, not discovery's
            from lora_audit.evidence.metadata_dump import python_repr_dump

            try:  # metadata saved with pprint under a .json name
                return "'ss_" in text and python_repr_dump(path) is not None
            except Exception:  # unreadable: the reader reports it
                return False
        from lora_audit.evidence.gui_json import is_gui_json
        from lora_audit.evidence.metadata_dump import is_metadata_dump

        return isinstance(obj, dict) and (is_gui_json(obj) or is_metadata_dump(obj))
    return False


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return []


def has_top_level_evidence(folder: Path) -> bool:
    try:
        files = sorted(f for f in folder.iterdir() if f.is_file())
    except OSError:
        return False
    return any(is_evidence_file(f) for f in files)


def _holds_evidence(folder: Path, depth: int = 0) -> bool:
    if has_top_level_evidence(folder):
        return True
    return depth < 4 and any(_holds_evidence(d, depth + 1) for d in _subdirs(folder))


def discover(path: str | Path, depth: int = 0) -> list[Path]:
    """The runs at ``path``: ``[path]`` for a file or a run folder, the run subfolders of a folder of runs
    (``[]`` when nothing under it is evidence)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    if has_top_level_evidence(path):
        return [path]
    subs = [d for d in _subdirs(path) if _holds_evidence(d)]
    if not subs:
        return []
    if all(is_part_dir(d.name) for d in subs):
        return [path]  # a/config/c.toml, a/output/x.safetensors: the parts of run a
    runs: list[Path] = []
    for d in subs:
        if is_part_dir(d.name):
            continue  # a shared config/ beside run folders is no run of its own
        runs.extend(discover(d, depth + 1) if depth < 4 else [d])
    return runs


# kohya's per-epoch and per-step file names (train_util.EPOCH_FILE_NAME "{}-{:06d}", STEP_FILE_NAME
# "{}-step{:08d}"): the run's intermediate saves, not runs and not separate evidence.
_EPOCH_FILE = re.compile(r"^(?P<stem>.+)-(?:(?P<epoch>\d{6})|step(?P<step>\d{8}))$")


def epoch_of(path: Path) -> tuple[str, int | None, int | None] | None:
    """(output name, epoch, step) when ``path`` is one of kohya's intermediate saves, else None."""
    m = _EPOCH_FILE.match(path.stem)
    if not m:
        return None
    return m.group("stem"), (int(m.group("epoch")) if m.group("epoch") else None), (
        int(m.group("step")) if m.group("step") else None)


# lora-audit's own runner in a study variant (lora_audit.ablate.files.RUNNER; named here, not imported, so that the
# evidence readers know nothing of ablate). When the variant also holds the user's edited script, that script is the
# evidence and the runner only repeats it: reading both would report two training invocations.
_RUNNER = "lora-audit-run.sh"


def _variant_has_user_script(folder: Path) -> bool:
    meta = folder / "variant.json"
    try:
        if not meta.is_file() or meta.stat().st_size > 1_000_000:
            return False
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    script = data.get("edited_script") if isinstance(data, dict) else None
    return isinstance(script, str) and "/" not in script and (folder / script).is_file()


def walk_files(path: Path, ignored_suffixes: set[str]) -> list[Path]:
    """Every file of a run (its subfolders included), hidden files and ``*-state`` folders left out."""
    if not path.is_dir():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith("-state"))
        top = Path(root) == path
        for n in sorted(names):
            p = Path(root) / n
            if n.startswith("."):
                continue
            if n == _RUNNER and _variant_has_user_script(Path(root)):
                continue
            suffix = p.suffix.lower()
            # .txt in a subfolder is a caption (or sample/prompt.txt): a note only at the run's top level
            if suffix == ".txt" and not top:
                continue
            if suffix in ignored_suffixes:
                continue
            files.append(p)
    return files


def intermediate_saves(files: list[Path]) -> tuple[set[Path], list[dict[str, Any]]]:
    """kohya's per-epoch/per-step saves (``name-000003.safetensors``): the run's epochs, not more evidence. They are
    read only when the final file is missing, and then only the last one."""
    loras = [f for f in files if f.suffix.lower() == ".safetensors"]
    finals = {(f.parent, f.stem) for f in loras}
    groups: dict[tuple[Path, str], list[tuple[int, Path, int | None, int | None]]] = {}
    for f in loras:
        e = epoch_of(f)
        if e is not None:
            stem, epoch, step = e
            groups.setdefault((f.parent, stem), []).append(((epoch or 0) * 10**9 + (step or 0), f, epoch, step))
    skip: set[Path] = set()
    epochs: list[dict[str, Any]] = []
    for key, saves in groups.items():
        saves.sort(key=lambda t: t[0])
        keep_last = key not in finals
        for i, (_, f, epoch, step) in enumerate(saves):
            epochs.append({"file": str(f), "epoch": epoch, "step": step})
            if not (keep_last and i == len(saves) - 1):
                skip.add(f)
    return skip, epochs


# What the kohya_ss GUI writes next to the outputs each time it trains (kohya_gui/lora_gui.py train_model):
# the TOML it passes as --config_file, and the JSON of its form (SaveConfigFile), both stamped %Y%m%d-%H%M%S.
_GUI_SAVE = re.compile(r"^(?P<prefix>config_lora|config_dreambooth|config_finetune|config_textual_inversion|.+?)"
                       r"[-_](?P<stamp>\d{8}-\d{6})\.(?P<ext>toml|json)$")


def older_gui_saves(files: list[Path]) -> list[Path]:
    """The GUI's per-training config files of earlier trainings: every one but the latest of each name."""
    groups: dict[tuple[Path, str, str], list[tuple[str, Path]]] = {}
    for f in files:
        m = _GUI_SAVE.match(f.name)
        if m:
            groups.setdefault((f.parent, m.group("prefix"), m.group("ext")), []).append((m.group("stamp"), f))
    older: list[Path] = []
    for saves in groups.values():
        older.extend(f for _, f in sorted(saves)[:-1])
    return sorted(older)
