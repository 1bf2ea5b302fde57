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
from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.normalize import same
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
_IGNORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".txt", ".caption", ".log", ".npz", ".ckpt", ".pt", ".bin",
                     ".gif", ".csv"}
_KIND_ORDER = {"shell": 0, "bat": 0, "ps1": 0, "gui_json": 0, "notes": 1, "config_toml": 1, "dataset_toml": 2,
               "safetensors": 3, "run_toml": 4}


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
    if suffix == ".md":
        return "notes"
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
    if kind == "notes":
        from lora_audit.evidence.notes import parse_notes

        return parse_notes(path)
    if kind == "safetensors":
        from lora_audit.evidence.safetensors_header import parse_safetensors

        return [parse_safetensors(path)]
    if kind == "json":
        from lora_audit.evidence.gui_json import is_gui_json, parse_gui_json

        from lora_audit.evidence._json_lines import load_json

        obj = load_json(path, label)  # regular file, 20 MB cap, any encoding; every failure one line
        if isinstance(obj, dict) and is_gui_json(obj):
            return [parse_gui_json(path)]
        return []
    if kind == "toml":
        from lora_audit.evidence._toml_lines import read_toml
        from lora_audit.evidence.config_toml import is_dataset_toml, parse_config_toml

        data, _ = read_toml(path)
        if is_dataset_toml(data):
            from lora_audit.evidence.dataset_toml import parse_dataset_toml, run_settings

            ds = parse_dataset_toml(path, label=label)
            resolved = ds.resolve()
            return [Evidence(path=label, kind="dataset_toml", settings=run_settings(ds, resolved),
                             warnings=ds.warnings, facts={"datasets": [r.model_dump() for r in resolved]})]
        return [parse_config_toml(path, label=label)]
    return []


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            p = Path(root) / n
            if not n.startswith(".") and p.suffix.lower() not in _IGNORED_SUFFIXES:
                files.append(p)
    return files


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run: a folder of evidence files (with an optional run.toml) or a single evidence file."""
    path = Path(path)
    if not path.exists():
        raise EvidenceError("no such file or directory", str(path))
    base = path if path.is_dir() else path.parent
    meta: dict[str, Any] = {}
    evidences: list[Evidence] = []
    run_warnings: list[Note] = []
    files = _files_of(path)
    parsed: list[tuple[Path, list[Evidence]]] = []
    for f in files:
        label = str(f)
        kind = detect_kind(f)
        if kind == "run_toml":
            from lora_audit.evidence.run_toml import read_run_toml

            meta, toml_warnings = read_run_toml(f, label)  # every value checked: one line with the line otherwise
            run_warnings.extend(toml_warnings)
            continue
        if kind is None:
            continue
        parsed.append((f, parse_file(f, label)))
    included = {str(Path(i).resolve()) for _, evs in parsed for ev in evs for i in ev.includes}
    for f, evs in parsed:
        if str(f.resolve()) in included:
            continue  # read as part of the invocation that names it
        if not evs and detect_kind(f) in ("shell", "bat", "ps1", "notes"):
            run_warnings.append(Note(message="no training command found in this file", source=str(f)))
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
    if not evidences:
        raise EvidenceError("no evidence of a training run here (scripts, TOML/JSON configs, notes, .safetensors)",
                            str(path))
    evidences.sort(key=lambda e: _KIND_ORDER.get(e.kind, 5))
    invocations = [e for e in evidences if e.script or e.complete]
    if len([e for e in invocations if e.script]) > 1:
        run_warnings.append(Note(message=f"{len(invocations)} training invocations in this run's evidence; their "
                                         "differences are reported as conflicts"))
    run = Run(
        name=name or meta.get("name") or (path.name if path.is_dir() else path.stem),
        verdict=meta.get("verdict", "unknown"),
        notes=meta.get("notes"),
        path=str(path),
        script=next((e.script for e in invocations if e.script), None),
        evidence=[EvidenceRef(path=e.path, kind=e.kind) for e in evidences],
        artifacts=artifacts,
    )
    for e in evidences:
        run.warnings.extend(e.warnings)
        for key in ("ignored_keys", "mistyped", "unknown_flags", "foreign_flags"):
            run.facts.setdefault(key, []).extend(e.facts.get(key, []))
        acc = e.facts.get("accelerate") or {}
        if "num_processes" in acc and "num_processes" not in run.facts:
            try:
                run.facts["num_processes"] = int(acc["num_processes"])
            except ValueError:
                pass
        if e.facts.get("datasets") and "datasets" not in run.facts:
            run.facts["datasets"] = e.facts["datasets"]
    dataset = meta.get("dataset", {}) if isinstance(meta.get("dataset"), dict) else {}
    if isinstance(dataset.get("images"), int):
        run.facts["image_count"] = dataset["images"]
    if isinstance(dataset.get("repeats"), int):
        run.facts["repeats"] = dataset["repeats"]
    run.warnings.extend(run_warnings)
    _merge(run, evidences)
    _fill_defaults(run, evidences)
    return run


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
        disagreeing = [s for s in settings if s is not chosen and not same(name, s.value, chosen.value)
                       and not _compatible(s, chosen)]
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
            if script not in arg.scripts:
                continue
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
                if any(same(name, effective(name, o)[0], eff) for o in options):
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


def load_runs(paths: list[str | Path]) -> list[Run]:
    """One Run per path; a folder without run.toml whose subfolders hold evidence is a folder of runs."""
    runs: list[Run] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise EvidenceError("no such file or directory", str(p))
        subs = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")] if p.is_dir() else []
        run_dirs = [d for d in subs if any(detect_kind(f) for f in _files_of(d))]
        if run_dirs and not (p / "run.toml").exists():
            runs.extend(load_run(d) for d in run_dirs)
        else:
            runs.append(load_run(p))
    names = [r.name for r in runs]
    for n in sorted(set(names)):
        if names.count(n) > 1:
            raise EvidenceError(f"two runs are named {n!r}; give one a name in its run.toml", None)
    return runs
