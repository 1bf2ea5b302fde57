"""Reading an evidence file's bytes and text, safely: the one place every reader opens a file.

- Only regular files are read. A FIFO, a device, a socket, a symlink to ``/dev/zero`` or a symlink loop is refused
  from ``os.stat`` alone, before any open for reading (so nothing blocks and nothing streams forever); the open
  itself is non-blocking and re-checked with ``fstat`` in case the file was swapped in between.
- Text evidence has a size cap, ``TEXT_CAP`` (20 MB): no training script, config or note is that large, and every
  reader below it is linear. Past it: one line, nothing read.
- Decoding never fails: UTF-8 (with or without BOM), UTF-16/32 with a BOM, UTF-16 without a BOM (recognised by its
  NUL bytes), cut UTF-16 and lone surrogates (replaced by U+FFFD), and Windows "ANSI" (cp1252, then Latin-1) for
  the rest. No UnicodeDecodeError leaves this module.

Every failure is an ``EvidenceError`` naming the file, which the CLI prints as ``error: <file>: <what>``.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from typing import Any, TypeVar

from lora_audit.errors import EvidenceError

TEXT_CAP = 20 * 1024 * 1024  # bytes; documented in the README ("Limits")

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _stat(path: str | os.PathLike, label: str) -> os.stat_result:
    try:
        return os.stat(path)  # follows symlinks: a link to /dev/zero is judged by /dev/zero
    except FileNotFoundError:
        if os.path.islink(path):
            raise EvidenceError("a broken symlink (its target does not exist)", label) from None
        raise EvidenceError("no such file", label) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise EvidenceError("a symlink loop", label) from None
        raise EvidenceError(f"cannot read: {e.strerror or e}", label) from None
    except ValueError as e:  # embedded NUL in the path
        raise EvidenceError(f"cannot read: {e}", label) from None


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not evidence that can be read (``"a FIFO (named pipe)"``, ``"a symlink loop"``...), or None
    for a regular file. Never opens the file."""
    try:
        st = _stat(path, str(path))
    except EvidenceError as e:
        return e.message
    return _kind(st.st_mode)


def is_readable_evidence(path: str | os.PathLike) -> bool:
    """True for a regular file (or a symlink to one): what run discovery may hand to a reader. Never opens it."""
    return unreadable_reason(path) is None


def check_regular(path: str | os.PathLike, label: str | None = None) -> os.stat_result:
    """``os.stat`` of a regular file, or a one-line EvidenceError saying what it is instead."""
    label = label or str(path)
    st = _stat(path, label)
    kind = _kind(st.st_mode)
    if kind is not None:
        raise EvidenceError(f"{kind}, not a regular file: not read", label)
    return st


def open_regular(path: str | os.PathLike, label: str | None = None):
    """A binary file object of a regular file, opened non-blocking and checked again after the open. For readers
    that read parts of a big file (safetensors headers) and must not read it whole."""
    label = label or str(path)
    check_regular(path, label)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise EvidenceError("a symlink loop", label) from None
        raise EvidenceError(f"cannot read: {e.strerror or e}", label) from None
    try:
        kind = _kind(os.fstat(fd).st_mode)  # swapped for a FIFO between stat and open
        if kind is not None:
            raise EvidenceError(f"{kind}, not a regular file: not read", label)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, label: str | None = None, cap: int = TEXT_CAP) -> bytes:
    """The bytes of a regular file no larger than ``cap``; EvidenceError otherwise (nothing read past the cap)."""
    label = label or str(path)
    st = check_regular(path, label)
    if st.st_size > cap:
        raise EvidenceError(f"{_mb(st.st_size)} is over the {_mb(cap)} limit for text evidence: not read", label)
    with open_regular(path, label) as f:
        try:
            data = f.read(cap + 1)  # the size may have grown since the stat
        except OSError as e:
            raise EvidenceError(f"cannot read: {e.strerror or e}", label) from None
    if len(data) > cap:
        raise EvidenceError(f"over the {_mb(cap)} limit for text evidence: not read", label)
    return data


def read_text(path: str | os.PathLike, label: str | None = None, cap: int = TEXT_CAP) -> str:
    """The text of a regular evidence file, decoded whatever its encoding (see ``decode``). Line ends are kept."""
    return decode(read_bytes(path, label, cap))


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode(data: bytes) -> str:
    """Text of evidence bytes in whatever encoding a user saved them; never raises.

    A BOM decides (UTF-32 before UTF-16: ``FF FE 00 00`` is UTF-32's). Without one, UTF-16 is recognised by NUL
    bytes in every other position (ASCII text in UTF-16), then UTF-8 is tried, and a file that is not UTF-8 is read
    as Windows cp1252 ("ANSI", what Notepad and cmd.exe save), with Latin-1 for the five bytes cp1252 leaves
    undefined. Bytes that do not decode (a cut UTF-16 pair, a lone surrogate) become U+FFFD.
    """
    return decode_with_encoding(data)[0]


def decode_with_encoding(data: bytes) -> tuple[str, str]:
    """(text, the encoding it was read as: ``utf-8``, ``utf-8 with BOM``, ``utf-16-le``, ``cp1252``...)."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(enc, errors="replace"), ("utf-8 with BOM" if enc == "utf-8" else enc)
    utf16 = _utf16_without_bom(data)
    if utf16:
        return data.decode(utf16, errors="replace"), f"{utf16} without BOM"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    loose = data.decode("utf-8", errors="replace")
    bad = loose.count("\ufffd")
    good = sum(1 for c in loose if ord(c) > 127 and c != "\ufffd")
    if good and good >= bad:  # UTF-8 with a stray byte (a cut last character): keep the UTF-8 reading
        return loose, "utf-8 with invalid bytes"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data), "cp1252/latin-1"


def kohya_utf8_problem(path: str | os.PathLike, label: str | None = None) -> str | None:
    """What kohya's own reading of a TOML config does with this file's encoding, when it is not plain UTF-8, else
    None. ``train_util.read_config_from_file`` opens ``--config_file`` with ``encoding="utf-8"`` and
    ``config_util.load_user_config`` calls ``toml.load`` (UTF-8 too); toml 0.10.2 does not skip a BOM."""
    encoding = decode_with_encoding(read_bytes(path, label))[1]
    if encoding == "utf-8":
        return None
    if encoding == "utf-8 with BOM":
        return ("the file starts with a UTF-8 byte order mark, which kohya's toml reader does not skip: kohya stops "
                "with a parse error or reads the first key under another name (and ignores it); save it as UTF-8 "
                "without BOM")
    return (f"the file is {encoding}, not UTF-8: kohya opens it as UTF-8 and stops (UnicodeDecodeError); read "
            "here as decoded, save it as UTF-8")


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] == 0)
    odd = sum(1 for i in range(1, 2 * pairs, 2) if sample[i] == 0)
    # ASCII-range text in UTF-16: the high byte of (nearly) every code unit is NUL, the low byte almost never.
    if odd >= 0.4 * pairs and even <= 0.05 * pairs:
        return "utf-16-le"
    if even >= 0.4 * pairs and odd <= 0.05 * pairs:
        return "utf-16-be"
    return None



MAX_DEPTH = 64  # nesting of TOML tables/arrays or JSON objects/arrays; real evidence stays under 6


INT64 = 2 ** 63  # TOML integers are 64-bit ("an error must be thrown" beyond); no kohya value comes near


def structure_problem(obj: object, limit: int = MAX_DEPTH) -> str | None:
    """What makes parsed TOML/JSON unusable as evidence, checked without recursion: nesting deeper than ``limit``,
    an integer outside 64 bits (the TOML spec's range; Python would carry a 300-digit int into arithmetic that
    overflows). None when fine."""
    stack = [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return f"nested more than {limit} levels deep"
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
        elif isinstance(o, int) and not -INT64 <= o < INT64:
            return f"an integer outside 64 bits (about {int(o.bit_length() * 0.30103) + 1} digits)"
    return None


_SURROGATE = None
_T = TypeVar("_T")


def without_surrogates(obj: _T) -> _T:
    """Parsed JSON with every lone surrogate (``"\\ud800"`` is valid JSON) replaced by U+FFFD, keys included: such a
    string cannot be printed or written as UTF-8. Iterative; returns the same object when there is none."""
    import re

    global _SURROGATE
    _SURROGATE = _SURROGATE or re.compile("[\ud800-\udfff]")

    def fix(v: object) -> object:
        return _SURROGATE.sub("\ufffd", v) if isinstance(v, str) and _SURROGATE.search(v) else v

    root: list[Any] = [obj]
    # (a dict or a list, a key or an index in it): the containers of parsed JSON
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        v = container[key]
        if isinstance(v, dict):
            if any(isinstance(k, str) and _SURROGATE.search(k) for k in v):
                v = {fix(k): x for k, x in v.items()}
                container[key] = v
            stack.extend((v, k) for k in v)
        elif isinstance(v, list):
            stack.extend((v, i) for i in range(len(v)))
        else:
            container[key] = fix(v)
    return root[0]


def problem_line(text: str, problem: str) -> int | None:
    """The line of the first very long number in ``text`` when ``problem`` is about an integer."""
    if not problem.startswith("an integer"):
        return None
    import re

    m = re.search(r"[0-9][0-9_]{18,}", text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def parse_failure(e: BaseException) -> str | None:
    """The one-line reason for a parser failure that is not a syntax error of the format: nesting past Python's
    recursion limit, an integer longer than Python converts (``sys.int_info.str_digits_check_threshold``)."""
    if isinstance(e, RecursionError):
        return "nested too deeply to read"
    if isinstance(e, ValueError) and "integer string conversion" in str(e):
        return "an integer with thousands of digits"
    if isinstance(e, MemoryError):
        return "too large to read"
    return None
