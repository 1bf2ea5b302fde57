"""No wasted training: what a variant trains, by kohya's meaning, so that a variant kohya would train like its
baseline (inert changes) or like another variant (duplicates) is not trained twice; and no half-written study.

A variant is its baseline run with the changes applied (``apply``). Its ``effective_key`` is every parameter as
kohya acts on it: values normalised (1e-4 == 0.0001), an unset value by what kohya does with it, a value at kohya's
default dropped (the same as leaving it unset), parameters kohya ignores in that run dropped (kohya.semantics
[inert]), and no paths: where files go changes nothing, and a dataset TOML or an image folder counts by its
contents (evidence.dataset_toml.dataset_signature, folder_fingerprint).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.normalize import normalize
from lora_audit.kohya.semantics import _data as _semantics
from lora_audit.kohya.semantics import effective, inert
from lora_audit.model import Param, Run

_FOLDERS = ("train_data_dir", "image_dir", "reg_data_dir")


def run_dir(run: Run) -> Path | None:
    if not run.path:
        return None
    p = Path(run.path)
    return p if p.is_dir() else p.parent


def datasets_of(path: Any) -> Any:
    """The resolved datasets of a dataset TOML (as a run's facts hold them); a marker when it cannot be read."""
    from lora_audit.evidence.dataset_toml import parse_dataset_toml

    if not path:
        return None
    try:
        return [d.model_dump() for d in parse_dataset_toml(Path(str(path))).resolve()]
    except (EvidenceError, OSError, ValueError):
        return f"unreadable {path}"


def apply(run: Run, changes: list) -> Run:
    """The baseline run as the variant trains it: the changes (ablate.plan.ParamChange) applied to its parameters;
    a dataset_config change brings that dataset TOML's contents."""
    r = run.model_copy(deep=True)
    for c in changes:
        r.params[c.param] = Param(value=c.to, origin="explicit" if c.to_origin != "default" else "default")
        if c.param == "dataset_config":
            r.facts.datasets = datasets_of(c.to)
    return r


def dataset_file(run: Run) -> str | None:
    """The dataset TOML a run's ``dataset_config`` names, as the reader found it (the file its values came from)."""
    ds = run.params.get("dataset_config")
    if ds is None or ds.origin == "unknown" or not isinstance(ds.value, str):
        return None
    name = Path(ds.value).name
    for p in run.params.values():
        head = (p.source or "").rpartition(":")[0] or (p.source or "")
        if head and Path(head).name == name and Path(head).is_file():
            return str(Path(head).resolve())
    base = run_dir(run)
    for cand in ([base / ds.value] if base is not None else []) + [Path(ds.value)]:
        if cand.is_file():
            return str(cand.resolve())
    return None


def inert_reason(base: Run, changes: list) -> str | None:
    """Why kohya ignores every one of ``changes``: each changed parameter is inert in the baseline and in the
    variant (kohya.semantics [inert]), so the variant trains exactly like its baseline. None when one may act."""
    if not changes:
        return None
    after = apply(base, changes)
    whys = []
    for c in changes:
        why = inert(c.param, base) and inert(c.param, after)
        if not why:
            return None
        when = _semantics()["inert"][c.param]["when"]
        whys.append(f"{c.param} ({when} holds in {base.name} and in the variant: {why})")
    return "; ".join(whys)


def effective_key(run: Run, drop_inert: bool, ignore: set[str] | frozenset[str] = frozenset()) -> str:
    """What kohya trains, as a string: two variants with the same key train the same thing. ``ignore``: names that
    say where files go (never part of what is trained)."""
    from lora_audit.evidence.dataset_toml import dataset_signature, folder_fingerprint

    cat = catalog()
    items: list[tuple[str, str | None]] = []
    for name, p in sorted(run.params.items()):
        if name in ignore or name in _FOLDERS or name == "dataset_config":
            continue
        if p.origin == "unknown":
            items.append((name, "?"))
            continue
        if drop_inert and inert(name, run):
            continue
        value = normalize(name, effective(name, p.value)[0])
        arg = cat.get(name)
        if arg is not None and value == normalize(name, effective(name, arg.default)[0]):
            continue  # at kohya's default: the same as leaving it unset
        items.append((name, repr(value)))
    datasets = run.facts.datasets
    if isinstance(datasets, str):
        items.append(("dataset_config", datasets))
    elif datasets and "dataset_config" in run.params:
        items.append(("dataset_config", repr(dataset_signature(datasets, run_dir(run)))))
    else:
        for name in _FOLDERS:
            fp = run.params.get(name)
            if fp is None or fp.origin == "unknown":
                items.append((name, "?") if fp is not None else (name, None))
                continue
            folder = Path(str(fp.value)) if fp.value else None
            base = run_dir(run)
            if folder is not None and not folder.is_absolute() and base is not None:
                folder = base / folder
            files = folder_fingerprint(folder) if folder is not None else None
            items.append((name, repr(files) if files is not None else repr(fp.value)))
    return json.dumps(items)


@contextmanager
def all_or_nothing(folder: Path | str) -> Iterator[None]:
    """Around writing a study: when ``folder`` did not exist and writing fails, remove what was written, so an
    error never leaves a half-written study (an existing folder is left as the writer leaves it: its files are
    written only after every one of them rendered)."""
    folder = Path(folder)
    new = not os.path.lexists(folder)
    try:
        yield
    except BaseException:
        if new and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        raise
