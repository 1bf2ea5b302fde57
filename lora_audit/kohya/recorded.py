"""How kohya records an argument in a LoRA's metadata, so that a recorded value is not taken for a second value.

Two cases make a trained LoRA disagree, in text, with the command that trained it (sd-scripts train_network.py,
``NetworkTrainer.train``):
- kohya computes some keys instead of copying the argument: ``ss_num_epochs`` is ``num_train_epochs =
  ceil(max_train_steps / steps per epoch)`` and ``ss_max_train_steps`` is overwritten by ``--max_train_epochs``
  (metadata_keys: how="effective"). Such a value is what kohya derived, so it agrees with an argument the command
  leaves unset, and ``ss_max_train_steps`` agrees with any ``--max_train_steps`` when ``--max_train_epochs`` is set.
- ``ss_sd_model_name`` / ``ss_vae_name`` keep only ``os.path.basename`` of a model path that exists locally.
"""

from __future__ import annotations

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
    if key in _BASENAME_KEYS and isinstance(recorded, str) and "/" not in recorded.replace("\\", "/"):
        if _basename(value) == recorded:
            return f"{key} keeps only the name of a local model path (os.path.basename)"
    return None


def recorded_agrees(name: str, a: Any, b: Any, epochs_set: bool = False) -> bool:
    """Whether two settings (``.source``/``.value``), one of them LoRA metadata, say the same as kohya means it."""
    return any(agrees(name, x.source, x.value, y.value, epochs_set=epochs_set) for x, y in ((a, b), (b, a)))
