"""Shared, built-once test inputs for tests/train: tiny models, a toy dataset, kohya configs.

Not a conftest (tests/ has its own, imported by name); models and data are made once per test process, in one
temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import textwrap
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="lora-audit-train-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@functools.cache
def tiny_model(arch: str = "sd15") -> Path:
    from lora_audit.train.tiny_model import make_tiny_model

    return make_tiny_model(_ROOT / f"model-{arch}", arch, seed=0)  # type: ignore[arg-type]


@functools.cache
def toy_dataset():
    """4 sprites × 2 repeats at 64 px, batch 2: 4 batches per epoch."""
    from lora_audit.train.toy_dataset import make_toy_dataset

    return make_toy_dataset(_ROOT / "toy", images=4, repeats=2, size=48, resolution=64, batch_size=2, seed=0)


def write_config(folder: Path, model: Path, dataset_toml: Path | None = None, extra: str = "") -> Path:
    """A kohya config.toml training ``model`` on ``dataset_toml`` into ``folder/out``, for a few steps."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f'pretrained_model_name_or_path = "{model}"']
    if dataset_toml is not None:
        lines.append(f'dataset_config = "{dataset_toml}"')
    lines += [f'output_dir = "{folder / "out"}"', 'output_name = "toy"', 'network_module = "networks.lora"',
              "network_dim = 4", "network_alpha = 2.0", "learning_rate = 1e-3", "max_train_steps = 2", "seed = 7"]
    cfg = folder / "config.toml"
    cfg.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return cfg
