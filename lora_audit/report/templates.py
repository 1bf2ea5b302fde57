"""The one jinja2 environment: every template the tool renders (the audit and comparison reports in Markdown, the
vote page in HTML) comes from here, found in the package (``templates/``, shipped as ``lora_audit._templates``).

Its settings hold for every template: undefined names are errors, ``*.html.j2`` is autoescaped and Markdown is
not (Markdown escaping is the templates' filters'), and the value filters are the same everywhere (``value`` is
``lora_audit.format.format_value``). A renderer that needs its own whitespace rules or a ``finalize`` gets an
overlay of it (``environment(trim_blocks=True)``): same loader, filters and tests, only those settings differ.
Stdlib and jinja2 only, no model imports: the compare and votes layers render through it too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from lora_audit.format import format_value


def template_dir() -> Path:
    """Where the templates are: the package's ``lora_audit._templates`` (the wheel's copy; in an editable install
    pyproject's package-dir maps it to ``templates/``), else, for a checkout imported without installing it
    (``PYTHONPATH=.``), the source tree's top-level ``templates/``."""
    try:
        return Path(str(resources.files("lora_audit._templates")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "templates"


def template_loader() -> jinja2.BaseLoader:
    """The package's templates (``templates/`` in a checkout, ``lora_audit/_templates`` in the wheel)."""
    return jinja2.FileSystemLoader(str(template_dir()))


def md(text: Any) -> str:
    """Text in a Markdown table cell: ``|`` escaped, on one line."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def basename(path: str) -> str:
    """`runs/x/run_a/file.sh:12` -> `run_a/file.sh:12`: the run's folder and the file, not the whole path."""
    return "/".join(path.replace("\\", "/").split("/")[-2:]) if path else ""


def num(value: Any, digits: int = 3) -> str:
    """A metric: floats with ``digits`` decimals, None as an empty cell."""
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def shown(change: Any) -> bool:
    """A diff row worth a line in the report: a real change, a nominal one, or a value someone wrote."""
    return change.kind in ("changed", "added", "removed") or change.nominal or any(
        v.origin in ("explicit", "inferred") for v in change.values.values())


@cache
def _base() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=template_loader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False,
                                            default=False))
    env.filters.update(value=format_value, md=md, basename=basename, code=lambda s: f"`{s}`", num=num)
    env.tests["shown"] = shown
    return env


def environment(template_dir: str | Path | None = None, **settings: Any) -> jinja2.Environment:
    """The environment; with ``template_dir`` (a user's own template, ``audit --template``) that folder is searched
    first, then the package's templates; ``settings`` (``trim_blocks``, ``finalize``...) give an overlay."""
    env = _base()
    if template_dir is not None:
        settings["loader"] = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(template_dir)), template_loader()])
    return env.overlay(**settings) if settings else env
