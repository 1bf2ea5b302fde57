"""How kohya records an argument in a LoRA's metadata, so that a recorded value is not taken for a second value.

Two cases make a trained LoRA disagree, in text, with the command that trained it (sd-scripts train_network.py,
``NetworkTrainer.train``):
- kohya computes some keys instead of copying the argument: ``ss_num_epochs`` is ``num_train_epochs =
  ceil(max_train_steps / steps per epoch)`` and ``ss_max_train_steps`` is overwritten by ``--max_train_epochs``
  (metadata_keys: how="effective"). Such a value is what kohya derived, so it agrees with an argument the command
  leaves unset, and ``ss_max_train_steps`` agrees with any ``--max_train_steps`` when ``--max_train_epochs`` is set.
- ``ss_sd_model_name`` / ``ss_vae_name`` keep only ``os.path.basename`` of a model path that exists locally.
And a path written relative in one file and absolute in another (a study's config.toml and the user's edited script)
names one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_audit.kohya.metadata_keys import METADATA_KEYS

_BASENAME_KEYS = {"ss_sd_model_name", "ss_vae_name"}


def metadata_key(source: str | None) -> str | None:
    """``file.safetensors:ss_num_epochs`` → ``ss_num_epochs`` (None for a source that is not LoRA metadata)."""
    if not source:
        return None
    key = source.rpartition(":")[2]
    return key if key in METADATA_KEYS else None


def derived_by_kohya(source: str | None) -> bool:
    key = metadata_key(source)
    return key is not None and METADATA_KEYS[key].how == "effective"


def _basename(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def agrees(name: str, recorded_source: str | None, recorded: Any, value: Any, unset: bool = False,
           epochs_set: bool = False) -> str | None:
    """Why a value recorded in LoRA metadata agrees with ``value`` (the argument as the evidence gives it), or None.

    ``unset``: the command leaves the argument to kohya's default; ``epochs_set``: the run sets max_train_epochs."""
    key = metadata_key(recorded_source)
    if key is None:
        return None
    if derived_by_kohya(recorded_source):
        if unset:
            return f"{key} records what kohya derived ({recorded!r}); the command leaves {name} unset"
        if key == "ss_max_train_steps" and epochs_set:
            return f"{key} records the steps --max_train_epochs works out to: kohya overrides --max_train_steps"
        return None
    if key in _BASENAME_KEYS and isinstance(recorded, str) and "/" not in recorded.replace("\\", "/") \
            and _basename(value) == recorded:
        return f"{key} keeps only the name of a local model path (os.path.basename)"
    return None


# arguments that name a file or folder: kohya opens them from its current folder
_PATHS = {"output_dir", "logging_dir", "dataset_config", "config_file", "train_data_dir", "reg_data_dir",
          "sample_prompts", "pretrained_model_name_or_path", "vae", "network_weights", "output_config"}


def same_place(name: str, a: Any, b: Any) -> bool:
    """A relative path and an absolute one naming the same place: the relative one read from the folder of the
    file that says it (a study's runner and the user's script both run from the variant folder: ``cd``)."""
    if name not in _PATHS:
        return False
    for x, y in ((a, b), (b, a)):
        if not (isinstance(x.value, str) and isinstance(y.value, str) and x.value and y.value):
            continue
        rel, absolute = Path(x.value), Path(y.value)
        src = (x.source or "").rpartition(":")[0] or x.source
        if rel.is_absolute() or not absolute.is_absolute() or not src:
            continue
        try:
            if (Path(src).resolve().parent / rel).resolve() == absolute.resolve():
                return True
        except (OSError, RuntimeError):
            continue
    return False


def recorded_agrees(name: str, a: Any, b: Any, epochs_set: bool = False) -> bool:
    """Whether two settings (``.source``/``.value``) say the same as kohya means it: one of them LoRA metadata kohya
    derived or shortened, or a relative and an absolute path naming the same place."""
    return same_place(name, a, b) or any(agrees(name, x.source, x.value, y.value, epochs_set=epochs_set)
                                         for x, y in ((a, b), (b, a)))
