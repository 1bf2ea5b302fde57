"""What a comparison folder (written by ``lora-audit compare``) holds, as the vote page and the statistics need it
(stdlib and pydantic only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lora_audit.compare.schema import Comparison
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


MAX_BYTES = 100 * 1024 * 1024  # a comparison of 100,000 images is about 50 MB
MAX_DEPTH = 32  # compare writes 5 levels; deeper is not ours and would only strain the exports
def _depth(data: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((v, d + 1) for v in (x.values() if isinstance(x, dict) else x))
    return deepest


def _where(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "top level"


def read_comparison_json(f: Path) -> dict[str, Any]:
    """comparison.json, checked: EvidenceError (one line, the file named) when it is unreadable, too big, not
    JSON, nested too deep, or not in compare's shape."""
    try:
        if not f.is_file():
            raise EvidenceError("not a regular file", str(f))
        if f.stat().st_size > MAX_BYTES:
            raise EvidenceError(f"over {MAX_BYTES // 2**20} MB: not a comparison.json of lora-audit compare", str(f))
        data = json.loads(f.read_bytes().decode("utf-8"))
    except OSError as e:
        raise EvidenceError(f"cannot read: {e.strerror or e}", str(f)) from None
    except RecursionError:
        raise EvidenceError("invalid JSON: nested too deeply", str(f)) from None
    except json.JSONDecodeError as e:
        raise EvidenceError(f"invalid JSON: {e.msg}", str(f), e.lineno) from None
    except ValueError as e:  # not UTF-8; an integer of thousands of digits
        what = "an integer with thousands of digits" if "digits" in str(e) else str(e).splitlines()[0][:200]
        raise EvidenceError(f"invalid JSON: {what}", str(f)) from None
    if _depth(data) > MAX_DEPTH:
        raise EvidenceError(f"nested deeper than {MAX_DEPTH} levels: not a comparison.json of lora-audit compare",
                            str(f))
    try:
        checked = Comparison.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise EvidenceError(f"not in lora-audit compare's shape: {_where(err['loc'])}: {err['msg']}{more}",
                            str(f)) from None
    return checked.model_dump(exclude_unset=True)


def load_folder(folder: Path | str) -> ComparisonFolder:
    """Read ``comparison.json`` of a comparison folder; EvidenceError (one line, file named) when it is missing or
    not the shape ``lora-audit compare`` writes."""
    folder = Path(folder)
    f = folder / "comparison.json"
    if not folder.is_dir():
        raise EvidenceError("not a folder (give the --out folder of lora-audit compare)", str(folder))
    if not f.exists():
        raise EvidenceError("no comparison.json here: run lora-audit compare --out on this folder first", str(folder))
    data = read_comparison_json(f)
    items: list[Item] = []
    for c in data["comparisons"]:
        shots = tuple(Shot(m["name"], m["image"], m.get("lora") or None, m.get("lora_strength"),
                           m.get("metrics") or {}, m.get("distance_to_base")) for m in c["models"])
        names = [s.model for s in shots]
        if len(set(names)) != len(names):
            raise EvidenceError(f"comparison {c['comparison_id']}: a model is listed twice", str(f))
        items.append(Item(str(c["comparison_id"]), c["prompt"], c["seed"], shots))
    return ComparisonFolder(folder, data, items)
