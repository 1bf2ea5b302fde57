"""RunDiff: every parameter that differs between runs, in words a person would use, plus derived quantities.

The first run is the baseline; every other run is compared with it. Values are compared after normalisation
(``kohya.normalize``) and with kohya's meaning of unset values (``kohya.semantics``), so an explicit value that
equals what kohya does by default is a *nominal* change (the text changed, training did not).

Where files go (output_dir, output_name, logging_dir, sample prompts) and which file holds the settings
(config_file) are never effective changes: every value such a file sets is compared on its own. A dataset TOML
(dataset_config) and an image folder are compared by their contents (per dataset and subset; the folder's file
list when it is readable here), so a copy at another path is not a change.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from lora_audit.format import format_value
from lora_audit.kohya.catalog import CATEGORIES, category
from lora_audit.kohya.normalize import normalize, resolution_pair
from lora_audit.kohya.semantics import effective, inert
from lora_audit.model import Param, Run

Kind = Literal["changed", "added", "removed", "unknown", "same"]


class Cell(BaseModel):
    value: Any = None
    origin: str = "unknown"
    source: str | None = None


class Change(BaseModel):
    param: str
    category: str
    kind: Kind
    words: str
    values: dict[str, Cell]
    nominal: bool = False  # the text changed (explicit <-> default) but kohya does the same thing
    inert: dict[str, str] = Field(default_factory=dict)  # run -> why the parameter has no effect there
    note: str | None = None  # how a derived quantity was derived; structural detail of list changes


class RunDiff(BaseModel):
    runs: list[str]
    changes: list[Change]
    derived: list[Change]

    def effective_changes(self) -> list[Change]:
        """Changes kohya acts on, and unknowns that may hide one."""
        return [c for c in self.changes if c.kind != "same" and not c.nominal]

    def known_changes(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ("changed", "added", "removed") and not c.nominal]

    def nominal_changes(self) -> list[Change]:
        return [c for c in self.changes if c.nominal]

    def to_json(self) -> dict:
        return self.model_dump()


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def change_words(name: str, a: Any, b: Any) -> str:
    """``DOUBLED 32→64``, ``4× 16→64``, ``HALVED 4→2``, ``fp16→bf16``, ``ON (was off)``."""
    if name == "resolution":
        pa, pb = resolution_pair(a), resolution_pair(b)
        if pa and pb:
            ra = (pb[0] * pb[1]) / (pa[0] * pa[1])
            base = f"{pa[0]}×{pa[1]}→{pb[0]}×{pb[1]}"
            return f"{base} ({_ratio_word(ra).strip() or f'×{ra:.3g}'} pixels)" if ra != 1 else base
    if isinstance(a, bool) or isinstance(b, bool):
        return f"{'ON' if b else 'OFF'} (was {'on' if a else 'off'})"
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and na != 0:
        return f"{_ratio_word(nb / na)}{format_value(a)}→{format_value(b)}"
    return f"{format_value(a)}→{format_value(b)}"


def _ratio_word(r: float) -> str:
    if math.isclose(r, 2):
        return "DOUBLED "
    if math.isclose(r, 0.5):
        return "HALVED "
    for k in (3, 4, 8, 16):
        if math.isclose(r, k):
            return f"{k}× "
        if math.isclose(r, 1 / k):
            return f"÷{k} "
    return ""


def _cell(p: Param | None) -> Cell:
    if p is None:
        return Cell()
    return Cell(value=p.value, origin=p.origin, source=p.source)


def _compare(name: str, base: Param | None, other: Param | None, other_run: str) -> tuple[Kind, str, bool]:
    """(kind, words, nominal) for one parameter between the baseline and one other run."""
    bo = base.origin if base else "unknown"
    oo = other.origin if other else "unknown"
    if bo == "unknown" or oo == "unknown":
        if bo == "unknown" and oo == "unknown":
            return "same", "unknown in both", False
        return "unknown", f"unknown in {other_run}" if oo == "unknown" else "unknown in baseline", False
    assert base is not None and other is not None  # both known
    a, b = base.value, other.value
    ea, why_a = effective(name, a)
    eb, why_b = effective(name, b)
    if normalize(name, a) == normalize(name, b):
        if {bo, oo} == {"explicit", "default"}:
            return "same", (f"{format_value(a)}→unset: kohya's default is the same {format_value(b)}"
                            if bo == "explicit" else f"unset→{format_value(b)}: the same as kohya's default"), True
        return "same", "same", False
    if normalize(name, ea) == normalize(name, eb):
        # e.g. explicit 0.3 vs unset (kohya's default 0.3): nominal
        return "same", f"{format_value(a)}→{format_value(b)}: same in effect ({why_a or why_b})", True
    if bo == "explicit" and oo == "default":
        was = format_value(a)
        now = f"; kohya's default {format_value(eb)}" if eb is not None and b is None and eb != 0 else ""
        if b is not None and b is not False:
            now = f"; kohya's default {format_value(b)}"
        return "removed", f"REMOVED (was {was}{now})", False
    if bo == "default" and oo == "explicit":
        return "added", f"ADDED {format_value(b)} (default {format_value(ea)})", False
    words = change_words(name, ea, eb)
    if other.alternatives:
        words += " (inferred; or " + ", ".join(
            format_value(a.value) + (f": {a.note}" if a.note else "") for a in other.alternatives) + ")"
    return "changed", words, False


# where files go: a different value changes no training
_WHERE_OUTPUT = {"output_dir", "output_name", "logging_dir", "log_prefix", "log_tracker_name", "wandb_run_name",
                 "sample_prompts", "output_config", "config_file"}
_FOLDERS = {"train_data_dir", "reg_data_dir", "image_dir"}


def _run_dir(run: Run) -> Path | None:
    if not run.path:
        return None
    p = Path(run.path)
    return p if p.is_dir() else p.parent


def _where_change(name: str, base_run: Run, other_run: Run, base: Param | None, other: Param | None
                  ) -> tuple[Kind, str, bool] | None:
    """(kind, words, nominal) for a path, by what the path holds; None to compare the values as usual."""
    known = [p for p in (base, other) if p is not None and p.origin != "unknown"]
    if len(known) < 2:
        return ("same", "same", False) if name in _WHERE_OUTPUT else None
    assert base is not None and other is not None  # both known
    if name in _WHERE_OUTPUT:
        if normalize(name, base.value) == normalize(name, other.value):
            return "same", "same", False
        # sampling saves and restores the RNG state (train_util.sample_images), so prompts change no weights
        what = ("which file holds the settings" if name == "config_file" else
                "sample images during training" if name == "sample_prompts" else "where files go")
        return "same", f"{format_value(base.value)}→{format_value(other.value)}: {what}, not what is trained", True
    if base.value == other.value:
        return None
    if name == "dataset_config":
        from lora_audit.evidence.dataset_toml import dataset_differences, dataset_signature

        da, db = base_run.facts.datasets, other_run.facts.datasets
        if not da or not db or isinstance(da, str) or isinstance(db, str):  # a str: an unreadable-dataset marker
            return None
        words = dataset_differences(dataset_signature(da, _run_dir(base_run)),
                                    dataset_signature(db, _run_dir(other_run)))
        if not words:
            return "same", (f"{format_value(base.value)}→{format_value(other.value)}: same contents (only the path "
                            "differs)"), True
        return "changed", "contents differ: " + "; ".join(words), False
    if name in _FOLDERS:
        from lora_audit.evidence.dataset_toml import _files_words, _where, folder_fingerprint

        fa = folder_fingerprint(w) if (w := _where(base.value, _run_dir(base_run))) else None
        fb = folder_fingerprint(w) if (w := _where(other.value, _run_dir(other_run))) else None
        if fa is None or fb is None:
            return None
        if fa == fb:
            return "same", (f"{format_value(base.value)}→{format_value(other.value)}: the same files (only the path "
                            "differs)"), True
        return "changed", _files_words(list(fa), list(fb)), False
    return None


def _structural(name: str, a: Any, b: Any) -> str | None:
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        from deepdiff import DeepDiff  # imported here: it pulls numpy in when numpy is installed

        dd = DeepDiff(a if a is not None else [], b if b is not None else [], ignore_order=True)
        if dd:
            return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in dd.to_dict().items())
    return None


def _diff_params(runs: list[Run], params: dict[str, list[Param | None]], include_same: bool,
                 notes: dict[str, str | None] | None = None) -> list[Change]:
    names = [r.name for r in runs]
    out = []
    for name, ps in params.items():
        kinds: list[Kind] = []
        words: list[str] = []
        noms: list[bool] = []
        for r, p in zip(runs[1:], ps[1:]):
            k, w, nom = _where_change(name, runs[0], r, ps[0], p) or _compare(name, ps[0], p, r.name)
            kinds.append(k)
            noms.append(nom)
            if k != "same" or nom:
                words.append(w if len(runs) == 2 else f"{r.name}: {w}")
        ranked: tuple[Kind, ...] = ("changed", "removed", "added", "unknown")
        kind: Kind = next((k for k in ranked if k in kinds), "same")
        if kind == "unknown" and not any(p is not None and p.origin in ("explicit", "inferred") for p in ps):
            # unknown here, kohya's default there: nothing to compare; --all lists it, as "same" unknowns are
            if not include_same:
                continue
            kind, words = "same", []
        is_nominal = kind == "same" and any(noms)
        if kind == "same" and not is_nominal and not include_same:
            continue
        note = (notes or {}).get(name)
        if ps[0] is not None and len(ps) == 2 and ps[1] is not None and kind == "changed":
            note = note or _structural(name, ps[0].value, ps[1].value)
        inert_why = {r.name: why for r, p in zip(runs, ps) if p is not None and (why := inert(name, r))}
        out.append(Change(param=name, category=category(name), kind=kind,
                          words="; ".join(words) or "same", nominal=is_nominal,
                          values={n: _cell(p) for n, p in zip(names, ps)}, inert=inert_why, note=note))
    order = {c: i for i, c in enumerate(CATEGORIES)}
    out.sort(key=lambda c: (order.get(c.category, 99), c.param))
    return out


def _not_an_argument(run: Run, name: str) -> Param | None:
    """A kohya argument the run's training script does not have (--ae of FLUX in an SDXL run): unset, not unknown."""
    from lora_audit.kohya.catalog import catalog

    cat = catalog()
    if name in cat and run.script in cat.scripts and not cat.accepts(run.script, name):
        # a flag the script lacks is as off as an unset one; any other argument is unset
        arg = cat.get(name)
        return Param(value=False if arg is not None and arg.is_flag else None, origin="default",
                     note=f"not an argument of {run.script}")
    return None


def diff_runs(runs: list[Run], include_same: bool = False) -> RunDiff:
    """Diff the runs parameter by parameter; the first run is the baseline."""
    if len(runs) < 2:
        raise ValueError("a diff needs at least two runs")
    names: list[str] = []
    for r in runs:
        names.extend(n for n in r.params if n not in names)
    params = {n: [r.params.get(n) or _not_an_argument(r, n) for r in runs] for n in names}
    from lora_audit.derive import derive

    derived_runs = [derive(r) for r in runs]
    dnames = list(dict.fromkeys(n for d in derived_runs for n in d))
    dparams = {n: [d.get(n) for d in derived_runs] for n in dnames}
    notes = {n: next((d[n].note for d in derived_runs if n in d and d[n].note), None) for n in dnames}
    return RunDiff(runs=[r.name for r in runs], changes=_diff_params(runs, params, include_same),
                   derived=_diff_params(runs, dparams, include_same, notes))
