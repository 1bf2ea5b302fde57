"""The study folder's files, written and read back safely.

- ``comment_text``: any value that goes into a comment (shell or TOML) becomes one line: control characters
  (newline, CR, NUL, ESC...) and Unicode line/format characters are escaped, so nothing in a run name, a file name
  or a ``--sweep`` value can end a comment and become a command or a key.
- ``check_out``: ``--out`` must not exist, be empty, or already be a study of this tool, and must not lie inside a
  folder given as evidence.
- ``commit``: every file of a study is written through a temporary file and ``os.replace`` (never through a
  symlink the user put there), after checking that no file about to be replaced was edited since lora-audit wrote
  it: the sha256 of each written file is kept in ``study.toml`` (``[written]``), and study.toml itself ends with the
  sha256 of its own text. An edited file is listed and nothing is written, unless ``force``.
- ``read_text`` / ``parse_toml``: a study file read back capped and checked; any damage is one line
  (``lora_audit.study_model.load_study`` reads study.toml with them).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import read_bytes

if TYPE_CHECKING:
    from lora_audit.study_model import Study

STUDY_FILE = "study.toml"
RUNNER = "lora-audit-run.sh"  # the tool's runner: a name no user's script has (train.sh is the user's)
LEGACY_RUNNER = "train.sh"  # what studies written before the runner had its own name used
STUDY_CAP = 20 * 1024 * 1024  # bytes: study.toml / bisect.json are small; anything larger is not ours
_SELF_HASH = re.compile(r"^# lora-audit sha256 of the lines above: ([0-9a-f]{64})\s*$", re.M)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # a folder name: under 255 bytes


def comment_text(value: Any) -> str:
    """``value`` as text safe inside a one-line comment: every control or format character escaped (``\\n``,
    ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``...), so the comment cannot end early in bash, cmd, PowerShell or TOML."""
    out = []
    for ch in str(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch)[0] in ("C", "Z") and ch != " ":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                       else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def check_id(vid: str, where: str) -> str:
    """A variant id names a folder of the study: letters, digits, ``.``, ``_``, ``-``, never a path."""
    if not isinstance(vid, str) or not ID_PATTERN.fullmatch(vid) or vid in (".", ".."):
        raise EvidenceError(f"{comment_text(vid)!s} is not a variant id (letters, digits, '.', '_', '-')", where)
    return vid


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_out(out: Path, inputs: Sequence[str | Path]) -> None:
    """``--out``: a new folder, an empty one, or a study of this tool; never inside a folder given as evidence."""
    out = Path(out)
    label = str(out)
    try:
        where = out.resolve()
    except (OSError, RuntimeError) as e:
        raise EvidenceError(f"--out cannot be resolved: {e}", label) from None
    for p in inputs:
        try:
            src = Path(p).resolve()
        except (OSError, RuntimeError):
            continue
        if src.is_dir() and _inside(where, src):
            raise EvidenceError(f"--out is inside {p}, a folder given as evidence: choose a folder outside the runs",
                                label)
        if src.is_file() and where == src:
            raise EvidenceError("--out is an evidence file", label)
    if not os.path.lexists(out):
        return
    if out.is_symlink() and not out.exists():
        raise EvidenceError("--out is a broken symlink", label)
    if not out.is_dir():
        raise EvidenceError("--out exists and is not a folder", label)
    try:
        entries = list(os.scandir(out))
    except OSError as e:
        raise EvidenceError(f"--out cannot be read: {e.strerror or e}", label) from None
    if not entries:
        return
    study = out / STUDY_FILE
    if study.is_file() and not study.is_symlink():
        return
    raise EvidenceError("--out is a folder with other files in it and no study.toml (not a lora-audit study): "
                        "choose a new or empty folder", label)


# --- study.toml ----------------------------------------------------------------------------------------------------
def read_text(path: Path, what: str) -> str:
    """A study file's text (regular file, capped, UTF-8): one line on any damage."""
    data = read_bytes(path, str(path), STUDY_CAP)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EvidenceError(f"{what} is not UTF-8 text (byte {e.start})", str(path)) from None


def parse_toml(text: str, path: Path, what: str = "a TOML file") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EvidenceError(f"{what}, but not valid TOML: {e}", str(path)) from None
    except (ValueError, RecursionError, MemoryError) as e:  # 5,000-digit ints; 100,000 nested arrays
        raise EvidenceError(f"{what}, but not readable TOML: {type(e).__name__}: {str(e)[:200]}",
                            str(path)) from None


def read_study_meta(study: Path) -> Study:
    """study.toml of a study ``ablate`` wrote (it names its good run): ``lora_audit.study_model.load_study``."""
    from lora_audit.study_model import load_study

    return load_study(study, need_good=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(text: str) -> str:
    """study.toml text with its own sha256 as the last line (any older seal line removed first)."""
    body = _SELF_HASH.sub("", text).rstrip("\n") + "\n"
    return body + f"# lora-audit sha256 of the lines above: {_sha(body.encode('utf-8', 'surrogateescape'))}\n"


def _seal_intact(text: str) -> bool | None:
    """True when study.toml is as lora-audit sealed it, False when edited since, None when it has no seal."""
    m = _SELF_HASH.search(text)
    if m is None:
        return None
    body = _SELF_HASH.sub("", text).rstrip("\n") + "\n"
    return _sha(body.encode("utf-8", "surrogateescape")) == m.group(1)


# --- writing -------------------------------------------------------------------------------------------------------
def _edited(target: Path, new: bytes, recorded: str | None) -> bool:
    """Would writing ``new`` to ``target`` lose something lora-audit did not write?"""
    if target.is_symlink() or (os.path.lexists(target) and not target.is_file()):
        return True
    if not target.exists():
        return False
    try:
        current = read_bytes(target, str(target), STUDY_CAP * 4)
    except EvidenceError:
        return True
    if current == new:
        return False
    return recorded is None or _sha(current) != recorded


def commit(out: Path, files: dict[str, tuple[str, bool]], force: bool = False,
           study_doc: tomlkit.TOMLDocument | None = None) -> None:
    """Write ``files`` (relative path → (text, executable)) under ``out`` and record their hashes in study.toml.

    ``study_doc``: a new study.toml (ablate); None: the one on disk gets the new hashes (a bisect round). Nothing is
    written when a file to be replaced was edited since lora-audit wrote it (listed in the error), unless ``force``.
    """
    out = Path(out)
    study_path = out / STUDY_FILE
    old_text = read_text(study_path, "study.toml") if study_path.is_file() else None
    old = parse_toml(old_text, study_path, "study.toml") if old_text is not None else {}
    written = old.get("written")
    recorded: dict = written if isinstance(written, dict) else {}
    encoded = {rel: (_encode(rel, text, out), exe) for rel, (text, exe) in files.items()}
    edited = [rel for rel, (data, _) in encoded.items()
              if _edited(out / rel, data, recorded.get(rel) if isinstance(recorded.get(rel), str) else None)]
    if study_doc is not None and old_text is not None and _seal_intact(old_text) is False:
        edited.insert(0, STUDY_FILE)
    if edited and not force:
        shown = ", ".join(comment_text(e) for e in edited[:12]) + (f" and {len(edited) - 12} more"
                                                                    if len(edited) > 12 else "")
        raise EvidenceError(f"{len(edited)} file(s) of this study were edited since lora-audit wrote them (or are "
                            f"not lora-audit's): {shown}; nothing written. Keep your edits elsewhere, or pass --force "
                            "to regenerate", str(out))
    for rel in dict.fromkeys(str(Path(r).parent) for r in encoded):
        folder = out / rel
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            raise EvidenceError("exists and is not a folder of this study: nothing written there", str(folder))
    hashes = {k: v for k, v in recorded.items() if isinstance(v, str)}
    hashes.update({rel: _sha(data) for rel, (data, _) in encoded.items()})
    doc = study_doc if study_doc is not None else (tomlkit.parse(old_text) if old_text is not None else None)
    study_bytes = None
    if doc is not None:  # rendered before anything is written: an error here leaves the folder as it was
        table = tomlkit.table()
        for rel in sorted(hashes):
            table[rel] = hashes[rel]
        doc["written"] = table
        study_bytes = _encode(STUDY_FILE, seal(tomlkit.dumps(doc)), out)
    out.mkdir(parents=True, exist_ok=True)
    for rel, (data, exe) in encoded.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, data, 0o755 if exe else 0o644)
    if study_bytes is not None:
        _atomic_write(study_path, study_bytes, 0o644)


def _encode(rel: str, text: str, out: Path) -> bytes:
    """UTF-8 bytes of a generated file. A path from a non-UTF-8 file name or argument (Python's surrogateescape)
    goes back to its bytes in a script, where bash takes bytes as they are; a TOML or JSON file must be UTF-8."""
    try:
        data = text.encode("utf-8", "surrogateescape")
        if not rel.endswith(".sh"):
            data.decode("utf-8")
        return data
    except UnicodeError:
        raise EvidenceError(f"{comment_text(rel)} would hold a value that is not UTF-8 text (a file name or argument "
                            "in another encoding): rename it", str(out)) from None


def _atomic_write(target: Path, data: bytes, mode: int) -> None:
    tmp = target.with_name(f".{target.name}.lora-audit-tmp")
    if os.path.lexists(tmp):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)  # replaces a symlink itself, never writes through it
    except BaseException:
        if os.path.lexists(tmp):
            tmp.unlink()
        raise
