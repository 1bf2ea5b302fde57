"""The ``ss_*`` / ``modelspec.*`` metadata kohya writes into a LoRA, read back as kohya parameters.

Where the keys come from (sd-scripts ``train_network.py``, ``NetworkTrainer.train``): the ``metadata = {...}`` dict,
then ``ss_datasets`` (with ``--dataset_config``) or the top-level dataset keys (without), ``ss_network_args``,
``ss_sd_model_name``/``ss_vae_name``, then ``{k: str(v)}`` of everything; at each save ``ss_steps``/``ss_epoch``, the
``modelspec.*`` keys of ``train_util.get_sai_model_spec`` and the ``sshs_*`` hashes (``LoRANetwork.save_weights``).
``--no_metadata`` keeps only ``train_util.SS_METADATA_MINIMUM_KEYS`` plus modelspec and the hashes.

Every value is ``str()`` of a Python value: "None", "True", "0.0001", "(512, 512)", or JSON (``ss_datasets``,
``ss_network_args``, ``ss_tag_frequency``). ``decode`` undoes that; ``typed`` then types it as kohya's argparse
would (``catalog.convert``), so a metadata value compares equal to the same value read from a script.
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lora_audit.kohya.catalog import ConversionError, catalog
from lora_audit.model import Note, Setting, SettingOrigin


@dataclass(frozen=True)
class Key:
    """How one metadata key maps to a kohya dest name.

    ``how``: "arg" (the value of that argument, typed by the catalog), "effective" (a value kohya computed from
    the arguments, so only inferred), "pair" (a tuple written as "(a, b)" that the command line writes "a,b").
    """

    dest: str
    how: str = "arg"
    note: str | None = None


_SAME_NAME = [
    "output_name", "learning_rate", "unet_lr", "gradient_checkpointing", "gradient_accumulation_steps",
    "lr_warmup_steps", "lr_scheduler", "network_module", "network_dim", "network_alpha", "network_dropout",
    "mixed_precision", "full_fp16", "v2", "clip_skip", "max_token_length", "cache_latents", "seed", "lowram",
    "noise_offset", "multires_noise_iterations", "multires_noise_discount", "adaptive_noise_scale",
    "zero_terminal_snr", "training_comment", "max_grad_norm", "caption_dropout_rate",
    "caption_dropout_every_n_epochs", "caption_tag_dropout_rate", "prior_loss_weight", "min_snr_gamma",
    "scale_weight_norms", "ip_noise_gamma", "noise_offset_random_strength", "ip_noise_gamma_random_strength",
    "loss_type", "huber_schedule", "huber_scale", "huber_c", "fp8_base", "fp8_base_unet", "validation_seed",
    "validation_split", "max_validation_steps", "validate_every_n_epochs", "validate_every_n_steps",
    "resize_interpolation", "color_aug", "flip_aug", "random_crop", "shuffle_caption", "enable_bucket",
    "bucket_no_upscale", "min_bucket_reso", "max_bucket_reso", "keep_tokens",
    # the DiT trainers' update_metadata (flux_train_network.py, sd3_/lumina_/hunyuan_image_/anima_train_network.py)
    "model_type", "apply_t5_attn_mask", "apply_lg_attn_mask", "weighting_scheme", "logit_mean", "logit_std",
    "mode_scale", "guidance_scale", "timestep_sampling", "sigmoid_scale", "model_prediction_type",
    "discrete_flow_shift",
]

METADATA_KEYS: dict[str, Key] = {f"ss_{n}": Key(n) for n in _SAME_NAME} | {
    # train_network.py's local text_encoder_lr: the first of --text_encoder_lr for networks.lora
    "ss_text_encoder_lr": Key("text_encoder_lr"),
    "ss_debiased_estimation": Key("debiased_estimation_loss"),
    "ss_batch_size_per_device": Key("train_batch_size"),
    "ss_resolution": Key("resolution", "pair"),
    "ss_face_crop_aug_range": Key("face_crop_aug_range", "pair"),
    "ss_sd_model_name": Key("pretrained_model_name_or_path",
                            note="kohya records only the file name when the model was a local file"),
    "ss_vae_name": Key("vae", note="kohya records only the file name when the VAE was a local file"),
    "ss_sd_scripts_commit_hash": Key("sd_scripts_commit"),
    # computed by kohya: num_train_epochs = ceil(max_train_steps / steps per epoch), and max_train_steps is
    # overwritten when --max_train_epochs is given (train_network.py, "epoch数を計算する")
    "ss_num_epochs": Key("max_train_epochs", "effective",
                         "ss_num_epochs is the number of epochs kohya ran: --max_train_epochs, or what max_train_steps "
                         "works out to"),
    "ss_max_train_steps": Key("max_train_steps", "effective",
                              "ss_max_train_steps is the step count kohya ran: --max_train_epochs overrides "
                              "--max_train_steps"),
}

# Keys kept as facts of the file (not kohya arguments).
FACT_KEYS: dict[str, str] = {
    "ss_session_id": "session_id", "ss_training_started_at": "training_started_at",
    "ss_training_finished_at": "training_finished_at", "ss_num_train_images": "num_train_images",
    "ss_num_validation_images": "num_validation_images", "ss_num_reg_images": "num_reg_images",
    "ss_num_batches_per_epoch": "num_batches_per_epoch", "ss_total_batch_size": "total_batch_size",
    "ss_steps": "steps", "ss_epoch": "epoch", "ss_base_model_version": "base_model_version",
    "ss_sd_model_hash": "sd_model_hash", "ss_new_sd_model_hash": "sd_model_sha256", "ss_vae_hash": "vae_hash",
    "ss_new_vae_hash": "vae_sha256", "ss_dataset_dirs": "dataset_dirs", "ss_reg_dataset_dirs": "reg_dataset_dirs",
    "ss_bucket_info": "bucket_info", "ss_tag_frequency": "tag_frequency", "sshs_model_hash": "model_hash",
    "sshs_legacy_hash": "legacy_hash",
}

# modelspec.* keys that are arguments (train_util.get_sai_model_spec / sai_model_spec.build_metadata).
_MODELSPEC_ARGS = {"modelspec.author": "metadata_author", "modelspec.description": "metadata_description",
                   "modelspec.license": "metadata_license", "modelspec.tags": "metadata_tags",
                   "modelspec.encoder_layer": "clip_skip"}

# ss_datasets: per-dataset and per-subset keys that are run parameters (train_network.py, dataset_metadata /
# subset_metadata); the rest are facts.
_DATASET_KEYS = {"batch_size_per_device": "train_batch_size", "resolution": "resolution",
                 "enable_bucket": "enable_bucket", "min_bucket_reso": "min_bucket_reso",
                 "max_bucket_reso": "max_bucket_reso"}
_SUBSET_KEYS = {k: k for k in ("num_repeats", "color_aug", "flip_aug", "random_crop", "shuffle_caption",
                               "keep_tokens", "keep_tokens_separator", "secondary_separator", "enable_wildcard",
                               "caption_prefix", "caption_suffix")}

# keys read by their own functions below
_READ_APART = {"ss_optimizer", "ss_network_args", "ss_datasets", "ss_dataset_dirs"}

# optimizer class names (train_util.get_optimizer) back to the --optimizer_type that picks them
_OPTIMIZER_TYPE = {"SGD8bit": "SGDNesterov8bit", "SGD": "SGDNesterov", "DAdaptAdamPreprint": "DAdaptAdamPreprint"}
_KOHYA_OPTIMIZERS = {n.lower(): n for n in (
    "AdamW", "AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion", "Lion8bit", "PagedLion8bit",
    "SGDNesterov", "SGDNesterov8bit", "DAdaptAdamPreprint", "DAdaptAdaGrad", "DAdaptAdam", "DAdaptAdan",
    "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD", "Prodigy", "Adafactor", "RAdamScheduleFree", "AdamWScheduleFree",
    "SGDScheduleFree", "AdEMAMix8bit", "PagedAdEMAMix8bit")}
# arguments get_optimizer adds itself when the user gave none
_ADDED_BY_KOHYA = {"SGDNesterov": {"momentum": "0.9"}, "SGDNesterov8bit": {"momentum": "0.9"},
                   "Adafactor": {"relative_step": "True"}}


# --- values ---------------------------------------------------------------------------------------------------------

def decode(raw: str) -> Any:
    """A metadata string back to the Python value kohya ``str()``-ed (None, bools, numbers, tuples, JSON)."""
    s = raw.strip()
    if s == "None":
        return None
    if s in ("True", "False"):
        return s == "True"
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return raw


def typed(dest: str, raw: str) -> Any:
    """The value of argument ``dest`` as kohya's argparse types it. Raises ConversionError when it does not fit."""
    value = decode(raw)
    arg = catalog().get(dest)
    if arg is None or value is None:
        return value
    if arg.is_flag:
        if not isinstance(value, bool):
            raise ConversionError(f"{dest} is a flag, the metadata says {raw!r}")
        return value
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [raw.strip()]
    if not items and not arg.is_list:
        raise ConversionError(f"{dest} wants a value, the metadata says {raw[:60]!r}")
    try:
        return catalog().convert(dest, items if arg.is_list else items[-1])
    except (ValueError, TypeError, OverflowError) as e:  # a 5000-digit number, inf where an int belongs
        if isinstance(e, ConversionError):
            # another training script may define it otherwise (Lumina's timestep_sampling has nextdit_shift)
            for script in arg.scripts:
                try:
                    return catalog().convert(dest, items if arg.is_list else items[-1], script)
                except (ValueError, TypeError, OverflowError):
                    continue
            raise
        raise ConversionError(f"{dest} cannot be {raw[:60]!r}") from None


def pair(raw: str) -> str | None:
    """"(512, 512)" -> "512,512" (how --resolution / --face_crop_aug_range are written on the command line)."""
    value = decode(raw)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() and not isinstance(v, bool) else str(v)


def parse_optimizer(value: str) -> tuple[str, list[str], str | None]:
    """"bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.01,betas=(0.9, 0.99))" ->
    ("AdamW8bit", ["weight_decay=0.01", "betas=0.9,0.99"], note).

    train_util.get_optimizer records ``module.Class`` and ``k=v`` joined by commas (values ``ast.literal_eval``-ed,
    so tuples print as "(0.9, 0.99)"; written back as "0.9,0.99", which kohya reads as the same tuple).
    """
    value = value.strip()
    name, _, rest = value.partition("(")
    args = _split_top(rest[:-1]) if rest.endswith(")") else []
    cls = name.rsplit(".", 1)[-1]
    module = name.rsplit(".", 1)[0] if "." in name else ""
    if cls == "SGD" and not module.startswith("torch.optim"):
        opt = name  # some other SGD: keep the full path as --optimizer_type would name it
    else:
        opt = _OPTIMIZER_TYPE.get(cls) or _KOHYA_OPTIMIZERS.get(cls.lower()) or name
    out: list[str] = []
    dropped = []
    for a in args:
        k, eq, v = a.partition("=")
        if not eq:
            out.append(a)
            continue
        if _ADDED_BY_KOHYA.get(opt, {}).get(k) == v:
            dropped.append(a)
            continue
        lit = decode(v)
        if isinstance(lit, tuple) and all(isinstance(x, (int, float)) for x in lit):
            v = ",".join(str(x) for x in lit)
        out.append(f"{k}={v}")
    note = f"{', '.join(dropped)} left out: kohya adds it itself for {opt}" if dropped else None
    return opt, out, note


def _split_top(s: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, "", ""
    for ch in s:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def network_args(raw: str, network_dropout: str | None = None) -> tuple[list[str], dict[str, str]]:
    """ss_network_args JSON -> (--network_args list "k=v", the dict).

    train_network.py adds ``dropout`` (= --network_dropout) to the kwargs itself before creating the network (the
    "workaround for LyCORIS"); it is left out of the list when it equals ss_network_dropout.
    """
    kwargs = decode(raw)
    if not isinstance(kwargs, dict):
        raise ConversionError(f"ss_network_args is not a JSON object: {raw[:60]!r}")
    out = []
    for k, v in kwargs.items():
        if k == "dropout" and (network_dropout is None or str(v) == network_dropout or v is None):
            continue
        out.append(f"{k}={v}")
    return out, {k: v for k, v in kwargs.items()}


# --- the whole metadata ----------------------------------------------------------------------------------------------

@dataclass
class MetadataReading:
    settings: list[Setting] = field(default_factory=list)
    warnings: list[Note] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def read_metadata(metadata: dict[str, str], label: str) -> MetadataReading:
    """Settings (source ``label:key``), warnings and facts from a LoRA's ``__metadata__``."""
    r = MetadataReading()
    md = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}

    def add(name: str, value: Any, key: str, origin: SettingOrigin = "explicit", note: str | None = None) -> None:
        r.settings.append(Setting(name=name, value=value, source=f"{label}:{key}", origin=origin, note=note))

    for key, raw in sorted(md.items()):
        if key in FACT_KEYS:
            r.facts[FACT_KEYS[key]] = raw if "hash" in key else decode(raw)  # hex digests stay strings
            continue
        spec = METADATA_KEYS.get(key)
        if spec is None and key.startswith("ss_") and key[3:] in catalog() and key not in _READ_APART:
            spec = Key(key[3:])  # a key of another sd-scripts version that is an argument's name
        if spec is None:
            continue
        try:
            value = _key_value(spec, raw)
        except ConversionError as e:
            shown = raw if len(raw) <= 80 else raw[:77] + "..."
            r.warnings.append(Note(message=f"{key}={shown!r} is not a value kohya takes: {e}",
                                   source=f"{label}:{key}"))
            continue
        add(spec.dest, value, key, "inferred" if spec.how == "effective" else "explicit", spec.note)

    if "ss_optimizer" in md and decode(md["ss_optimizer"]) is not None:
        opt, args, note = parse_optimizer(md["ss_optimizer"])
        add("optimizer_type", opt, "ss_optimizer")
        add("optimizer_args", args or None, "ss_optimizer", note=note)
    if "ss_network_args" in md and decode(md["ss_network_args"]) is not None:
        _read_network_args(md, label, r, add)
    version = md.get("ss_base_model_version", "")
    if version.startswith("sd_v"):  # model_util.get_model_version_str_for_sd1_sd2: "_v" suffix = v-parameterization
        add("v_parameterization", version.endswith("_v"), "ss_base_model_version")
    if "ss_datasets" in md:
        _read_datasets(md["ss_datasets"], label, r)
    elif "ss_dataset_dirs" in md:
        _read_dataset_dirs(md["ss_dataset_dirs"], label, r)
    _read_modelspec(md, label, r, add)
    return r


def _key_value(spec: Key, raw: str) -> Any:
    """One metadata value typed as kohya's argument; ConversionError when kohya could not take it."""
    value = pair(raw) if spec.how == "pair" else typed(spec.dest, raw)
    if any(isinstance(v, int) and not -2 ** 63 <= v < 2 ** 63 for v in (value if isinstance(value, list) else [value])):
        raise ConversionError("a number outside 64 bits")  # would overflow float() further on
    return value


def _read_network_args(md: dict[str, str], label: str, r: MetadataReading, add: Callable[..., None]) -> None:
    """ss_network_args: network_args, and conv_dim/conv_alpha from them."""
    try:
        nargs, kwargs = network_args(md["ss_network_args"], md.get("ss_network_dropout"))
    except ConversionError as e:
        r.warnings.append(Note(message=str(e), source=f"{label}:ss_network_args"))
        return
    add("network_args", nargs or None, "ss_network_args")
    for k, conv in (("conv_dim", int), ("conv_alpha", float)):
        if kwargs.get(k) is not None:
            # "", [], inf: not a dim kohya could use
            with contextlib.suppress(ValueError, TypeError, OverflowError):
                add(k, conv(kwargs[k]), "ss_network_args")


def _read_datasets(raw: str, label: str, r: MetadataReading) -> None:
    """ss_datasets (written with --dataset_config): one value when all datasets/subsets agree, else the list."""
    datasets = decode(raw)
    src = f"{label}:ss_datasets"
    if not isinstance(datasets, list) or not all(isinstance(d, dict) for d in datasets):
        r.warnings.append(Note(message="ss_datasets is not a JSON list of datasets", source=src))
        return
    r.facts["datasets"] = [{k: v for k, v in d.items() if k not in ("tag_frequency", "bucket_info")}
                           for d in datasets]
    per: dict[str, list[Any]] = {}
    for d in datasets:
        for k, name in _DATASET_KEYS.items():
            if k in d:
                v = d[k]
                per.setdefault(name, []).append(",".join(_num(x) for x in v) if isinstance(v, list) else v)
        subsets = d.get("subsets")
        for s in subsets if isinstance(subsets, list) else []:
            for k, name in _SUBSET_KEYS.items():
                if isinstance(s, dict) and k in s:
                    per.setdefault(name, []).append(s[k])
    for name, values in per.items():
        if all(v == values[0] for v in values):
            r.settings.append(Setting(name=name, value=values[0], source=src))
        else:
            r.settings.append(Setting(name=name, value=values, source=src,
                                      note="differs per subset (in dataset order): " +
                                           ", ".join(repr(v) for v in values)))


def _read_dataset_dirs(raw: str, label: str, r: MetadataReading) -> None:
    """Without --dataset_config, ss_dataset_dirs gives each image folder's repeats ("10_name" folders)."""
    dirs = decode(raw)
    if not isinstance(dirs, dict) or not dirs:
        return
    repeats = [d.get("n_repeats") for d in dirs.values() if isinstance(d, dict)]
    if not repeats:
        return
    src = f"{label}:ss_dataset_dirs"
    if all(v == repeats[0] for v in repeats):
        r.settings.append(Setting(name="num_repeats", value=repeats[0], source=src))
    else:
        r.settings.append(Setting(name="num_repeats", value=repeats, source=src,
                                  note="differs per folder: " + ", ".join(f"{k}: {v.get('n_repeats')}"
                                                                          for k, v in dirs.items()
                                                                          if isinstance(v, dict))))


def _read_modelspec(md: dict[str, str], label: str, r: MetadataReading, add) -> None:
    spec = {k: v for k, v in md.items() if k.startswith("modelspec.")}
    if not spec:
        return
    r.facts["modelspec"] = spec
    for key, dest in _MODELSPEC_ARGS.items():
        if key in spec and f"ss_{dest}" not in md:
            with contextlib.suppress(ConversionError):
                add(dest, typed(dest, spec[key]), key)
    pred = spec.get("modelspec.prediction_type")
    if pred in ("v", "epsilon") and "ss_base_model_version" not in md:
        add("v_parameterization", pred == "v", "modelspec.prediction_type")
    if "modelspec.timestep_range" in spec:
        lo, _, hi = spec["modelspec.timestep_range"].partition(",")
        note = "kohya writes 0 / 1000 for the end that was not set"
        for dest, v in (("min_timestep", lo), ("max_timestep", hi)):
            with contextlib.suppress(ValueError):
                add(dest, int(v), "modelspec.timestep_range", note=note)
    if "modelspec.title" in spec and "ss_output_name" not in md:
        add("output_name", spec["modelspec.title"], "modelspec.title", "inferred",
            "modelspec.title is --output_name unless --metadata_title was given")
    if "modelspec.resolution" in spec and "ss_resolution" not in md and "ss_datasets" not in md:
        w, _, h = spec["modelspec.resolution"].partition("x")
        add("resolution", f"{w},{h}", "modelspec.resolution", "inferred",
            "modelspec.resolution is --resolution, or the architecture's default when it was not given")

