"""What compare checks before it loads anything (stdlib only): no pickled weights anywhere, and an --out folder that
holds nothing of the user's. The pickle checks themselves are ``lora_audit.loaders.guard``'s (train uses them too)."""

from __future__ import annotations

from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.loaders.guard import PICKLE_SUFFIXES, check_model_folder, check_weights_file

COMPARISON_MARKERS = ("comparison.json", "journal.jsonl")  # a finished, or an interrupted, comparison of this tool


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def check_out_folder(out: Path, inputs: list[Path | None]) -> None:
    """--out must be absent, empty, or a comparison of this tool (it has comparison.json, or the journal of an
    interrupted one), and not inside any input folder (the base model, its config, CLIP weights, references) nor
    one of the input files."""
    out = Path(out)
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        if p.is_dir() and _inside(out, p):
            raise EvidenceError(f"--out is inside the input folder {p}: write the comparison elsewhere", str(out))
        if p.exists() and not p.is_dir() and _inside(p, out) and out.exists():
            raise EvidenceError(f"--out holds the input {p}: write the comparison to a new or empty folder",
                                str(out))
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise EvidenceError("--out exists and is not a folder", str(out))
    try:
        entries = [e.name for e in out.iterdir()]
    except OSError as e:
        raise EvidenceError(f"--out cannot be read: {e.strerror or e}", str(out)) from None
    if entries and not any((out / m).is_file() for m in COMPARISON_MARKERS):
        raise EvidenceError(f"--out is a folder with other files ({', '.join(sorted(entries)[:3])}"
                            f"{', ...' if len(entries) > 3 else ''}) and no comparison.json: give a new or empty "
                            "folder, or a previous comparison's", str(out))


def check_inputs(settings, out: Path, model_config: Path | None = None, clip_model: Path | None = None,
                 reference: Path | None = None, prompts_file: Path | None = None) -> None:
    """Every check of this module over one comparison's settings (a compare.spec.Settings)."""
    base = Path(settings.base)
    if base.is_dir():
        check_model_folder(base, "base model folder")
    elif base.exists() or base.suffix.lower() in PICKLE_SUFFIXES:  # a path that is not there: load_base says so
        check_weights_file(base, "base model")
    for spec in settings.loras:
        check_weights_file(Path(spec.path), "LoRA")
    if clip_model is not None:
        check_model_folder(clip_model, "CLIP model folder")
    check_out_folder(out, [base, model_config, clip_model, reference, prompts_file,
                           *(Path(spec.path) for spec in settings.loras)])
