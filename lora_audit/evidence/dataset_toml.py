"""``--dataset_config`` TOML: ``[general]``, ``[[datasets]]``, ``[[datasets.subsets]]``.

kohya semantics (``config_util.BlueprintGenerator.generate``): each subset parameter is searched in
subset → dataset → general → the argparse namespace (command line, then config file, then argparse defaults) →
the dataclass default; the first value that is not None wins. So a ``resolution`` in ``[general]`` beats
``--resolution`` on the command line. The user config is validated by voluptuous schemas that reject unknown keys
(``ConfigSanitizer``): kohya refuses to start on them. Schemas and defaults come from the generated catalog.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import kohya_utf8_problem
from lora_audit.evidence._toml_lines import KeyLines, read_toml
from lora_audit.model import Note, Setting

# config name -> argparse dest name (ConfigSanitizer.ARGPARSE_OPTNAME_TO_CONFIG_OPTNAME, reversed)
CONFIG_TO_ARG = {"batch_size": "train_batch_size"}
ARG_TO_CONFIG = {v: k for k, v in CONFIG_TO_ARG.items()}
# Run-level name for per-subset keys that have no argparse twin of the same meaning.
_RUN_NAME = {"num_repeats": "num_repeats", "image_dir": "image_dir"}


@cache
def _schema() -> tuple[dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """(subset keys, dataset-only keys, subset defaults, dataset defaults) for DreamBooth-style datasets."""
    raw = catalog_raw()["dataset_config"]
    s, d = raw["schemas"], raw["defaults"]
    subset = {**s["SUBSET_ASCENDABLE_SCHEMA"], **s["DB_SUBSET_DISTINCT_SCHEMA"], **s["DB_SUBSET_ASCENDABLE_SCHEMA"],
              **s["DO_SUBSET_ASCENDABLE_SCHEMA"], **s["FT_SUBSET_DISTINCT_SCHEMA"]}
    dataset = dict(s["DATASET_ASCENDABLE_SCHEMA"])
    subset_defaults = {**d.get("BaseSubsetParams", {}), **d.get("DreamBoothSubsetParams", {})}
    dataset_defaults = {**d.get("BaseDatasetParams", {}), **d.get("DreamBoothDatasetParams", {})}
    return subset, dataset, subset_defaults, dataset_defaults


def catalog_raw() -> dict:
    import json
    from importlib import resources

    return json.loads((resources.files("lora_audit.kohya") / "data" / "catalog.json").read_text(encoding="utf-8"))


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected.startswith("Any("):
        return any(_type_ok(t.strip(), value) for t in expected[4:-1].split(",") if t.strip() != "None")
    if expected == "str":
        return isinstance(value, str)
    if expected == "dict":
        return isinstance(value, dict)
    if expected.startswith("scalar_or_pair:"):
        t = expected.split(":")[1]
        return _type_ok(t, value) or (isinstance(value, list) and len(value) == 2
                                      and all(_type_ok(t, v) for v in value))
    if expected.startswith("pair:"):
        t = expected.split(":")[1]
        return isinstance(value, list) and len(value) == 2 and all(_type_ok(t, v) for v in value)
    return True


class Level(BaseModel):
    """The keys written at one level (general, one dataset, one subset) with their source."""

    values: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)


class DatasetEntry(BaseModel):
    level: Level
    subsets: list[Level] = Field(default_factory=list)


class ResolvedSubset(BaseModel):
    params: dict[str, Any]
    sources: dict[str, str]  # param -> where the value came from ("file:line", "argparse", "default")


class ResolvedDataset(BaseModel):
    params: dict[str, Any]
    sources: dict[str, str]
    subsets: list[ResolvedSubset]


class DatasetConfig(BaseModel):
    path: str
    general: Level
    datasets: list[DatasetEntry]
    warnings: list[Note] = Field(default_factory=list)

    def resolve(self, args: dict[str, Any] | None = None, arg_sources: dict[str, str] | None = None
                ) -> list[ResolvedDataset]:
        """Apply kohya's fallbacks. ``args`` maps argparse dest names to the run's values (None = unset)."""
        args = args or {}
        arg_sources = arg_sources or {}
        subset_keys, dataset_keys, subset_defaults, dataset_defaults = _schema()
        argcfg = {ARG_TO_CONFIG.get(k, k): v for k, v in args.items()}
        argsrc = {ARG_TO_CONFIG.get(k, k): s for k, s in arg_sources.items()}

        def search(key, levels, default):
            for lv in levels:
                v = lv.values.get(key)
                if v is not None:
                    return v, lv.sources[key]
            v = argcfg.get(key)
            if v is not None:
                return v, argsrc.get(key, "argparse")
            return default, "default"

        out = []
        for ds in self.datasets:
            dparams, dsrc = {}, {}
            for key in dataset_keys:
                dparams[key], dsrc[key] = search(key, [ds.level, self.general], dataset_defaults.get(key))
            subs = []
            for sub in ds.subsets:
                p, s = {}, {}
                for key in subset_keys:
                    p[key], s[key] = search(key, [sub, ds.level, self.general], subset_defaults.get(key))
                subs.append(ResolvedSubset(params=p, sources=s))
            out.append(ResolvedDataset(params=dparams, sources=dsrc, subsets=subs))
        return out


def parse_dataset_toml(path: Path, label: str | None = None) -> DatasetConfig:
    path = Path(path)
    label = label or str(path)
    data, text = read_toml(path)
    lines = KeyLines(text)
    subset_keys, dataset_keys, _, _ = _schema()
    warnings: list[Note] = []
    encoding = kohya_utf8_problem(path, label)
    if encoding:
        warnings.append(Note(message=encoding, source=f"{label}:1"))

    def level(values: dict, table: str, occ: int, allowed: set[str], where: str) -> Level:
        lns = lines.lines_for_table(table, occ)
        lv = Level()
        for k, v in values.items():
            if k == "subsets":
                continue
            src = f"{label}:{lns[k]}" if k in lns else f"{label}:{table or 'top'}.{k}"
            if k not in allowed:
                near = _nearest(k, allowed)
                hint = f" (did you mean {near}?)" if near else ""
                warnings.append(Note(message=f"unknown key {k!r} in {where}{hint}: kohya's dataset config "
                                             "validation rejects it and training does not start", source=src))
                continue
            expected = {**subset_keys, **dataset_keys}.get(k)
            if expected and not _type_ok(expected, v):
                warnings.append(Note(message=f"{k} should be {expected} but is {type(v).__name__} {v!r}: kohya's "
                                             "dataset config validation rejects it", source=src))
            lv.values[k] = v
            lv.sources[k] = src
        return lv

    unknown_top = [k for k in data if k not in ("general", "datasets")]
    for k in unknown_top:
        ln = lines.line(k) or lines.line(k, k)
        warnings.append(Note(message=f"unknown top-level key {k!r}: kohya's dataset config has [general] and "
                                     "[[datasets]] only", source=f"{label}:{ln}" if ln else label))
    general_raw = data.get("general", {})
    if not isinstance(general_raw, dict):
        raise EvidenceError("[general] must be a table", label, lines.line_in_any("general"))
    all_keys = set(subset_keys) | set(dataset_keys)
    general = level(general_raw, "general", 0, all_keys, "[general]")
    datasets_raw = data.get("datasets", [])
    if not isinstance(datasets_raw, list):
        raise EvidenceError("datasets must be an array of tables ([[datasets]])", label, lines.line_in_any("datasets"))
    datasets = []
    sub_occ = 0
    for i, ds in enumerate(datasets_raw):
        if not isinstance(ds, dict):
            raise EvidenceError(f"[[datasets]] #{i + 1} must be a table, not {type(ds).__name__}", label,
                                lines.line_in_any("datasets"))
        lv = level(ds, "datasets", i, all_keys, f"[[datasets]] #{i + 1}")
        subs = []
        subsets_raw = ds.get("subsets", [])
        if not isinstance(subsets_raw, list) or not all(isinstance(s, dict) for s in subsets_raw):
            raise EvidenceError(f"subsets of [[datasets]] #{i + 1} must be an array of tables "
                                "([[datasets.subsets]])", label, lines.line_in_any("subsets") or
                                lines.line_in_any("datasets"))
        for j, sub in enumerate(subsets_raw):
            subs.append(level(sub, "datasets.subsets", sub_occ, set(subset_keys), f"[[datasets.subsets]] #{j + 1}"))
            if "image_dir" not in sub and "metadata_file" not in sub:
                src = f"{label}:{lines.line('image_dir', 'datasets.subsets', sub_occ) or ''}".rstrip(":")
                warnings.append(Note(message="subset without image_dir: kohya requires it", source=src))
            sub_occ += 1
        datasets.append(DatasetEntry(level=lv, subsets=subs))
    return DatasetConfig(path=label, general=general, datasets=datasets, warnings=warnings)


def _nearest(key: str, allowed: set[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    return m[0] if m else None


def run_settings(cfg: DatasetConfig, resolved: list[ResolvedDataset]) -> list[Setting]:
    """Run-level Settings for every parameter the dataset TOML sets somewhere (under argparse dest names).

    One value when all datasets/subsets agree, otherwise the list of per-subset values with a note.
    """
    written: dict[str, str] = {}
    for lv in [cfg.general] + [d.level for d in cfg.datasets] + [s for d in cfg.datasets for s in d.subsets]:
        for k, src in lv.sources.items():
            written.setdefault(k, src)
    out = []
    for key, first_src in written.items():
        per: list[tuple[Any, str]] = []
        for ds in resolved:
            if key in ds.params:
                per.append((ds.params[key], ds.sources[key]))
            else:
                per.extend((s.params[key], s.sources[key]) for s in ds.subsets if key in s.params)
        if not per:
            continue
        values = [v for v, _ in per]
        name = CONFIG_TO_ARG.get(key, _RUN_NAME.get(key, key))
        if key == "resolution":
            values = [",".join(str(x) for x in v) if isinstance(v, list) else v for v in values]
        if all(v == values[0] for v in values):
            src = next((s for _, s in per if s not in ("argparse", "default")), first_src)
            out.append(Setting(name=name, value=values[0], source=src))
        else:
            out.append(Setting(name=name, value=values, source=first_src,
                               note="differs per subset (in dataset order): " + ", ".join(repr(v) for v in values)))
    return out


# --- comparing two dataset configs by their contents (a dataset TOML's path is not a change) ---

_CAPTION_SUFFIXES = {".txt", ".caption", ".json", ".toml"}
_MAX_FILES = 100_000  # a folder larger than this is compared by its path only
_MAX_CAPTION_BYTES = 1 << 20


def folder_fingerprint(folder: Path) -> tuple[tuple[str, int, str], ...] | None:
    """What kohya trains on in an image folder: every file's relative name and size, and the text of the small
    caption files by hash (images by size only: reading every image would cost more than the diff is worth).
    None when the folder is not readable here or too large to list."""
    import hashlib
    import os

    folder = Path(folder)
    if not folder.is_dir():
        return None
    out = []
    try:
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if n.startswith("."):
                    continue
                f = Path(root) / n
                size = f.stat().st_size
                digest = ""
                if f.suffix.lower() in _CAPTION_SUFFIXES and size <= _MAX_CAPTION_BYTES:
                    digest = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
                out.append((f.relative_to(folder).as_posix(), size, digest))
                if len(out) > _MAX_FILES:
                    return None
    except OSError:
        return None
    return tuple(out)


def _where(value: Any, base: Path | None) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    p = Path(value).expanduser()
    if p.is_absolute() or base is None:
        return p
    return base / p


def dataset_signature(datasets: list[dict], base: Path | None = None) -> list[dict]:
    """The contents of resolved datasets (``DatasetConfig.resolve`` dumps, as in a run's facts) without where
    things are: per dataset its parameters, per subset its parameters, and instead of ``image_dir`` the folder's
    file list (``folder_fingerprint``) when readable here, else its path. ``base`` resolves relative folders."""
    out = []
    for ds in datasets or []:
        subsets = []
        for sub in ds.get("subsets", []):
            params = dict(sub.get("params", {}))
            folder = params.pop("image_dir", None)
            where = _where(folder, base)
            files = folder_fingerprint(where) if where is not None else None
            params["image_files"] = list(files) if files is not None else f"(not readable here) {folder}"
            subsets.append(params)
        out.append({"params": dict(ds.get("params", {})), "subsets": subsets})
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _files_words(a: Any, b: Any) -> str:
    if not isinstance(a, list) or not isinstance(b, list):
        return f"image folder {_short(a)}→{_short(b)}"
    na, nb = {x[0]: x for x in a}, {x[0]: x for x in b}
    added = sorted(set(nb) - set(na))
    removed = sorted(set(na) - set(nb))
    changed = sorted(k for k in set(na) & set(nb) if na[k] != nb[k])
    parts = [f"{len(a)}→{len(b)} files"]
    for label, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            parts.append(f"{label} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else ""))
    return "image files: " + "; ".join(parts)


def dataset_differences(a: list[dict], b: list[dict]) -> list[str]:
    """What differs between two ``dataset_signature``s, in words (empty when they train the same)."""
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)}→{len(b)} datasets")
    for i, (da, db) in enumerate(zip(a, b), 1):
        for k in sorted(set(da["params"]) | set(db["params"])):
            va, vb = da["params"].get(k), db["params"].get(k)
            if va != vb:
                out.append(f"dataset {i}: {k} {_short(va)}→{_short(vb)}")
        if len(da["subsets"]) != len(db["subsets"]):
            out.append(f"dataset {i}: {len(da['subsets'])}→{len(db['subsets'])} subsets")
        for j, (sa, sb) in enumerate(zip(da["subsets"], db["subsets"]), 1):
            for k in sorted(set(sa) | set(sb)):
                va, vb = sa.get(k), sb.get(k)
                if va == vb:
                    continue
                what = _files_words(va, vb) if k == "image_files" else f"{k} {_short(va)}→{_short(vb)}"
                out.append(f"dataset {i} subset {j}: {what}")
    return out
