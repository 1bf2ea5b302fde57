"""Write a study folder: study.toml, and per variant config.toml (+ dataset.toml), the runner (``lora-audit-run.sh``),
variant.json, and the user's own script edited at the changed lines (under its own name).

Minimal change is textual: when the baseline run's evidence is a kohya config TOML, each variant's config.toml is
that file edited with tomlkit (comments, order and formatting kept) at the changed keys only, plus the
per-variant output name/dir and logging dir. Otherwise (a shell script, notes, a GUI JSON, LoRA metadata) the
study first writes ``baseline-<run>.toml``, a clean kohya config of the baseline's explicit values (defaults left
to kohya), and every variant is that file edited the same way, so a diff of baseline and variant shows just the
change. Every value written into the runner is shell-quoted, and every text in a comment goes through
``files.comment_text`` (one line, control characters escaped). Files are written by ``files.commit``: all of a
study's files are rendered first, then written only if none of the files they replace was edited by hand.
"""

from __future__ import annotations

import json
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from lora_audit.ablate.files import (RUNNER, STUDY_FILE, check_id, check_out, comment_text, commit,
                                     parse_toml, read_study_meta, read_text)
from lora_audit.ablate.plan import _NOT_CONFIG, AblationPlan, VariantSpec
from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import read_text as read_evidence
from lora_audit.kohya.catalog import CATEGORIES, catalog, category
from lora_audit.model import Run

_PATH_KEYS = ("output_dir", "output_name", "logging_dir")
_NOT_WRITTEN = _NOT_CONFIG | {"config_file", "dataset_config", "output_config"}
# files the tool writes in a variant folder: a user's script by one of these names is copied under another
_TOOL_FILES = {"config.toml", "dataset.toml", "variant.json", RUNNER, "script-not-edited.txt"}


def _source_file(source: str | None) -> str | None:
    if not source:
        return None
    head, _, tail = source.rpartition(":")
    return head if tail.isdigit() or tail else source


def baseline_config(run: Run) -> tuple[str, str | None]:
    """(config TOML text, dataset TOML path or None) the variants of ``run`` start from."""
    toml_ev = [e for e in run.evidence if e.kind == "config_toml"]
    scripts = [e for e in run.evidence if e.kind in ("shell", "bat", "ps1", "notes", "gui_json")]
    dataset = None
    ds = run.params.get("dataset_config")
    if ds is not None and ds.origin == "explicit" and run.path:
        for cand in (Path(run.path) / str(ds.value), Path(str(ds.value))):
            if cand.is_file():
                dataset = str(cand)
                break
        else:
            matches = sorted(Path(run.path).rglob(Path(str(ds.value)).name)) if Path(run.path).is_dir() else []
            dataset = str(matches[0]) if matches else None
    if toml_ev and not scripts:
        return read_evidence(toml_ev[0].path), dataset
    explicit = {k: p for k, p in run.params.items() if p.origin == "explicit" and k not in _NOT_WRITTEN
                and k in catalog()}
    if not explicit:
        raise EvidenceError(f"{run.name} has no explicit training settings to build a config from "
                            "(only inferred or unknown values)")
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"kohya config of run {comment_text(run.name)}, rebuilt by lora-audit from its evidence:"))
    doc.add(tomlkit.comment("explicit values only, each with its source; kohya's defaults are left to kohya."))
    for cat in CATEGORIES:
        names = [k for k in explicit if category(k) == cat]
        if not names:
            continue
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(cat))
        for k in names:
            p = explicit[k]
            item = tomlkit.item(_toml_value(k, p.value))
            if p.source:
                item.comment(comment_text(p.source.replace("\\", "/").rsplit("/", 1)[-1]))
            doc.add(k, item)
    return tomlkit.dumps(doc), dataset


def _toml_value(name: str, value: Any):
    arg = catalog().get(name)
    if arg is not None and arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if name == "resolution" and isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if name == "resolution" and isinstance(value, int):
        value = str(value)
    return value


def _tables(doc) -> list:
    out = [doc]
    for _, v in doc.items():
        if isinstance(v, (tomlkit.items.Table,)):
            out.append(v)
        elif isinstance(v, tomlkit.items.AoT):
            for t in v:
                out.append(t)
                for _, sub in t.items():
                    if isinstance(sub, tomlkit.items.AoT):
                        out.extend(sub)
    return out


def _set(doc, key: str, value: Any, remove: bool, comment: str | None = None) -> bool:
    """Edit ``key`` where it is (any table); add it at the top when absent. True if the document had it."""
    found = False
    item = tomlkit.item(value) if not remove else None
    if item is not None and comment:
        item.comment(comment_text(comment))
    for t in _tables(doc):
        if key in t:
            found = True
            if remove:
                del t[key]
            else:
                t[key] = item
    if not found and not remove:
        doc[key] = item
    return found


def variant_config(base_text: str, v: VariantSpec, output_name: str, base_label: str = "the baseline config") -> str:
    try:
        doc = tomlkit.parse(base_text)
    except (TOMLKitError, ValueError, RecursionError) as e:
        raise EvidenceError(f"not a TOML file lora-audit can edit: {comment_text(str(e))[:200]}", base_label) from None
    for c in v.changes:
        if c.param in _NOT_WRITTEN or c.via:  # via: set by the dataset TOML the variant uses
            continue
        _set(doc, c.param, _toml_value(c.param, c.to), remove=c.to_origin == "default" or c.to is None,
             comment=f"lora-audit {v.id}: was {c.from_!r}" + (" (inferred value)" if c.to_origin == "inferred" else ""))
    for key, value in (("output_dir", "output"), ("output_name", output_name), ("logging_dir", "logs")):
        _set(doc, key, value, remove=False, comment="lora-audit: per-variant output")
    if "dataset_config" in doc or any("dataset_config" in t for t in _tables(doc)):
        _set(doc, "dataset_config", "dataset.toml", remove=False)
    text = tomlkit.dumps(doc)
    tomllib.loads(text)  # what we write must parse
    return text


def runner_script(v: VariantSpec, backend: str, sd_scripts: str, has_dataset: bool) -> str:
    """The tool's runner (``lora-audit-run.sh``): runs kohya (or the built-in trainer) on the variant's config.
    Values are shell words quoted with shlex; the comment lines hold only ``comment_text``."""
    q = shlex.quote
    lines = ["#!/usr/bin/env bash", f"# variant {comment_text(v.id)}: {comment_text(v.purpose)}",
             "# generated by lora-audit ablate; edit config.toml, not this file", "set -euo pipefail",
             'cd "$(dirname "$0")"']
    args = ["--config_file", "config.toml"] + (["--dataset_config", "dataset.toml"] if has_dataset else [])
    if backend == "builtin":
        # the Python that wrote the study has lora-audit installed; LORA_AUDIT_PYTHON overrides it elsewhere
        lines.append("DEFAULT_PYTHON=" + q(sys.executable))
        lines.append('PYTHON="${LORA_AUDIT_PYTHON:-$DEFAULT_PYTHON}"')
        lines.append('exec "$PYTHON" -m lora_audit.train ' + " ".join(q(a) for a in args))
    else:
        lines.append("DEFAULT_SD_SCRIPTS=" + q(sd_scripts))
        lines.append('SD_SCRIPTS="${LORA_AUDIT_SD_SCRIPTS:-$DEFAULT_SD_SCRIPTS}"')
        # sd-scripts' own Python when `lora-audit launch` names one (--python, its venv), else accelerate on PATH
        lines.append("ACCELERATE=(accelerate launch)")
        lines.append('[ -z "${LORA_AUDIT_KOHYA_PYTHON:-}" ] || '
                     'ACCELERATE=("$LORA_AUDIT_KOHYA_PYTHON" -m accelerate.commands.launch)')
        lines.append(f'exec "${{ACCELERATE[@]}}" "$SD_SCRIPTS"/{q(v.script)} ' + " ".join(q(a) for a in args))
    return "\n".join(lines) + "\n"


train_script = runner_script  # the name it had when the runner was called train.sh


def _baseline_text(out: Path, run: Run) -> tuple[str, str | None, str, bool]:
    """(baseline TOML text, dataset TOML path, its file name in the study, whether to write it). A baseline the
    study already has is read back, so that later rounds edit the same text as the first."""
    text, dataset = baseline_config(run)
    name = f"baseline-{_safe(run.name)}.toml"
    base_file = out / name
    if base_file.exists() or base_file.is_symlink():
        if not base_file.is_file() or base_file.is_symlink():
            raise EvidenceError("exists and is not a file lora-audit wrote: remove it or choose another --out",
                                str(base_file))
        old = read_text(base_file, "a study baseline")
        parse_toml(old, base_file, "a study baseline (remove it to regenerate)")
        try:
            tomlkit.parse(old)
        except (TOMLKitError, ValueError, RecursionError) as e:
            raise EvidenceError(f"not TOML lora-audit can edit: {comment_text(str(e))[:200]}",
                                str(base_file)) from None
        return old, dataset, name, False
    return text, dataset, name, True


def render_variants(variants: list[VariantSpec], runs: dict[str, Run], out: Path, backend: str = "kohya",
                    sd_scripts: str = "sd-scripts") -> dict[str, tuple[str, bool]]:
    """Every file of ``variants`` (relative path → (text, executable)), written nowhere yet."""
    out = Path(out)
    files: dict[str, tuple[str, bool]] = {}
    bases: dict[str, tuple[str, str | None, str]] = {}
    for v in variants:
        check_id(v.id, "variant")
        if v.baseline not in bases:
            text, dataset, name, new = _baseline_text(out, runs[v.baseline])
            if new:
                files[name] = (text, False)
            bases[v.baseline] = (text, dataset, name)
        text, dataset, base_name_file = bases[v.baseline]
        # a dataset change set (ablate.plan._dataset_set) is applied by using the bad run's dataset TOML
        dataset = next((str(c.to) for c in v.changes if c.param == "dataset_config" and c.to), dataset)
        base_name = runs[v.baseline].value("output_name") or "lora"
        d = out / v.id
        files[f"{v.id}/config.toml"] = (variant_config(text, v, f"{base_name}-{v.id}", str(out / base_name_file)),
                                        False)
        if dataset:
            files[f"{v.id}/dataset.toml"] = (read_evidence(dataset), False)
        script_copy, script_files = _edited_script(runs[v.baseline], v, d, f"{base_name}-{v.id}")
        files.update({f"{v.id}/{k}": (t, False) for k, t in script_files.items()})
        files[f"{v.id}/{RUNNER}"] = (runner_script(v, backend, sd_scripts, bool(dataset)), True)
        record = {k: val for k, val in v.dump().items()
                  if k in ("id", "baseline", "changes", "hash", "purpose", "steps", "script")}
        record["runner"] = RUNNER
        record["edited_script"] = script_copy
        files[f"{v.id}/variant.json"] = (json.dumps(record, indent=2, default=str) + "\n", False)
    return files


def write_variants(variants: list[VariantSpec], runs: dict[str, Run], out: Path, backend: str = "kohya",
                   sd_scripts: str = "sd-scripts", force: bool = False) -> list[Path]:
    """One folder per variant: config.toml (+ dataset.toml), the runner, variant.json (+ the user's script,
    edited). Nothing is written if a file it would replace was edited by hand (unless ``force``)."""
    commit(Path(out), render_variants(variants, runs, out, backend, sd_scripts), force)
    return [Path(out) / v.id for v in variants]


def _edited_script(run: Run, v: VariantSpec, d: Path, output_name: str) -> tuple[str | None, dict[str, str]]:
    """When the baseline is a script: (its name in the variant folder, {file: text}) with only the changed lines
    edited, for people who launch their own script. The copy keeps the script's name unless that is the name of a
    file the tool writes (then ``own-<name>``). No copy when it is not a script or not editable as text: a note
    says why."""
    from lora_audit.ablate.script_edit import ScriptEditError, edit_script, rename_script

    scripts = [e for e in run.evidence if e.kind in ("shell", "bat", "ps1")]
    if len(scripts) != 1:
        return None, {}
    path = Path(scripts[0].path)
    lines = {}
    for name, p in run.params.items():
        if p.origin == "explicit" and p.source and p.source.rpartition(":")[0] == str(path):
            tail = p.source.rpartition(":")[2]
            if tail.isdigit():
                lines[name] = int(tail)
    edits = {c.param: (_toml_value(c.param, c.to), c.to_origin == "default" or c.to is None)
             for c in v.changes if c.param not in _NOT_WRITTEN and not c.via}
    out_dir = (d / "output").resolve()
    edits.update({"output_dir": (str(out_dir), False), "output_name": (output_name, False),
                  "logging_dir": (str((d / "logs").resolve()), False)})
    try:
        text = edit_script(read_evidence(path), scripts[0].kind, edits, lines)
        for c in v.changes:
            if c.param == "training_script" and c.from_ and c.to:
                text = rename_script(text, str(c.from_), str(c.to))
    except (ScriptEditError, EvidenceError) as e:
        return None, {"script-not-edited.txt": f"{comment_text(path.name)} could not be edited as text: "
                                               f"{comment_text(str(e))}\nconfig.toml and {RUNNER} hold the variant.\n"}
    name = path.name if path.name not in _TOOL_FILES else f"own-{path.name}"
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        name = "own-script" + path.suffix
    return name, {name: text}


def write_study(plan: AblationPlan, runs: dict[str, Run], out: Path, backend: str = "kohya",
                sd_scripts: str = "sd-scripts", inputs: list[str | Path] = (), force: bool = False,
                also: list[VariantSpec] = ()) -> list[Path]:
    """Write the study folder; returns the variant folders. ``also``: variants written with it but not listed in
    study.toml (a bisection's first round, which bisect.json lists).

    ``out`` must be new, empty, or a study of this tool, and outside every run folder and every folder in
    ``inputs``; it is refused when it holds a different study, or when a file about to be replaced was edited since
    lora-audit wrote it (unless ``force``). Every file is rendered before anything is written."""
    out = Path(out)
    check_out(out, [r.path for r in runs.values() if r.path] + list(inputs))
    if (out / STUDY_FILE).is_file():
        old = read_study_meta(out)
        if old.good != plan.good or sorted(old.bad) != sorted(plan.bad):
            raise EvidenceError(f"{STUDY_FILE} belongs to another study ({comment_text(old.good)} vs "
                                f"{comment_text(', '.join(old.bad))}); choose another --out", str(out / STUDY_FILE))
    files = render_variants(plan.variants + list(also), runs, out, backend, sd_scripts)
    doc = tomlkit.document()
    doc.add(tomlkit.comment("lora-audit study: the runs compared, the strategy, the backend"))
    doc["good"] = plan.good
    doc["bad"] = plan.bad
    doc["strategy"] = plan.strategy
    doc["backend"] = backend
    doc["sd_scripts"] = sd_scripts
    doc["variants"] = [v.id for v in plan.variants]
    doc["runs"] = {name: str(Path(r.path).resolve()) if r.path else "" for name, r in runs.items()}
    tomllib.loads(tomlkit.dumps(doc))  # what we write must parse
    commit(out, files, force, study_doc=doc)
    return [out / v.id for v in plan.variants]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
