"""Merge the evidence of one training run into a Run: every parameter with its provenance.

- ``explicit``: a file says it (``file:line`` or ``file:metadata-key``);
- ``default``: kohya's default, only when the run has a whole training invocation and nothing set it;
- ``inferred``: from tensor shapes or a file size, with the reasoning in ``note``;
- ``unknown``: the evidence cannot say.
Independent pieces of evidence that disagree give a Conflict naming both sources; the first source (invocations
before LoRA files before inferences) keeps the value, and the param's note points at the conflict.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence.merge import apply_aliases, arch_from, fill_defaults, gui_dropped, merge
from lora_audit.evidence.parse import (
    commands_of,
    detect_kind,
    is_gui_app_settings,
    missing_reason,
    parse_file,
    read_folder,
    split_points,
)
from lora_audit.model import Artifact, EpochSave, Evidence, EvidenceRef, Note, Run

__all__ = ["detect_kind", "is_gui_app_settings", "load_path", "load_run", "load_runs", "parse_file"]

_KIND_ORDER = {"shell": 0, "bat": 0, "ps1": 0, "gui_json": 0, "notes": 1, "notebook": 1, "config_toml": 1,
               "dataset_toml": 2, "safetensors": 3, "metadata": 3, "run_toml": 4}

def load_run(path: str | Path, name: str | None = None, command: tuple[str | Path, int] | None = None) -> Run:
    """Read a run: a folder of evidence files (with an optional run.toml) or a single evidence file.

    A note or notebook with several training commands holds several runs: ``command=(file, i)`` picks the i-th
    (1-based); ``load_runs`` gives them all. Without ``command`` such a path is an error, never a merge.
    """
    path = Path(path)
    if not path.exists():
        raise EvidenceError(missing_reason(path), str(path))
    read = read_folder(path)
    if command is None and name is not None and split_points(read[1]):
        # a study names the runs it was made from: one of this note's runs by its name
        for run in load_path(path):
            if run.name == name:
                return run
    return _load(path, name, command, *read)


def _load(path: Path, name: str | None, command: tuple[str | Path, int] | None, meta: dict[str, Any],
          parsed: list[tuple[Path, list[Evidence]]], file_warnings: list[Note], file_facts: dict[str, Any]) -> Run:
    run_warnings = list(file_warnings)
    evidences = _evidences(path, command, parsed)
    artifacts = _artifacts(path, command, meta, evidences, run_warnings, file_facts)
    if not evidences:
        why = f": {file_warnings[0].source}: {file_warnings[0].message}" if file_warnings else ""
        raise EvidenceError("no evidence of a training run here (scripts, TOML/JSON configs, notes, notebooks, "
                            f".safetensors){why}", str(path))
    evidences.sort(key=lambda e: _KIND_ORDER.get(e.kind, 5))
    invocations = [e for e in evidences if e.script or e.complete]
    if len([e for e in invocations if e.script]) > 1:
        run_warnings.append(Note(message=f"{len(invocations)} training invocations in this run's evidence; their "
                                         "differences are reported as conflicts"))
    default_name = path.name if path.is_dir() else path.stem
    if command is not None:
        cfile = Path(command[0])
        default_name = (f"{cfile.stem}-{command[1]}" if not path.is_dir()
                        else f"{path.name}-{cfile.stem}-{command[1]}")
    run = Run(
        name=name or (meta.get("name") if command is None else None) or default_name,
        verdict=meta.get("verdict", "unknown") if command is None else "unknown",
        notes=meta.get("notes") if command is None else None,
        path=str(path),
        script=next((e.script for e in invocations if e.script), None),
        evidence=[EvidenceRef(path=e.path, kind=e.kind) for e in evidences],
        artifacts=artifacts,
    )
    if command is None:
        run.facts.epochs = [EpochSave(**ep) for ep in file_facts.get("epochs", [])]
    _facts(run, evidences, meta)
    run.warnings.extend(run_warnings)
    apply_aliases(evidences)
    merge(run, evidences)
    gui_dropped(run, evidences)
    fill_defaults(run, evidences)
    return run


def _evidences(path: Path, command: tuple[str | Path, int] | None,
               parsed: list[tuple[Path, list[Evidence]]]) -> list[Evidence]:
    """The evidence of the run: every file's, or the one command ``command`` picks from a note or notebook."""
    splits = split_points(parsed)
    if command is None and splits:
        f = splits[0][0]
        raise EvidenceError(f"{len([s for s in splits if s[0] == f])} training commands in {f}: each is a run of its "
                            "own (load_runs reads them all)", str(path))
    if command is None:
        return [e for _, evs in parsed for e in evs]
    cfile, index = Path(command[0]), command[1]
    cmds = next((commands_of(evs) for f, evs in parsed if f.resolve() == cfile.resolve()), [])
    if not 1 <= index <= len(cmds):
        raise EvidenceError(f"no training command number {index} in {cfile}", str(path))
    # the one command alone: the note's other commands and the folder's other evidence belong to other runs
    return [cmds[index - 1]]


def _artifacts(path: Path, command: tuple[str | Path, int] | None, meta: dict[str, Any], evidences: list[Evidence],
               run_warnings: list[Note], file_facts: dict[str, Any]) -> list[Artifact]:
    """The run's LoRA files: run.toml's (those known only by their size add a file-size inference to
    ``evidences``), the .safetensors read, and the intermediate saves of the folder."""
    base = path if path.is_dir() else path.parent
    artifacts = [Artifact(**a) for a in meta.get("artifacts", []) if isinstance(a, dict) and "name" in a]
    arch_hint = meta.get("arch") or arch_from(evidences)
    for a in artifacts:
        if a.size is not None and not (base / a.name).exists():
            from lora_audit.kohya.filesize import settings_from_size

            src = f"{base / 'run.toml'}:artifacts.{a.name}"
            try:
                sized = settings_from_size(a.size, arch_hint, src)
            except ValueError as err:  # an architecture the size model does not know (the size itself is checked)
                run_warnings.append(Note(message=f"{a.name}: no size inference: {err}", source=src))
                continue
            evidences.append(Evidence(path=str(base / "run.toml"), kind="run_toml", settings=sized))
    if command is not None:
        return artifacts
    for e in evidences:
        if e.kind == "safetensors" and not any(a.path == e.path for a in artifacts):
            artifacts.append(Artifact(name=Path(e.path).name, size=e.facts.get("file_size"), path=e.path))
    for ep in file_facts.get("epochs", []):
        if not any(a.path == ep["file"] for a in artifacts):
            what = f"epoch {ep['epoch']}" if ep["epoch"] is not None else f"step {ep['step']}"
            artifacts.append(Artifact(name=Path(ep["file"]).name, path=ep["file"],
                                      note=f"{what}: an intermediate save of this run"))
    return artifacts


def _facts(run: Run, evidences: list[Evidence], meta: dict[str, Any]) -> None:
    """What the readers found beside parameters (ignored keys, processes, datasets, timestamps) and run.toml's
    dataset counts, into ``run.facts``."""
    for e in evidences:
        run.warnings.extend(e.warnings)
        facts = run.facts
        facts.ignored_keys += e.facts.get("ignored_keys", [])
        facts.mistyped += e.facts.get("mistyped", [])
        facts.unknown_flags += e.facts.get("unknown_flags", [])
        facts.foreign_flags += e.facts.get("foreign_flags", [])
        facts.foreign_keys += e.facts.get("foreign_keys", [])
        acc = e.facts.get("accelerate") or {}
        if "num_processes" in acc and facts.num_processes is None:
            with contextlib.suppress(ValueError, TypeError):
                facts.num_processes = int(acc["num_processes"])
        if e.facts.get("datasets") and facts.datasets is None:
            facts.datasets = e.facts["datasets"]
        # LoRA metadata (ss_training_*_at)
        if isinstance(e.facts.get("training_started_at"), (int, float)) and facts.training_started_at is None:
            facts.training_started_at = float(e.facts["training_started_at"])
        if isinstance(e.facts.get("training_finished_at"), (int, float)) and facts.training_finished_at is None:
            facts.training_finished_at = float(e.facts["training_finished_at"])
    dataset = meta.get("dataset", {}) if isinstance(meta.get("dataset"), dict) else {}
    if isinstance(dataset.get("images"), int):
        run.facts.image_count = dataset["images"]
    if isinstance(dataset.get("repeats"), int):
        run.facts.repeats = dataset["repeats"]


def load_runs(paths: list[str | Path], unique: bool = True) -> list[Run]:
    """The runs at each path, by the one discovery rule (``evidence.discovery``): a folder with evidence at its top
    level (or only in part folders: config/, output/, ...) is one run; a folder of such folders is a folder of runs;
    a note or notebook with several training commands is one run per command."""
    from lora_audit.evidence.discovery import discover

    runs: list[Run] = []
    given: list[Path] = []  # the argument each run was found under
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise EvidenceError(missing_reason(p), str(p))
        found = discover(p)
        if not found:
            raise EvidenceError("no evidence of a training run here (scripts, TOML/JSON configs, notes, notebooks, "
                                ".safetensors)", str(p))
        for d in found:
            got = load_path(d)
            runs.extend(got)
            given.extend([p] * len(got))
    # `diff a b` where a/kohya and b/kohya are the runs: the same name under different arguments is told apart by
    # the argument's name (a-kohya, b-kohya)
    names = [r.name for r in runs]
    for n in set(names):
        same = [i for i, r in enumerate(runs) if r.name == n]
        if len(same) > 1 and len({given[i] for i in same}) == len(same) and all(given[i].resolve() != Path(
                runs[i].path or "").resolve() for i in same):
            for i in same:
                runs[i].name = f"{given[i].resolve().name}-{n}"
    if unique:
        names = [r.name for r in runs]
        for n in sorted(set(names)):
            if names.count(n) > 1:
                where = ", ".join(r.path or "?" for r in runs if r.name == n)
                raise EvidenceError(f"two runs are named {n!r} ({where}); give one a name in its run.toml", None)
    return runs


def load_path(path: str | Path) -> list[Run]:
    """Every run one run folder or file holds: usually one; one per command of a multi-command note."""
    path = Path(path)
    if not path.exists():
        raise EvidenceError(missing_reason(path), str(path))
    meta, parsed, warnings, facts = read_folder(path)
    splits = split_points(parsed)
    if not splits:
        return [_load(path, None, None, meta, parsed, warnings, facts)]
    runs = []
    split_files = {f for f, _ in splits}
    rest = [(f, evs) for f, evs in parsed if f not in split_files]
    if any(evs for _, evs in rest) or meta.get("artifacts"):
        runs.append(_load(path, None, None, meta, rest, warnings, facts))
    for f, i in splits:
        runs.append(_load(path, None, (f, i), {}, parsed, [], {}))
    return runs
