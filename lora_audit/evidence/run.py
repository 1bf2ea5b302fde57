"""Merge the evidence of one training run into a Run: every parameter with its provenance.

- ``explicit``: a file says it (``file:line`` or ``file:metadata-key``);
- ``default``: kohya's default, only when the run has a whole training invocation and nothing set it;
- ``inferred``: from tensor shapes or a file size, with the reasoning in ``note``;
- ``unknown``: the evidence cannot say.
Independent pieces of evidence that disagree give a Conflict naming both sources; the first source (invocations
before LoRA files before inferences) keeps the value, and the param's note points at the conflict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence.discovery import intermediate_saves, older_gui_saves, walk_files
from lora_audit.evidence._io import is_readable_evidence, unreadable_reason
from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.normalize import same
from lora_audit.kohya.recorded import agrees, recorded_agrees
from lora_audit.kohya.semantics import effective
from lora_audit.model import (Artifact, Conflict, ConflictValue, Evidence, EvidenceRef, Note, Param,
                              Run, Setting)

# Parameters a reader always wants to see, even when the evidence cannot say (then: unknown).
KEY_PARAMS = [
    "training_script", "base_architecture", "pretrained_model_name_or_path", "network_module", "network_dim",
    "network_alpha", "resolution", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "unet_lr",
    "text_encoder_lr", "optimizer_type", "lr_scheduler", "lr_warmup_steps", "mixed_precision", "save_precision",
    "noise_offset", "multires_noise_iterations", "adaptive_noise_scale", "min_snr_gamma", "shuffle_caption",
    "keep_tokens", "caption_extension", "max_token_length", "max_train_epochs", "max_train_steps", "seed",
]
_IGNORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".caption", ".log", ".npz", ".ckpt", ".pt", ".bin",
                     ".gif", ".csv"}
_KIND_ORDER = {"shell": 0, "bat": 0, "ps1": 0, "gui_json": 0, "notes": 1, "notebook": 1, "config_toml": 1,
               "dataset_toml": 2, "safetensors": 3, "metadata": 3, "run_toml": 4}
# Readers whose file may hold several training commands that are separate runs (a note's history, a notebook's
# LoRA and fine-tune cells): one run per command, never merged.
_SPLIT_KINDS = {"notes", "notebook"}
# Sections of the kohya_ss application's own settings file (bmaltais/kohya_ss "config example.toml", read by
# kohya_gui/class_gui_config.py): the GUI's defaults for its form, not a training config.
_GUI_APP_SECTIONS = {"settings", "server", "model", "folders", "configuration", "accelerate_launch", "basic",
                     "advanced", "dataset_preparation", "huggingface", "samples", "sdxl", "wd14_caption", "metadata"}
# Arguments kohya copies into another before reading them (train_util.prepare_dataset_args:
# ``args.caption_extension = args.caption_extention`` when given; lumina/anima_train.py:
# ``args.skip_cache_check = args.skip_latents_validity_check``).
KOHYA_ALIASES = {"caption_extention": "caption_extension", "skip_latents_validity_check": "skip_cache_check"}


def detect_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    name = path.name.lower()
    if name == "run.toml":
        return "run_toml"
    if suffix in (".sh", ".bash", ".zsh"):
        return "shell"
    if suffix in (".bat", ".cmd"):
        return "bat"
    if suffix == ".ps1":
        return "ps1"
    if suffix in (".md", ".markdown"):
        return "notes"
    if suffix == ".txt":
        return "notes_txt"
    if suffix == ".ipynb":
        return "notebook"
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    return None


def parse_file(path: Path, label: str | None = None) -> list[Evidence]:
    """Parse one evidence file with the parser its kind needs (an empty list when it holds no evidence)."""
    path = Path(path)
    label = label or str(path)
    kind = detect_kind(path)
    if kind in ("shell", "bat", "ps1"):
        from lora_audit.evidence.shell import parse_shell

        return parse_shell(path)
    if kind in ("notes", "notes_txt"):
        from lora_audit.evidence.notes import parse_notes

        return parse_notes(path, label)
    if kind == "notebook":
        from lora_audit.evidence.notebook import parse_notebook

        return parse_notebook(path, label)
    if kind == "safetensors":
        from lora_audit.evidence.safetensors_header import parse_safetensors

        return [parse_safetensors(path)]
    if kind == "json":
        from lora_audit.evidence.gui_json import is_gui_json, parse_gui_json

        from lora_audit.evidence._json_lines import load_json

        from lora_audit.evidence.metadata_dump import python_repr_dump

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
        from lora_audit.evidence.metadata_dump import is_metadata_dump, parse_metadata_dump

        if is_metadata_dump(obj):
            return [parse_metadata_dump(path, label)]
        return []
    if kind == "toml":
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
    return []


def is_gui_app_settings(data: dict) -> bool:
    """The kohya_ss application's config.toml: its sections are the GUI's, and hold no kohya argument at the top."""
    tables = {k for k, v in data.items() if isinstance(v, dict)}
    return len(tables & _GUI_APP_SECTIONS) >= 2 and not (tables - _GUI_APP_SECTIONS - {"general"}) and \
        not any(not isinstance(v, dict) for v in data.values()) and bool(tables & {"wd14_caption", "folders",
                                                                                    "model", "settings", "server"})


def _files_of(path: Path) -> list[Path]:

    return walk_files(path, _IGNORED_SUFFIXES)


def _missing(path: Path) -> str:
    """Why a path that does not exist (to ``Path.exists``) is not there: a symlink loop, a broken link, or nothing."""
    return unreadable_reason(path) if os.path.islink(path) else "no such file or directory"


def _read(path: Path) -> tuple[dict[str, Any], list[tuple[Path, list[Evidence]]], list[Note], dict[str, Any]]:
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


def _commands(evs: list[Evidence]) -> list[Evidence]:
    return [e for e in evs if e.script]


def split_points(parsed: list[tuple[Path, list[Evidence]]]) -> list[tuple[Path, int]]:
    """(file, 1-based index) of every training command of a note or notebook that holds more than one."""
    out = []
    for f, evs in parsed:
        cmds = _commands(evs)
        if len(cmds) > 1 and detect_kind(f) in _SPLIT_KINDS | {"notes_txt"}:
            out.extend((f, i) for i in range(1, len(cmds) + 1))
    return out


def load_run(path: str | Path, name: str | None = None, command: tuple[str | Path, int] | None = None) -> Run:
    """Read a run: a folder of evidence files (with an optional run.toml) or a single evidence file.

    A note or notebook with several training commands holds several runs: ``command=(file, i)`` picks the i-th
    (1-based); ``load_runs`` gives them all. Without ``command`` such a path is an error, never a merge.
    """
    path = Path(path)
    if not path.exists():
        raise EvidenceError(_missing(path), str(path))
    read = _read(path)
    if command is None and name is not None and split_points(read[1]):
        # a study names the runs it was made from: one of this note's runs by its name
        for run in load_path(path):
            if run.name == name:
                return run
    return _load(path, name, command, *read)


def _load(path: Path, name: str | None, command: tuple[str | Path, int] | None, meta: dict[str, Any],
          parsed: list[tuple[Path, list[Evidence]]], file_warnings: list[Note], file_facts: dict[str, Any]) -> Run:
    base = path if path.is_dir() else path.parent
    evidences: list[Evidence] = []
    run_warnings = list(file_warnings)
    splits = split_points(parsed)
    if command is None and splits:
        f = splits[0][0]
        raise EvidenceError(f"{len([s for s in splits if s[0] == f])} training commands in {f}: each is a run of its "
                            "own (load_runs reads them all)", str(path))
    if command is not None:
        cfile, index = Path(command[0]), command[1]
        cmds = next((_commands(evs) for f, evs in parsed if f.resolve() == cfile.resolve()), [])
        if not 1 <= index <= len(cmds):
            raise EvidenceError(f"no training command number {index} in {cfile}", str(path))
        # the one command alone: the note's other commands and the folder's other evidence belong to other runs
        evidences = [cmds[index - 1]]
    else:
        for _, evs in parsed:
            evidences.extend(evs)

    # run.toml facts: artifacts known only by their size
    artifacts = [Artifact(**a) for a in meta.get("artifacts", []) if isinstance(a, dict) and "name" in a]
    arch_hint = meta.get("arch") or _arch_from(evidences)
    for a in artifacts:
        if a.size is not None and not (base / a.name).exists():
            from lora_audit.kohya.filesize import settings_from_size

            src = f"{base / 'run.toml'}:artifacts.{a.name}"
            try:
                sized = settings_from_size(a.size, arch_hint, src)
            except ValueError as e:  # an architecture the size model does not know (the size itself is checked)
                run_warnings.append(Note(message=f"{a.name}: no size inference: {e}", source=src))
                continue
            evidences.append(Evidence(path=str(base / "run.toml"), kind="run_toml", settings=sized))
    if command is None:
        for e in evidences:
            if e.kind == "safetensors" and not any(a.path == e.path for a in artifacts):
                artifacts.append(Artifact(name=Path(e.path).name, size=e.facts.get("file_size"), path=e.path))
        for ep in file_facts.get("epochs", []):
            if not any(a.path == ep["file"] for a in artifacts):
                what = f"epoch {ep['epoch']}" if ep["epoch"] is not None else f"step {ep['step']}"
                artifacts.append(Artifact(name=Path(ep["file"]).name, path=ep["file"],
                                          note=f"{what}: an intermediate save of this run"))
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
    run.facts.update(file_facts if command is None else {})
    for e in evidences:
        run.warnings.extend(e.warnings)
        for key in ("ignored_keys", "mistyped", "unknown_flags", "foreign_flags", "foreign_keys"):
            run.facts.setdefault(key, []).extend(e.facts.get(key, []))
        acc = e.facts.get("accelerate") or {}
        if "num_processes" in acc and "num_processes" not in run.facts:
            try:
                run.facts["num_processes"] = int(acc["num_processes"])
            except ValueError:
                pass
        if e.facts.get("datasets") and "datasets" not in run.facts:
            run.facts["datasets"] = e.facts["datasets"]
        for key in ("training_started_at", "training_finished_at"):  # LoRA metadata (ss_training_*_at)
            if isinstance(e.facts.get(key), (int, float)) and key not in run.facts:
                run.facts[key] = e.facts[key]
    dataset = meta.get("dataset", {}) if isinstance(meta.get("dataset"), dict) else {}
    if isinstance(dataset.get("images"), int):
        run.facts["image_count"] = dataset["images"]
    if isinstance(dataset.get("repeats"), int):
        run.facts["repeats"] = dataset["repeats"]
    run.warnings.extend(run_warnings)
    _apply_aliases(evidences)
    _merge(run, evidences)
    _gui_dropped(run, evidences)
    _fill_defaults(run, evidences)
    return run


def _gui_dropped(run: Run, evidences: list[Evidence]) -> None:
    """A kohya_ss GUI field saved as "", false or 0 never reaches kohya: ``train_model`` (kohya_gui/lora_gui.py)
    writes its TOML with ``value not in ["", False, None]``, so kohya uses its default. Known even when the file is
    a preset (not a whole invocation): origin ``default``, the source the JSON line that leaves it unset."""
    cat = catalog()
    for e in evidences:
        for name, src in (e.facts.get("kohya_defaults") or {}).items():
            have = run.params.get(name)
            if (have is not None and have.origin != "unknown") or name not in cat:
                continue
            note = (e.facts.get("gui_fallbacks") or {}).get(name) or (
                "the GUI writes no \"\", false or 0 value into the TOML it trains with, so kohya uses its default")
            run.params[name] = Param(value=cat.get(name).default, origin="default", source=src, note=note)


def _apply_aliases(evidences: list[Evidence]) -> None:
    """kohya's backward-compatible spellings: the value goes to the argument kohya reads (KOHYA_ALIASES)."""
    for e in evidences:
        for i, st in enumerate(e.settings):
            target = KOHYA_ALIASES.get(st.name)
            if target is None or st.value is None:
                continue
            note = f"--{st.name} is kohya's old spelling: it sets {target} (train_util.prepare_dataset_args)"
            e.settings[i] = st.model_copy(update={"name": target, "note": (st.note + "; " if st.note else "")
                                                  + note})
            # kohya copies it over whatever --caption_extension said
            e.settings[:] = [x for j, x in enumerate(e.settings) if j == i or x.name != target]


def _arch_from(evidences: list[Evidence]) -> str | None:
    for e in evidences:
        settings = _architecture(e)
        if settings and not (e.script and settings[0].value in ("sd15", "sd2")):
            return settings[0].value
        if e.script:
            return None  # SD1.x or SD2.x: the file-size model tries both
    return None


def _merge(run: Run, evidences: list[Evidence]) -> None:
    by_name: dict[str, list[Setting]] = {}
    for e in evidences:
        if e.script:
            by_name.setdefault("training_script", []).append(Setting(name="training_script", value=e.script,
                                                                     source=e.path))
        for arch in _architecture(e):
            by_name.setdefault("base_architecture", []).append(arch)
        for s in e.settings:
            by_name.setdefault(s.name, []).append(s)
    for name, settings in by_name.items():
        explicit = [s for s in settings if s.origin == "explicit"]
        chosen = explicit[0] if explicit else settings[0]
        # a value kohya derived or shortened when it recorded it in the LoRA is not a second value (kohya.recorded)
        epochs_set = any(s.origin == "explicit" and s.value is not None for s in by_name.get("max_train_epochs", []))
        disagreeing = [s for s in settings if s is not chosen and not same(name, s.value, chosen.value)
                       and not _compatible(s, chosen) and not recorded_agrees(name, s, chosen, epochs_set)]
        note = chosen.note
        if disagreeing:
            run.conflicts.append(Conflict(param=name, values=[ConflictValue(value=s.value, source=s.source)
                                                              for s in [chosen, *disagreeing]]))
            note = (note + "; " if note else "") + "conflicting evidence: " + ", ".join(
                f"{s.value!r} at {s.source}" for s in disagreeing)
        run.params[name] = Param(value=chosen.value, origin=chosen.origin, source=chosen.source, note=note,
                                 alternatives=chosen.alternatives)


def _compatible(other: Setting, chosen: Setting) -> bool:
    """An inferred value with alternatives does not conflict with an explicit value among its alternatives."""
    for a, b in ((other, chosen), (chosen, other)):
        if a.origin == "inferred" and any(same(a.name, alt.value, b.value) for alt in a.alternatives):
            return True
    return False


def _architecture(e: Evidence) -> list[Setting]:
    """What one piece of evidence says of the base architecture (kohya/trainers.py): the script, the network
    module, the LoRA's metadata and keys, else the base model's name. Two that disagree become a conflict."""
    from lora_audit.kohya import trainers

    found: list[tuple[str, str]] = []
    values = {s.name: s.value for s in e.settings}
    if e.facts.get("arch"):
        found.append((e.facts["arch"], e.facts.get("arch_reason") or "from the LoRA's key names and layer widths"))
    if e.script:
        by_script = trainers.from_script(e.script, bool(values.get("v2")))
        if by_script:
            found.append(by_script)
    by_module = trainers.from_network_module(values.get("network_module"))
    if by_module:
        found.append(by_module)
    if not found:
        by_name = trainers.from_model_name(values.get("pretrained_model_name_or_path"))
        if by_name:
            found.append(by_name)
    out: list[Setting] = []
    for arch, why in found:
        if all(o.value != arch for o in out):
            out.append(Setting(name="base_architecture", value=arch, source=e.path, origin="inferred",
                               note=why))
    return out


def _fill_defaults(run: Run, evidences: list[Evidence]) -> None:
    cat = catalog()
    complete = any(e.complete for e in evidences)
    script = run.script or "train_network.py"
    if complete:
        for name, arg in cat.arguments.items():
            if script not in arg.scripts or name in KOHYA_ALIASES:
                continue  # an old spelling is read into its argument (_apply_aliases), never shown apart
            arg = cat.get(name, script) or arg  # that script's own default (discrete_flow_shift: 3.0 FLUX, 6.0 Lumina)
            have = run.params.get(name)
            default = Param(value=arg.default, origin="default", source=None,
                            note=f"kohya's default ({script}); no evidence sets it")
            if have is None:
                run.params[name] = default
            elif have.origin == "inferred":
                # The command is complete and leaves it unset, so kohya used its default; what a file's shapes or
                # size suggest is a check of that, not a second value.
                eff = effective(name, arg.default)[0]
                options = [have.value, *(a.value for a in have.alternatives)]
                if any(same(name, effective(name, o)[0], eff) for o in options) or agrees(
                        name, have.source, have.value, None, unset=True):
                    default.note += f"; consistent with {have.source} ({have.note or 'inferred'})"
                    run.params[name] = default
                else:
                    run.conflicts.append(Conflict(param=name, values=[
                        ConflictValue(value=arg.default, source="kohya default (the command leaves it unset)"),
                        ConflictValue(value=have.value, source=have.source or "inferred")]))
                    have.note = (have.note + "; " if have.note else "") + (
                        f"the training command leaves it unset (kohya default {arg.default!r})")
    for name in KEY_PARAMS:
        if name not in run.params:
            run.params[name] = Param(origin="unknown", note=_unknown_note(name, evidences))


def _unknown_note(name: str, evidences: list[Evidence]) -> str:
    kinds = {e.kind for e in evidences}
    if kinds <= {"run_toml"}:
        return "only a file size is known: the run's script, config or the LoRA file with its metadata would say"
    if "safetensors" in kinds:
        return "the LoRA file's metadata does not record it: the training script or config would say"
    return "no evidence sets it and the evidence is not a whole training invocation"


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
            raise EvidenceError(_missing(p), str(p))
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
        raise EvidenceError(_missing(path), str(path))
    meta, parsed, warnings, facts = _read(path)
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
