"""A run folder's ``run.toml``: what the user knows about the run that no kohya file says.

```toml
name = "run-3"            # default: the folder's name
verdict = "bad"           # good | bad | unknown
notes = "faces melt"
arch = "sd15"             # sd15 | sd2 | sdxl: narrows what an artifact's size fits
[dataset]
images = 40
repeats = 10
[[artifacts]]             # files the run produced, present or only remembered by their size
name = "last.safetensors"
size = "72MB"             # or a byte count
```
Every value is checked here, so a wrong one is one line ``error: run.toml:LINE: what``: a list where text belongs,
``notes = 5``, ``arch = "sd99"``, ``size = "-5MB"`` or ``"1e400GB"``. Keys this file does not know are warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._toml_lines import KeyLines, read_toml
from lora_audit.model import Note

_TOP = {"name", "verdict", "notes", "arch", "dataset", "artifacts"}
_ARTIFACT: dict[str, type | tuple[type, ...]] = {"name": str, "size": (str, int), "path": str, "note": str}
_VERDICTS = ("good", "bad", "unknown")


def _type(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def read_run_toml(path: Path, label: str | None = None) -> tuple[dict[str, Any], list[Note]]:
    """(checked values, warnings) of a run.toml; EvidenceError with the line for a value that cannot be used."""
    label = label or str(path)
    data, text = read_toml(Path(path))
    lines = KeyLines(text)

    def fail(msg: str, key: str, table: str = "", occurrence: int | None = None) -> EvidenceError:
        line = lines.line(key, table, occurrence) or (lines.line_in_any(table) if table else None) or \
            lines.line_in_any(key)  # an inline table's key has no line of its own: the table's line
        return EvidenceError(msg, label, line)

    out: dict[str, Any] = {}
    warnings: list[Note] = []
    for key in data:
        if key not in _TOP:
            warnings.append(Note(message=f"unknown key {key!r} in run.toml (known: {', '.join(sorted(_TOP))})",
                                 source=f"{label}:{lines.line(key) or key}"))
    for key in ("name", "notes"):
        if key in data:
            v = data[key]
            if not isinstance(v, str):
                raise fail(f"{key} must be text (in quotes), not {_type(v)}", key)
            if key == "name" and (not v.strip() or "\x00" in v or "/" in v or "\\" in v):
                raise fail(f"name must be a plain run name, not {v[:60]!r}", key)
            out[key] = v
    verdict = data.get("verdict", "unknown")
    if not isinstance(verdict, str) or verdict not in _VERDICTS:
        shown = repr(verdict)[:60] if isinstance(verdict, (str, int, float)) else _type(verdict)
        raise fail(f"verdict must be good, bad or unknown, not {shown}", "verdict")
    out["verdict"] = verdict
    if "arch" in data:
        out["arch"] = _arch(data["arch"], fail)
    if "dataset" in data:
        out["dataset"] = _dataset(data["dataset"], fail)
    if "artifacts" in data:
        out["artifacts"] = _artifacts(data["artifacts"], fail)
    return out, warnings


def _arch(arch: Any, fail: Callable[..., EvidenceError]) -> str:
    from lora_audit.kohya.filesize import canonical_arch

    if not isinstance(arch, str):
        raise fail(f"arch must be text (sd15, sd2 or sdxl), not {_type(arch)}", "arch")
    try:
        return canonical_arch(arch)
    except ValueError:
        raise fail(f"unknown arch {arch[:40]!r}: write sd15, sd2 or sdxl", "arch") from None


def _dataset(ds: Any, fail: Callable[..., EvidenceError]) -> dict[str, int]:
    if not isinstance(ds, dict):
        raise fail(f"dataset must be a table ([dataset] with images, repeats), not {_type(ds)}", "dataset")
    checked: dict[str, int] = {}
    for key in ("images", "repeats"):
        if key in ds:
            v = ds[key]
            if type(v) is not int or not 0 <= v <= 10 ** 9:
                raise fail(f"dataset.{key} must be a whole number from 0 to 10^9, not "
                           f"{repr(v)[:40] if isinstance(v, (int, float, str)) and not _huge(v) else _type(v)}",
                           key, "dataset")
            checked[key] = v
    return checked


def _huge(v: Any) -> bool:
    return isinstance(v, int) and abs(v) > 10 ** 40


def _artifacts(arts: Any, fail) -> list[dict[str, Any]]:
    from lora_audit.kohya.filesize import size_windows

    if not isinstance(arts, list) or not all(isinstance(a, dict) for a in arts):
        raise fail("artifacts must be a list of tables ([[artifacts]] with name and size)", "artifacts")
    out = []
    for i, a in enumerate(arts):
        for key, want in _ARTIFACT.items():
            if key in a and (not isinstance(a[key], want) or isinstance(a[key], bool)):
                raise fail(f"artifacts #{i + 1}: {key} must be {'text or a byte count' if key == 'size' else 'text'},"
                           f" not {_type(a[key])}", key, "artifacts", i)
        name = a.get("name")
        if not name or not name.strip() or "\x00" in name:
            raise fail(f"artifacts #{i + 1} needs a name (the file's name)", "name" if "name" in a else "artifacts",
                       "artifacts", i)
        if len(name.encode("utf-8", "replace")) > 4096 or any(len(part.encode("utf-8", "replace")) > 255
                                                              for part in name.replace("\\", "/").split("/")):
            raise fail(f"artifacts #{i + 1}: {name[:40]!r}... is longer than a file name can be", "name",
                       "artifacts", i)
        if "size" in a:
            try:
                size_windows(a["size"])
            except ValueError as e:
                raise fail(f"artifacts #{i + 1} ({name[:60]}): {e}", "size", "artifacts", i) from None
        out.append({k: v for k, v in a.items() if k in _ARTIFACT})
    return out
