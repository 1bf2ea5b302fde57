"""Write a study folder: study.toml, and per variant config.toml (+ dataset.toml), train.sh, variant.json.

Minimal change is textual: when the baseline run's evidence is a kohya config TOML, each variant's config.toml is
that file edited with tomlkit (comments, order and formatting kept) at the changed keys only, plus the
per-variant output name/dir and logging dir. Otherwise (a shell script, notes, a GUI JSON, LoRA metadata) the
study first writes ``baseline-<run>.toml``, a clean kohya config of the baseline's explicit values (defaults left
to kohya), and every variant is that file edited the same way, so a diff of baseline and variant shows just the
change. Every value written into train.sh is shell-quoted.
"""

from __future__ import annotations

import json
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomlkit

from lora_audit.ablate.plan import _NOT_CONFIG, AblationPlan, VariantSpec
from lora_audit.errors import EvidenceError
from lora_audit.kohya.catalog import CATEGORIES, catalog, category
from lora_audit.model import Run

_PATH_KEYS = ("output_dir", "output_name", "logging_dir")
_NOT_WRITTEN = _NOT_CONFIG | {"config_file", "dataset_config", "output_config"}


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
        return Path(toml_ev[0].path).read_text(encoding="utf-8"), dataset
    explicit = {k: p for k, p in run.params.items() if p.origin == "explicit" and k not in _NOT_WRITTEN
                and k in catalog()}
    if not explicit:
        raise EvidenceError(f"{run.name} has no explicit training settings to build a config from "
                            "(only inferred or unknown values)")
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"kohya config of run {run.name}, rebuilt by lora-audit from its evidence:"))
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
                item.comment(p.source.replace("\\", "/").rsplit("/", 1)[-1])
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
        item.comment(comment)
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


def variant_config(base_text: str, v: VariantSpec, output_name: str) -> str:
    doc = tomlkit.parse(base_text)
    for c in v.changes:
        if c.param in _NOT_WRITTEN:
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


def train_script(v: VariantSpec, backend: str, sd_scripts: str, has_dataset: bool) -> str:
    q = shlex.quote
    lines = ["#!/usr/bin/env bash", f"# variant {v.id}: {v.purpose}", "# generated by lora-audit ablate; "
             "edit config.toml, not this file", "set -euo pipefail", 'cd "$(dirname "$0")"']
    args = ["--config_file", "config.toml"] + (["--dataset_config", "dataset.toml"] if has_dataset else [])
    if backend == "builtin":
        # the Python that wrote the study has lora-audit installed; LORA_AUDIT_PYTHON overrides it elsewhere
        lines.append("PYTHON=${LORA_AUDIT_PYTHON:-" + q(sys.executable) + "}")
        lines.append('exec "$PYTHON" -m lora_audit.train ' + " ".join(q(a) for a in args))
    else:
        lines.append("SD_SCRIPTS=${LORA_AUDIT_SD_SCRIPTS:-" + q(sd_scripts) + "}")
        # sd-scripts' own Python when `lora-audit launch` names one (--python, its venv), else accelerate on PATH
        lines.append("ACCELERATE=(accelerate launch)")
        lines.append('[ -z "${LORA_AUDIT_KOHYA_PYTHON:-}" ] || '
                     'ACCELERATE=("$LORA_AUDIT_KOHYA_PYTHON" -m accelerate.commands.launch)')
        lines.append(f'exec "${{ACCELERATE[@]}}" "$SD_SCRIPTS"/{q(v.script)} ' + " ".join(q(a) for a in args))
    return "\n".join(lines) + "\n"


def write_variants(variants: list[VariantSpec], runs: dict[str, Run], out: Path, backend: str = "kohya",
                   sd_scripts: str = "sd-scripts") -> list[Path]:
    """One folder per variant: config.toml (+ dataset.toml), train.sh, variant.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bases: dict[str, tuple[str, str | None]] = {}
    folders = []
    for v in variants:
        if v.baseline not in bases:
            text, dataset = baseline_config(runs[v.baseline])
            base_file = out / f"baseline-{_safe(v.baseline)}.toml"
            if base_file.exists():  # later rounds edit the same baseline text as the first
                text = base_file.read_text(encoding="utf-8")
            else:
                base_file.write_text(text, encoding="utf-8")
            bases[v.baseline] = (text, dataset)
        text, dataset = bases[v.baseline]
        base_name = runs[v.baseline].value("output_name") or "lora"
        d = out / v.id
        d.mkdir(exist_ok=True)
        (d / "config.toml").write_text(variant_config(text, v, f"{base_name}-{v.id}"), encoding="utf-8")
        if dataset:
            (d / "dataset.toml").write_text(Path(dataset).read_text(encoding="utf-8"), encoding="utf-8")
        script_copy = _edited_script(runs[v.baseline], v, d, f"{base_name}-{v.id}")
        sh = d / "train.sh"
        sh.write_text(train_script(v, backend, sd_scripts, bool(dataset)), encoding="utf-8")
        sh.chmod(0o755)
        record = {k: val for k, val in v.dump().items()
                  if k in ("id", "baseline", "changes", "hash", "purpose", "steps", "script")}
        record["edited_script"] = script_copy
        (d / "variant.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        folders.append(d)
    return folders


def _edited_script(run: Run, v: VariantSpec, d: Path, output_name: str) -> str | None:
    """When the baseline is a script, write it with only the changed lines edited (its own name, in the variant
    folder), for people who launch their own script. None when it is not a script or not editable as text."""
    from lora_audit.ablate.script_edit import ScriptEditError, edit_script, rename_script

    scripts = [e for e in run.evidence if e.kind in ("shell", "bat", "ps1")]
    if len(scripts) != 1:
        return None
    path = Path(scripts[0].path)
    lines = {}
    for name, p in run.params.items():
        if p.origin == "explicit" and p.source and p.source.rpartition(":")[0] == str(path):
            tail = p.source.rpartition(":")[2]
            if tail.isdigit():
                lines[name] = int(tail)
    edits = {c.param: (_toml_value(c.param, c.to), c.to_origin == "default" or c.to is None)
             for c in v.changes if c.param not in _NOT_WRITTEN}
    out_dir = (d / "output").resolve()
    edits.update({"output_dir": (str(out_dir), False), "output_name": (output_name, False),
                  "logging_dir": (str((d / "logs").resolve()), False)})
    try:
        text = edit_script(path.read_text(encoding="utf-8"), scripts[0].kind, edits, lines)
        for c in v.changes:
            if c.param == "training_script" and c.from_ and c.to:
                text = rename_script(text, str(c.from_), str(c.to))
    except (ScriptEditError, OSError) as e:
        (d / "script-not-edited.txt").write_text(f"{path.name} could not be edited as text: {e}\n"
                                                 "config.toml and train.sh hold the variant.\n", encoding="utf-8")
        return None
    target = d / path.name
    target.write_text(text, encoding="utf-8")
    return target.name


def write_study(plan: AblationPlan, runs: dict[str, Run], out: Path, backend: str = "kohya",
                sd_scripts: str = "sd-scripts") -> list[Path]:
    """Write the study folder; returns the variant folders. Refuses to overwrite a different study."""
    out = Path(out)
    study_file = out / "study.toml"
    if study_file.exists():
        old = tomllib.loads(study_file.read_text(encoding="utf-8"))
        if old.get("good") != plan.good or old.get("bad") != plan.bad:
            raise EvidenceError(f"{study_file} belongs to another study ({old.get('good')} vs {old.get('bad')}); "
                                "choose another --out", str(study_file))
    folders = write_variants(plan.variants, runs, out, backend, sd_scripts)
    doc = tomlkit.document()
    doc.add(tomlkit.comment("lora-audit study: the runs compared, the strategy, the backend"))
    doc["good"] = plan.good
    doc["bad"] = plan.bad
    doc["strategy"] = plan.strategy
    doc["backend"] = backend
    doc["sd_scripts"] = sd_scripts
    doc["variants"] = [v.id for v in plan.variants]
    doc["runs"] = {name: str(Path(r.path).resolve()) if r.path else "" for name, r in runs.items()}
    study_file.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return folders


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
