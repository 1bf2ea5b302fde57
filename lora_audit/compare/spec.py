"""What a comparison is made of, parsed from the command line (stdlib only: imported at CLI start)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from lora_audit.errors import EvidenceError

MAX_STRENGTH = 4.0  # beyond this a LoRA only saturates; a typo such as @10 is far likelier than intent


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    strengths: tuple[float, ...] = (1.0,)
    label: str = ""  # row label; the file stem when empty

    @property
    def name(self) -> str:
        return self.label or self.path.stem


@dataclass(frozen=True)
class Row:
    """One row of a grid: the base (lora None) or one LoRA at one strength."""
    label: str
    lora: LoraSpec | None = None
    strength: float = 0.0
    adapter: str = ""

    @property
    def slug(self) -> str:
        s = re.sub(r"_+", "_", "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.label))
        return s.strip("_") or "row"


@dataclass
class Settings:
    base: Path
    prompts: list[str]
    seeds: list[int]
    steps: int = 20
    cfg: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str | None = None
    negative: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch: int = 1
    loras: list[LoraSpec] = field(default_factory=list)


def parse_lora(text: str) -> LoraSpec:
    """``PATH`` or ``PATH@S1,S2``; the last ``@`` splits so paths with ``@`` still work when strengths follow."""
    path, sep, tail = text.rpartition("@")
    if not sep or not tail or not all(_is_float(t) for t in tail.split(",")):
        return LoraSpec(Path(text))
    strengths = tuple(float(t) for t in tail.split(","))
    for s in strengths:
        if not -MAX_STRENGTH <= s <= MAX_STRENGTH:
            raise EvidenceError(f"LoRA strength {s:g} is out of range [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]", text)
    return LoraSpec(Path(path), strengths)


def _is_float(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


def parse_seeds(text: str) -> list[int]:
    """``42,43,44`` or a range ``42-45`` (inclusive), or a mix."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, dash, b = part.partition("-")
        try:
            out += list(range(int(a), int(b) + 1)) if dash and a else [int(part)]
        except ValueError:
            raise EvidenceError(f"--seeds: {part!r} is not an integer or a range like 42-45") from None
    if not out:
        raise EvidenceError("--seeds: no seeds given")
    return out


def parse_size(text: str) -> tuple[int, int]:
    w, x, h = text.lower().partition("x")
    try:
        width, height = int(w), int(h or w)
    except ValueError:
        raise EvidenceError(f"--size: {text!r} is not WxH, e.g. 512x512") from None
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise EvidenceError(f"--size: {width}x{height} must be positive multiples of 8 (the VAE's factor)")
    return width, height


def read_prompts(path: Path) -> list[str]:
    """One prompt a line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise EvidenceError(f"cannot read prompts file: {e.strerror}", str(path)) from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise EvidenceError("the prompts file has no prompts (one a line; # starts a comment)", str(path))
    return prompts


def rows_for(loras: list[LoraSpec]) -> list[Row]:
    """The base first, then each LoRA at each strength, in the order given."""
    rows = [Row("base")]
    for i, spec in enumerate(loras):
        for s in spec.strengths:
            rows.append(Row(f"{spec.name} @{s:g}", spec, s, adapter=f"l{i}"))
    return rows


def file_sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read() if limit is None else f.read(limit))
    return h.hexdigest()
