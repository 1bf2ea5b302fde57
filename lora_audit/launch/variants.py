"""A study folder as the launcher sees it: its variants (study.toml, and the current bisect round), their config
hashes (variant.json), their outputs, and outputs linked from an attempt that trained the same config."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.launch.state import Attempt, StudyState

OUTPUT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


@dataclass
class Variant:
    id: str
    folder: Path
    hash: str | None


# -- the study folder -------------------------------------------------------------------------------------------
def study_variants(study: Path) -> list[Variant]:
    """The variants of a study folder: study.toml's list, plus the current bisect round's when there is one."""
    study = Path(study)
    meta_file = study / "study.toml"
    if not meta_file.is_file():
        raise EvidenceError("not a study folder (no study.toml): write one with `lora-audit ablate`", str(study))
    try:
        meta = tomllib.loads(meta_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise EvidenceError(f"invalid TOML: {e}", str(meta_file)) from None
    ids = [str(v) for v in meta.get("variants", [])]
    if (study / "bisect.json").is_file():
        from lora_audit.ablate import bisect as bis
        from lora_audit.ablate.study import load

        ids += [t.id for t in bis.pending(load(study).state) if t.id not in ids]
    out = []
    for vid in ids:
        folder = study / vid
        if not (folder / "train.sh").is_file():
            raise EvidenceError(f"variant {vid} has no train.sh", str(folder))
        out.append(Variant(vid, folder, config_hash(folder)))
    return out


def config_hash(folder: Path) -> str | None:
    f = folder / "variant.json"
    try:
        return json.loads(f.read_text(encoding="utf-8")).get("hash")
    except (OSError, ValueError):
        return None


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
