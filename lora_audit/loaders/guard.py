"""Never unpickle (stdlib only): weights must be ``.safetensors``.

Pickle (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) runs code when loaded, so a model or LoRA downloaded from anywhere
could run anything; such files are refused with how to convert them, and every diffusers/transformers load passes
``use_safetensors=True`` so a pickle is never a fallback either.
"""

from __future__ import annotations

from pathlib import Path

from lora_audit.errors import EvidenceError

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
CONVERT = ("convert it to .safetensors first (e.g. safetensors.torch.save_file(torch.load(f, weights_only=True), "
           "...), or for a diffusers folder pipe.save_pretrained(dir, safe_serialization=True), in an environment "
           "you trust): lora-audit never unpickles")


def check_weights_file(path: Path, what: str) -> None:
    """A single weights file (a LoRA, a single-file checkpoint) must be .safetensors."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise EvidenceError(f"{what} is a pickle ({path.suffix}): {CONVERT}", str(path))
    if path.suffix.lower() != ".safetensors":
        raise EvidenceError(f"{what} must be a .safetensors file (pickles are never opened)", str(path))


def check_model_folder(folder: Path, what: str = "model folder") -> None:
    """A diffusers or transformers folder: every part that has weights must have them as .safetensors (a part with
    only pickled weights would be refused by use_safetensors=True deep inside diffusers; this says which file and
    what to do, before anything is loaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    parts = [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for part in parts:
        files = [p for p in part.iterdir() if p.is_file()]
        pickled = sorted(p for p in files if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickled and not any(p.name.endswith(".safetensors") for p in files):
            raise EvidenceError(f"{what} has pickled weights only ({pickled[0].name}): {CONVERT}", str(pickled[0]))
