"""Caption reading and per-step caption processing with kohya's semantics (no torch).

``read_caption`` is ``DreamBoothDataset.load_dreambooth_dir.read_caption``; ``process_caption`` is
``BaseDataset.process_caption`` (prefix/suffix, dropout, keep_tokens / keep_tokens_separator, shuffle, tag
dropout, secondary separator), minus wildcards and token warm-up, which the builtin trainer refuses.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError


def read_caption(image: Path, caption_extension: str) -> str | None:
    """The first line of ``<image stem><caption_extension>``, or None when there is no caption file."""
    base = image.with_suffix("")
    candidates = [Path(str(base) + caption_extension)]
    tokens = base.name.split("_")
    if len(tokens) >= 5:  # kohya also looks for the caption of a face-cropped image's source
        candidates.append(base.with_name("_".join(tokens[:-4]) + caption_extension))
    for cap in candidates:
        if cap.is_file():
            try:
                lines = cap.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise EvidenceError("caption file is not UTF-8", str(cap)) from None
            if not lines:
                raise EvidenceError("caption file is empty (kohya refuses it)", str(cap))
            return lines[0].strip()
    return None


def _split(text: str, sep: str) -> list[str]:
    return [t.strip() for t in text.split(sep) if t.strip()]


def process_caption(caption: str, params: dict[str, Any], epoch: int, rng: random.Random | Any = random) -> str:
    """One training step's caption, as kohya makes it. ``epoch`` counts from 1; ``rng`` defaults to the global
    ``random`` module, which kohya uses (and re-seeds at each epoch)."""
    if params.get("caption_prefix"):
        caption = params["caption_prefix"] + " " + caption
    if params.get("caption_suffix"):
        caption = caption + " " + params["caption_suffix"]
    rate = params.get("caption_dropout_rate") or 0.0
    every = params.get("caption_dropout_every_n_epochs") or 0
    drop = rate > 0 and rng.random() < rate
    drop = drop or (every > 0 and epoch % every == 0)
    if drop:
        return ""
    caption = caption.split("\n")[0]
    sep = params.get("caption_separator") or ","
    tag_rate = params.get("caption_tag_dropout_rate") or 0.0
    if params.get("shuffle_caption") or tag_rate > 0:
        fixed: list[str] = []
        suffix: list[str] = []
        keep_sep = params.get("keep_tokens_separator")
        if keep_sep and keep_sep in caption:
            fixed_part, flex_part = caption.split(keep_sep, 1)
            if keep_sep in flex_part:
                flex_part, suffix_part = flex_part.split(keep_sep, 1)
                suffix = _split(suffix_part, sep)
            fixed = _split(fixed_part, sep)
            flex = _split(flex_part, sep)
        else:
            # kohya keeps empty tokens here (no filtering), unlike the separator branch
            tokens = [t.strip() for t in caption.strip().split(sep)]
            flex = tokens[:]
            keep = params.get("keep_tokens") or 0
            if keep > 0:
                fixed, flex = flex[:keep], tokens[keep:]
        if params.get("shuffle_caption"):
            rng.shuffle(flex)
        if tag_rate > 0:
            flex = [t for t in flex if rng.random() >= tag_rate]
        caption = ", ".join(fixed + flex + suffix)
    if params.get("secondary_separator"):
        caption = caption.replace(params["secondary_separator"], sep)
    return caption
