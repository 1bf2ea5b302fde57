"""A toy kohya dataset of pixel-art sprites: ``img/<repeats>_<name>/NNNN.png`` + ``NNNN.txt`` and a dataset TOML.

Captions begin with the trigger tokens (``pixel art, 24x24``), which is what ``keep_tokens = 2`` keeps in place
when ``shuffle_caption`` is on. The dataset TOML names the image folder by absolute path, so it works from any
folder (kohya takes relative paths from its current folder). With a model, a ``config.toml`` for
``lora-audit train`` is written too.

The images are drawn at ``size`` pixels, which need not be the training resolution, so the dataset TOML turns
aspect-ratio bucketing on: without it kohya refuses larger images ("image too large, but cropping and bucketing are
disabled") and smaller ones ("image size is small") (train_util.BaseDataset.__getitem__). The bucket limits are
kept consistent with the resolution, as kohya asserts (BaseDataset.adjust_min_max_bucket_reso_by_steps:
min_bucket_reso <= resolution <= max_bucket_reso, in steps of bucket_reso_steps); larger images are only scaled
down (bucket_no_upscale), smaller ones scaled up to the one square bucket.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from lora_audit.errors import EvidenceError

TRIGGER = "pixel art, 24x24"
BUCKET_STEPS = 64  # kohya's default bucket_reso_steps; SD's latents need sides divisible by 64 at this scale


@dataclass(frozen=True)
class ToyDataset:
    root: Path
    train_data_dir: Path  # the folder holding "<repeats>_<name>/" (kohya's --train_data_dir)
    image_dir: Path
    dataset_toml: Path
    config_toml: Path | None
    images: int
    repeats: int


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def make_toy_dataset(path: Path | str, *, images: int = 8, repeats: int = 10, name: str = "pixelpunk",
                     size: int = 96, resolution: int | None = 64, batch_size: int | None = 4, seed: int = 0,
                     model: Path | str | None = None) -> ToyDataset:
    """Write the dataset (and, given ``model``, a kohya ``config.toml`` that trains on it) under ``path``.

    ``resolution`` and ``batch_size`` go into the dataset TOML's ``[[datasets]]``, where kohya takes them before
    the training config's ``resolution`` / ``train_batch_size``; None leaves them to the training config.
    """
    from PIL import Image

    from lora_audit.train.sprites import GRID, draw_sprite

    if images < 1 or repeats < 1 or size < GRID:
        raise EvidenceError(f"images and repeats must be at least 1 and size at least {GRID}")
    if not name or "/" in name or "\\" in name:
        raise EvidenceError(f"invalid dataset name {name!r}")
    if resolution is not None and (resolution < BUCKET_STEPS or resolution % BUCKET_STEPS):
        raise EvidenceError(f"resolution must be a multiple of {BUCKET_STEPS} (kohya's bucket_reso_steps), got "
                            f"{resolution}")
    root = Path(path)
    image_dir = root / "img" / f"{repeats}_{name}"
    if image_dir.exists() and any(image_dir.iterdir()):
        raise EvidenceError("image folder exists and is not empty; choose a new path", str(image_dir))
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(images):
        sprite = draw_sprite(rng)
        sprite.image.resize((size, size), Image.Resampling.NEAREST).save(image_dir / f"{i:04d}.png", optimize=False)
        (image_dir / f"{i:04d}.txt").write_text(f"{TRIGGER}, {sprite.caption}\n", encoding="utf-8")

    dataset_toml = root / "dataset.toml"
    pinned = (f"resolution = {resolution}\n" if resolution else "") + (f"batch_size = {batch_size}\n"
                                                                       if batch_size else "")
    # bucketing, so that kohya takes images of any size (see the module docstring)
    pinned += ("enable_bucket = true\n"
               f"bucket_reso_steps = {BUCKET_STEPS}\n"
               f"min_bucket_reso = {BUCKET_STEPS}\n")
    if resolution:
        # the smallest limit kohya accepts: the resolution itself (rounded up to the steps)
        pinned += f"max_bucket_reso = {resolution}\n"
        pinned += f"bucket_no_upscale = {'true' if size >= resolution else 'false'}\n"
    dataset_toml.write_text(
        "# toy pixel-art dataset written by lora-audit make-toy-dataset\n"
        "[general]\n"
        'caption_extension = ".txt"\n'
        "shuffle_caption = true\n"
        "keep_tokens = 2\n"
        "\n"
        "[[datasets]]\n"
        f"{pinned}"
        "\n"
        "  [[datasets.subsets]]\n"
        f"  image_dir = {_toml_str(str(image_dir.resolve()))}\n"
        f"  num_repeats = {repeats}\n",
        encoding="utf-8")
    config_toml = None
    if model is not None:
        config_toml = root / "config.toml"
        lines = [
            "# kohya train_network.py config for the toy dataset; run: lora-audit train --config_file config.toml",
            f"pretrained_model_name_or_path = {_toml_str(str(Path(model).resolve()))}",
            f"dataset_config = {_toml_str(str(dataset_toml.resolve()))}",
            f"output_dir = {_toml_str(str((root / 'output').resolve()))}",
            f"output_name = {_toml_str(name)}",
            f"logging_dir = {_toml_str(str((root / 'logs').resolve()))}",
            'network_module = "networks.lora"', "network_dim = 8", "network_alpha = 4.0", "learning_rate = 1e-4",
            'optimizer_type = "AdamW"', 'lr_scheduler = "constant"', "max_train_epochs = 1",
            "save_every_n_epochs = 1", 'save_precision = "fp16"', "seed = 42",
        ]
        lines += [] if resolution else ['resolution = "64,64"']
        lines += [] if batch_size else ["train_batch_size = 4"]
        config_toml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ToyDataset(root=root, train_data_dir=root / "img", image_dir=image_dir, dataset_toml=dataset_toml,
                      config_toml=config_toml, images=images, repeats=repeats)
