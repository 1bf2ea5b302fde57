"""A kohya command line → the builtin trainer's plan: kohya's ``args``, the datasets, and what is not honoured.

The reading is the evidence parser's (``lora_audit.evidence.invocation.parse_argv``): the same flattening of
``--config_file`` sections, the same precedence (command line > config file > defaults; dataset TOML subset >
dataset > general > command line), the same typing. This module only decides what the trainer can honour.
No torch here: the plan is checked before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence.dataset_toml import DatasetConfig, DatasetEntry, Level, ResolvedDataset
from lora_audit.evidence.invocation import parse_argv
from lora_audit.kohya.catalog import catalog
from lora_audit.model import Evidence
from lora_audit.train.support import DATASET_IMPLEMENTED, IMPLEMENTED, NO_EFFECT, VALUES


@dataclass
class Subset:
    image_dir: Path
    num_repeats: int
    class_tokens: str | None
    params: dict[str, Any]  # the resolved kohya subset parameters (caption handling)


@dataclass
class Dataset:
    resolution: tuple[int, int]  # (width, height)
    batch_size: int
    params: dict[str, Any]  # enable_bucket, bucket_*, ... as resolved
    subsets: list[Subset]


@dataclass
class Unsupported:
    name: str
    value: Any
    source: str


@dataclass
class TrainPlan:
    args: SimpleNamespace  # kohya's argparse namespace: defaults, then config file, then command line
    arch: str  # sd15 | sdxl
    script: str
    model: Path
    datasets: list[Dataset]
    user_config: bool  # True when --dataset_config was given (kohya's use_user_config: metadata differs)
    notes: list[str] = field(default_factory=list)  # said once before training
    ignored: list[Unsupported] = field(default_factory=list)  # unsupported, run anyway (--ignore-unsupported)


def plan_training(argv: list[str], base_dir: Path | None = None, ignore_unsupported: bool = False) -> TrainPlan:
    """Read ``argv`` (kohya flags) as kohya would, check it, and say how the builtin trainer will run it.

    Relative paths are taken from ``base_dir`` (default: the current folder), as kohya takes them from its cwd.
    Raises EvidenceError (one line) on what kohya would refuse, on missing model or data, and on settings the
    builtin trainer does not implement (unless ``ignore_unsupported``).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    ev = parse_argv(list(argv), "train_network.py", base)
    _refuse_what_kohya_refuses(ev)
    model = _model_path(ev, base)
    from lora_audit.loaders.pipelines import detect_arch

    arch = detect_arch(model)
    if arch not in ("sd15", "sdxl"):
        raise EvidenceError(f"the builtin trainer trains SD1.x and SDXL LoRAs only; this is a {arch} model (train it "
                            f"with kohya's {arch}_train_network.py)", str(model))
    script = "sdxl_train_network.py" if arch == "sdxl" else "train_network.py"
    if arch == "sdxl":  # read again with the SDXL script's argument set, as sdxl_train_network.py would
        ev = parse_argv(list(argv), script, base)
    _refuse_what_kohya_refuses(ev)

    args = _namespace(ev)
    args.pretrained_model_name_or_path = str(model)
    notes = [f"{w.source}: {w.message}" if w.source else w.message for w in ev.warnings]
    unsupported = _unsupported_args(ev)
    user_config = "dataset_config" in {s.name for s in ev.settings} and bool(ev.facts.get("datasets"))
    resolved = _resolved_datasets(ev, args, base, user_config)
    unsupported += _unsupported_dataset_keys(resolved, {u.name for u in unsupported})
    if unsupported and not ignore_unsupported:
        listing = ", ".join(f"{u.name}={u.value!r} ({u.source})" for u in unsupported)
        raise EvidenceError(f"the builtin trainer does not implement: {listing}; use --ignore-unsupported to train "
                            "without them")
    for u in unsupported:
        notes.append(f"{u.source}: {u.name}={u.value!r} is not implemented by the builtin trainer: ignored "
                     "(--ignore-unsupported)")
    notes += _no_effect_notes(ev, arch)
    datasets = [_dataset(r, base) for r in resolved]
    return TrainPlan(args=args, arch=arch, script=script, model=model, datasets=datasets, user_config=user_config,
                     notes=notes, ignored=unsupported)


def _model_path(ev: Evidence, base: Path) -> Path:
    setting = next((s for s in ev.settings if s.name == "pretrained_model_name_or_path"), None)
    if setting is None:
        raise EvidenceError("pretrained_model_name_or_path is not set: the builtin trainer needs a local diffusers "
                            "model folder")
    p = Path(str(setting.value)).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise EvidenceError(f"model {setting.value} not found (the builtin trainer reads local diffusers folders; it "
                            "never downloads)", setting.source)
    if p.is_file():
        raise EvidenceError(f"model {setting.value} is a single file: the builtin trainer reads diffusers folders "
                            "(model_index.json)", setting.source)
    return p


def _refuse_what_kohya_refuses(ev: Evidence) -> None:
    """Unknown flags stop kohya's argparse; mistyped config values crash it later. Say so now, in one line."""
    unknown = ev.facts.get("unknown_flags") or []
    if unknown:
        u = unknown[0]
        hint = f" (did you mean --{u['nearest']}?)" if u.get("nearest") else ""
        raise EvidenceError(f"unrecognized argument {u['flag']}{hint}", u["source"])
    foreign = ev.facts.get("foreign_flags") or []
    if foreign:  # a flag of another training script (--ae of flux_train_network.py): its argparse refuses it
        msg = next((w.message for w in ev.warnings if w.source == foreign[0]["source"]
                    and w.message.startswith(foreign[0]["flag"] + " ")), f"unrecognized argument {foreign[0]['flag']}")
        raise EvidenceError(msg, foreign[0]["source"])
    mistyped = ev.facts.get("mistyped") or []
    if mistyped:
        m = mistyped[0]
        raise EvidenceError(f"{m['name']} should be {m['expected']} but is {m['value']!r}: kohya does not convert "
                            "config values", m["source"])
    for w in ev.warnings:
        if "argparse stops here" in w.message or "argparse would refuse" in w.message:
            raise EvidenceError(w.message.split(": argparse")[0], w.source)
        if w.message.startswith(("config file", "dataset config")) and "not found" in w.message:
            raise EvidenceError(w.message.split(":")[0].replace(" next to the script", ""), w.source)


def _namespace(ev: Evidence) -> SimpleNamespace:
    cat = catalog()
    values = {name: arg.default for name, arg in cat.arguments.items()}
    for s in ev.settings:
        if s.name in cat:
            values[s.name] = s.value
    # train_util.prepare_dataset_args: the misspelt option wins when given
    if values.get("caption_extention") is not None:
        values["caption_extension"] = values["caption_extention"]
    # train_util.verify_training_args: caching to disk implies caching
    if values.get("cache_latents_to_disk"):
        values["cache_latents"] = True
    return SimpleNamespace(**values)


def _is_default(name: str, value: Any) -> bool:
    default = catalog().default(name)
    if value == default:
        return True
    # an empty list is argparse's "nargs='*' given without values", same effect as unset for these options
    return isinstance(value, list) and not value and default is None


def _unsupported_args(ev: Evidence) -> list[Unsupported]:
    out: list[Unsupported] = []
    for s in ev.settings:
        if s.name not in catalog() or _is_default(s.name, s.value):
            continue
        if s.name in NO_EFFECT:
            continue
        if s.name not in IMPLEMENTED:
            out.append(Unsupported(s.name, s.value, s.source))
            continue
        allowed = VALUES.get(s.name)
        value = s.value.lower() if isinstance(s.value, str) and s.name == "optimizer_type" else s.value
        if allowed is not None and value not in allowed:
            out.append(Unsupported(s.name, s.value, s.source))
    return out


def _unsupported_dataset_keys(resolved: list[ResolvedDataset], seen: set[str]) -> list[Unsupported]:
    from lora_audit.evidence.dataset_toml import _schema

    _, _, subset_defaults, dataset_defaults = _schema()
    out: list[Unsupported] = []
    levels = [(d.params, d.sources, dataset_defaults) for d in resolved]
    levels += [(s.params, s.sources, subset_defaults) for d in resolved for s in d.subsets]
    for params, sources, defaults in levels:
        for key, value in params.items():
            if key in DATASET_IMPLEMENTED or key in seen or value == defaults.get(key):
                continue
            if key == "validation_seed" or (key == "keep_tokens_separator" and not value):
                continue  # only read when validation_split is set; "" and None both mean none
            seen.add(key)
            out.append(Unsupported(key, value, sources.get(key, "dataset config")))
    return out


def _resolved_datasets(ev: Evidence, args: SimpleNamespace, base: Path, user_config: bool) -> list[ResolvedDataset]:
    if user_config:
        return [ResolvedDataset.model_validate(d) for d in ev.facts["datasets"]]
    # train_data_dir: config_util.generate_dreambooth_subsets_config_by_subdirs, one subset per "<repeats>_<name>"
    if args.train_data_dir is None:
        raise EvidenceError("no training data: set train_data_dir or dataset_config")
    src = next(s.source for s in ev.settings if s.name == "train_data_dir")
    root = Path(str(args.train_data_dir)).expanduser()
    root = root if root.is_absolute() else base / root
    if not root.is_dir():
        raise EvidenceError(f"train_data_dir {args.train_data_dir} is not a folder", src)
    subsets = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        repeats, _, name = sub.name.partition("_")
        if not repeats.isdigit() or int(repeats) < 1:
            continue  # kohya skips folders without a repeat count
        subsets.append(Level(values={"image_dir": str(sub), "num_repeats": int(repeats), "class_tokens": name},
                             sources={k: f"{src} ({sub.name})" for k in ("image_dir", "num_repeats", "class_tokens")}))
    if not subsets:
        raise EvidenceError(f"train_data_dir {args.train_data_dir} has no '<repeats>_<name>' image folders", src)
    cfg = DatasetConfig(path=str(root), general=Level(), datasets=[DatasetEntry(level=Level(), subsets=subsets)])
    explicit = {s.name: s for s in ev.settings}
    return cfg.resolve({k: s.value for k, s in explicit.items()}, {k: s.source for k, s in explicit.items()})


def _resolution(value: Any, source: str) -> tuple[int, int]:
    """kohya's ``--resolution "512,512"`` / ``512`` and the dataset TOML's ``512`` / ``[512, 512]`` → (w, h)."""
    try:
        if isinstance(value, str):
            parts = [int(x) for x in value.split(",")]
        elif isinstance(value, (list, tuple)):
            parts = [int(x) for x in value]
        else:
            parts = [int(value)]
    except (TypeError, ValueError):
        raise EvidenceError(f"resolution {value!r} is not 'W,H' or a number", source) from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise EvidenceError(f"resolution {value!r} is not 'W,H' or a number", source)
    return parts[0], parts[1]


def _dataset(r: ResolvedDataset, base: Path) -> Dataset:
    if r.params.get("resolution") is None:
        raise EvidenceError("resolution is not set (kohya requires it)", r.sources.get("resolution"))
    subsets = []
    for s in r.subsets:
        if s.params.get("image_dir") is None:
            raise EvidenceError("subset without image_dir", s.sources.get("image_dir"))
        d = Path(str(s.params["image_dir"])).expanduser()
        d = d if d.is_absolute() else base / d
        if not d.is_dir():
            raise EvidenceError(f"image folder {s.params['image_dir']} not found (relative paths are taken from the "
                                "current folder, as kohya does)", s.sources.get("image_dir"))
        subsets.append(Subset(image_dir=d, num_repeats=int(s.params["num_repeats"]),
                              class_tokens=s.params.get("class_tokens"), params=dict(s.params)))
    return Dataset(resolution=_resolution(r.params["resolution"], r.sources.get("resolution", "resolution")),
                   batch_size=int(r.params["batch_size"]), params=dict(r.params), subsets=subsets)


def _no_effect_notes(ev: Evidence, arch: str) -> list[str]:
    notes = []
    inert = sorted(s.name for s in ev.settings if s.name in NO_EFFECT and not _is_default(s.name, s.value))
    if inert:
        notes.append("no effect in the builtin trainer (" + "; ".join(f"{n}: {NO_EFFECT[n]}" for n in inert) + ")")
    by_name = {s.name: s for s in ev.settings}
    mp = by_name.get("mixed_precision")
    if mp is not None and mp.value not in (None, "no"):
        notes.append(f"mixed_precision={mp.value}: no-op on CPU, training runs in fp32")
    opt = by_name.get("optimizer_type")
    if (opt is not None and str(opt.value).lower() == "adamw8bit") or by_name.get("use_8bit_adam"):
        notes.append("AdamW8bit runs as torch AdamW on CPU (bitsandbytes needs a GPU); ss_optimizer says so")
    cs = by_name.get("clip_skip")
    if arch == "sdxl" and cs is not None and cs.value is not None:
        notes.append(f"{cs.source}: clip_skip is not used by kohya's SDXL trainer")
    lw = by_name.get("log_with")
    if (lw is not None and lw.value == "tensorboard") or by_name.get("logging_dir"):
        try:
            # only whether it imports matters; no stubs, and it may be absent (unused-ignore then)
            import tensorboard  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            notes.append("tensorboard is not installed: the loss is logged to loss.csv only")
    return notes
