"""What a comparison folder (written by ``lora-audit compare``) holds, as the vote page and the statistics need it
(stdlib only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError


@dataclass(frozen=True)
class Shot:
    """One model's image of one (prompt, seed)."""
    model: str
    image: str  # path relative to the comparison folder
    lora: str | None
    lora_strength: float | None
    metrics: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    distance_to_base: float | None = None


@dataclass(frozen=True)
class Item:
    """One (prompt, seed): every model's image of it, in the comparison's order (base first)."""
    comparison_id: str
    prompt: str
    seed: int
    shots: tuple[Shot, ...]

    @property
    def models(self) -> list[str]:
        return [s.model for s in self.shots]

    def shot(self, model: str) -> Shot:
        for s in self.shots:
            if s.model == model:
                return s
        raise KeyError(model)


@dataclass
class ComparisonFolder:
    path: Path
    data: dict[str, Any]
    items: list[Item]

    @property
    def models(self) -> list[str]:
        """Every model name, in first-seen order (base first)."""
        seen: dict[str, None] = {}
        for it in self.items:
            for m in it.models:
                seen.setdefault(m)
        return list(seen)

    @property
    def base_model(self) -> str | None:
        """The row without a LoRA (the base model), when there is one."""
        for it in self.items:
            for s in it.shots:
                if not s.lora:
                    return s.model
        return None

    def item(self, comparison_id: str) -> Item:
        for it in self.items:
            if it.comparison_id == comparison_id:
                return it
        raise KeyError(comparison_id)


def load_folder(folder: Path | str) -> ComparisonFolder:
    """Read ``comparison.json`` of a comparison folder; EvidenceError (one line, file named) when it is missing or
    not the shape ``lora-audit compare`` writes."""
    folder = Path(folder)
    f = folder / "comparison.json"
    if not folder.is_dir():
        raise EvidenceError("not a folder (give the --out folder of lora-audit compare)", str(folder))
    if not f.is_file():
        raise EvidenceError("no comparison.json here: run lora-audit compare --out on this folder first", str(folder))
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise EvidenceError(f"invalid JSON: {e.msg}", str(f), getattr(e, "lineno", None)) from None
    items: list[Item] = []
    try:
        for c in data["comparisons"]:
            shots = tuple(Shot(m["name"], m["image"], m.get("lora") or None, m.get("lora_strength"),
                               m.get("metrics") or {}, m.get("distance_to_base")) for m in c["models"])
            items.append(Item(str(c["comparison_id"]), str(c["prompt"]), int(c["seed"]), shots))
    except (KeyError, TypeError, ValueError) as e:
        raise EvidenceError(f"comparison.json is not in lora-audit compare's shape ({type(e).__name__}: {e})",
                            str(f)) from None
    if not items:
        raise EvidenceError("comparison.json has no comparisons", str(f))
    return ComparisonFolder(folder, data, items)
