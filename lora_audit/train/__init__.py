"""The embedded trainer: tiny models (SD1.x/SDXL; FLUX.1/SD3 for comparisons), a toy dataset, and a
kohya-config-compatible LoRA trainer (SD1.x/SDXL).

Heavy imports (torch, diffusers, peft) happen on first use, so ``import lora_audit.train`` stays light.

- ``make_tiny_model(path, arch="sd15", seed=0) -> Path`` (arch: sd15, sdxl, flux, flux-schnell, sd3)
- ``make_toy_dataset(path, images=8, repeats=10, ...) -> ToyDataset``
- ``train(argv, base_dir=None, ignore_unsupported=False) -> TrainResult``
- ``plan_training(argv, base_dir=None, ignore_unsupported=False) -> TrainPlan`` (checks only; no torch)
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "make_tiny_model": "lora_audit.train.tiny_model",
    "make_toy_dataset": "lora_audit.train.toy_dataset",
    "ToyDataset": "lora_audit.train.toy_dataset",
    "train": "lora_audit.train.trainer",
    "TrainResult": "lora_audit.train.trainer",
    "plan_training": "lora_audit.train.options",
    "TrainPlan": "lora_audit.train.options",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lora_audit.train' has no attribute {name!r}")
