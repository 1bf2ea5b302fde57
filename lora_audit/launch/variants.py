"""A study folder as the launcher sees it: its variants (study.toml, and the current bisect round), their config
hashes (variant.json), their outputs, and outputs linked from an attempt that trained the same config."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.launch.state import Attempt, StudyState
from lora_audit.study_model import Variant as VariantRecord
from lora_audit.study_model import load_study, load_variant

OUTPUT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


@dataclass
class Variant:
    id: str
    folder: Path
    hash: str | None
    script: str | None = None  # the sd-scripts training script (variant.json "script"), e.g. train_network.py
    runner: str = "train.sh"  # the tool's runner (variant.json "runner"); train.sh in studies written before it
    sd_scripts_commit: str | None = None  # pinned: launch runs kohya from a git worktree at this commit


# -- the study folder -------------------------------------------------------------------------------------------
def study_variants(study: Path) -> list[Variant]:
    """The variants of a study folder: study.toml's list, plus the current bisect round's when there is one."""
    study = Path(study)
    ids = list(load_study(study).variants)
    if (study / "bisect.json").is_file():
        from lora_audit.ablate import bisect as bis
        from lora_audit.ablate.study import load

        ids += [t.id for t in bis.pending(load(study).state) if t.id not in ids]
    out = []
    for vid in ids:
        folder = study / vid
        record = load_variant(folder) or VariantRecord()
        if not (folder / record.runner_file).is_file():
            raise EvidenceError(f"variant {vid} has no {record.runner_file}", str(folder))
        out.append(Variant(vid, folder, record.hash, record.script, record.runner_file, record.sd_scripts_commit))
    return out


def config_hash(folder: Path) -> str | None:
    record = load_variant(folder)
    return record.hash if record else None


def select(variants: list[Variant], only: list[str] | None) -> list[Variant]:
    if not only:
        return variants
    known = {v.id for v in variants}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise EvidenceError(f"no such variant: {', '.join(unknown)} (the study has: {', '.join(sorted(known))})")
    return [v for v in variants if v.id in only]


# -- outputs and reuse --------------------------------------------------------------------------------------------
def find_outputs(folder: Path) -> list[str]:
    out_dir = folder / "output"
    if not out_dir.is_dir():
        return []
    return sorted(str(p) for p in out_dir.rglob("*") if p.suffix in OUTPUT_SUFFIXES and (p.is_file()))


def set_aside(folder: Path, attempt: int) -> None:
    """Keep what an earlier attempt wrote: ``output`` becomes ``output.before-attempt-N``."""
    out_dir = folder / "output"
    if out_dir.is_symlink() or (out_dir.exists() and any(out_dir.iterdir())):
        target = folder / f"output.before-attempt-{attempt}"
        k = 1
        while target.exists():
            k += 1
            target = folder / f"output.before-attempt-{attempt}.{k}"
        out_dir.rename(target)


def trained_elsewhere(st: StudyState, others: list[StudyState], hash_: str | None) -> tuple[Attempt, Path] | None:
    if not hash_:
        return None
    for s in [st, *others]:
        a = s.done_with_hash(hash_)
        if a is not None:
            return a, s.study
    return None


def link_outputs(st: StudyState, a: Attempt, v: Variant, source: Attempt, source_study: Path) -> list[str]:
    set_aside(v.folder, a.attempt)
    out_dir = v.folder / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for f in source.outputs:
        link = out_dir / Path(f).name
        link.symlink_to(Path(f).resolve())
        links.append(str(link))
    st.finish(a.id, "done", exit_code=source.exit_code, log=source.log, outputs=links,
              last_step=source.last_step, total_steps=source.total_steps, last_loss=source.last_loss,
              reused_from=f"{source_study.resolve()}/{source.variant}#{source.attempt}")
    return links


# -- what is on disk (when the launch state was lost) ------------------------------------------------------------
_ATTEMPT_FILE = re.compile(r"^(?:attempt-(\d+)\.log|output\.before-attempt-(\d+)(?:\.\d+)?)$")


def disk_attempts(folder: Path) -> int:
    """The highest attempt number the variant's files show (``logs/attempt-N.log``, ``output.before-attempt-N``):
    a relaunch after the state file was deleted numbers its attempts after these, never onto them."""
    n = 0
    for d in (folder / "logs", folder):
        try:
            names = [p.name for p in d.iterdir()]
        except OSError:
            continue
        for name in names:
            m = _ATTEMPT_FILE.match(name)
            if m:
                n = max(n, int(m.group(1) or m.group(2)))
    return n


def final_output(folder: Path) -> Path:
    """Where kohya writes the variant's finished LoRA: ``output_dir/output_name.save_model_as``.

    kohya: ``train_util.get_last_ckpt_name`` (output_name defaults to ``last``), ``save_model_as`` defaults to
    ``safetensors`` (``train_network.setup_parser``); a config file's tables are flattened
    (``train_util.read_config_from_file``). Epoch/step saves (``name-000001``, ``name-step00000010``) are not the
    finished LoRA. variant.json's ``output_dir``/``output_name``, when it has them, win over config.toml."""
    values: dict = {}
    try:
        doc = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
        for key, value in doc.items():
            values.update(value if isinstance(value, dict) else {key: value})
    except (OSError, ValueError):
        pass
    record = load_variant(folder)
    if record is not None:
        values.update({k: getattr(record, k) for k in ("output_dir", "output_name", "save_model_as")
                       if getattr(record, k) is not None})
    out_dir = values["output_dir"] if isinstance(values.get("output_dir"), str) else "output"
    name = values["output_name"] if isinstance(values.get("output_name"), str) else "last"
    ext = values["save_model_as"] if values.get("save_model_as") in ("ckpt", "pt", "safetensors") else "safetensors"
    return folder / out_dir / f"{name}.{ext}"


def complete_outputs(folder: Path) -> list[str] | None:
    """The variant's outputs when its finished LoRA is on disk (a non-empty regular file), else None."""
    final = final_output(folder)
    try:
        if not final.is_file() or final.stat().st_size == 0:
            return None
    except OSError:
        return None
    found = find_outputs(folder)
    return found if str(final) in found else sorted({*found, str(final)})
