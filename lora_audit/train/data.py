"""The training images: found, captioned, bucketed, repeated and batched per epoch as kohya's DreamBooth dataset.

One ``Item`` per image; repeats put an image's key in its bucket ``num_repeats`` times
(``BaseDataset.make_buckets``); each epoch the global ``random`` is re-seeded with ``seed + epoch`` and the bucket
contents and batch order are shuffled (``BaseDataset.shuffle_buckets``), then the batches are visited in a random
order (the DataLoader's ``shuffle=True``, torch's generator). Captions are processed when a batch is made.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lora_audit.errors import EvidenceError
from lora_audit.train.buckets import Buckets, Size, crop_ltrb
from lora_audit.train.captions import process_caption, read_caption
from lora_audit.train.options import Dataset, Subset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Item:
    path: Path
    caption: str
    subset: Subset
    size: Size  # original (w, h)
    bucket: Size
    resized: Size
    pixels: torch.Tensor | None = None  # (3, h, w) in [-1, 1] after resize and crop, loaded once
    latents: torch.Tensor | None = None  # with cache_latents


@dataclass
class Batch:
    dataset: int
    items: list[Item]


def glob_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class DatasetImages:
    """One kohya dataset: its items, buckets (lists of item indices, repeats included) and batch size."""

    def __init__(self, ds: Dataset):
        self.spec = ds
        self.batch_size = ds.batch_size
        self.buckets_of = Buckets(ds.resolution, ds.params)
        self.items: list[Item] = []
        self.tag_frequency: dict[str, dict[str, int]] = {}
        for sub in ds.subsets:
            paths = glob_images(sub.image_dir)
            if not paths:
                raise EvidenceError("no images in the folder (kohya would train without this subset; the builtin "
                                    "trainer stops)", str(sub.image_dir))
            caption_ext = sub.params.get("caption_extension") or ".caption"
            freq = Counter(self.tag_frequency.get(sub.image_dir.name, {}))  # BaseDataset.set_tag_frequency
            for p in paths:
                cap = read_caption(p, caption_ext)
                if cap is None:  # kohya falls back to the class tokens, then to an empty caption
                    cap = sub.class_tokens or ""
                for tag in cap.split(","):
                    if tag.strip():
                        freq[tag.strip().lower()] += 1
                try:
                    with Image.open(p) as im:
                        size = im.size
                except OSError as e:
                    raise EvidenceError(f"cannot read image: {e}", str(p)) from None
                bucket, resized = self.buckets_of.select(*size)
                self.items.append(Item(path=p, caption=cap, subset=sub, size=size, bucket=bucket, resized=resized))
            self.tag_frequency[sub.image_dir.name] = dict(freq)
        self.buckets: dict[Size, list[int]] = {}
        for i, it in enumerate(self.items):
            self.buckets.setdefault(it.bucket, []).extend([i] * it.subset.num_repeats)
        self.buckets = dict(sorted(self.buckets.items()))  # BucketManager.sort: by resolution

    @property
    def num_train_images(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def num_batches(self) -> int:
        return sum(math.ceil(len(b) / self.batch_size) for b in self.buckets.values())

    def bucket_info(self) -> dict[str, Any]:
        if not self.buckets_of.enabled:
            return {}
        buckets = {i: {"resolution": list(r), "count": len(b)} for i, (r, b) in enumerate(self.buckets.items())}
        return {"buckets": buckets,
                "mean_img_ar_error": float(np.mean([abs(it.bucket[0] / it.bucket[1] - it.size[0] / it.size[1])
                                                    for it in self.items]))}

    def epoch_batches(self, seed: int, epoch: int) -> list[list[Item]]:
        random.seed(seed + epoch)  # BaseDataset.shuffle_buckets
        index = [(r, k) for r, b in self.buckets.items() for k in range(math.ceil(len(b) / self.batch_size))]
        random.shuffle(index)
        for b in self.buckets.values():
            random.shuffle(b)
        return [[self.items[i] for i in self.buckets[r][k * self.batch_size:(k + 1) * self.batch_size]]
                for r, k in index]


class TrainImages:
    """All datasets of a run (kohya's DatasetGroup)."""

    def __init__(self, datasets: list[Dataset]):
        self.datasets = [DatasetImages(d) for d in datasets]

    @property
    def num_train_images(self) -> int:
        return sum(d.num_train_images for d in self.datasets)

    def num_batches(self) -> int:
        return sum(d.num_batches() for d in self.datasets)

    def items(self) -> list[Item]:
        return [it for d in self.datasets for it in d.items]

    def epoch(self, seed: int, epoch: int) -> list[Batch]:
        batches = [Batch(i, b) for i, d in enumerate(self.datasets) for b in d.epoch_batches(seed, epoch)]
        order = torch.randperm(len(batches)).tolist()  # DataLoader(shuffle=True)
        return [batches[i] for i in order]


def pixels(item: Item) -> torch.Tensor:
    """The image resized and centre-cropped to its bucket (``trim_and_resize_if_required``), in [-1, 1]."""
    if item.pixels is None:
        with Image.open(item.path) as im:
            im = im.convert("RGB")
            if im.size != item.resized:
                # utils.resize_image: area (box) when shrinking, Lanczos when enlarging
                shrink = im.size[0] >= item.resized[0] and im.size[1] >= item.resized[1]
                im = im.resize(item.resized, Image.Resampling.BOX if shrink else Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
        w, h = item.bucket
        if a.shape[1] > w:
            p = (a.shape[1] - w) // 2
            a = a[:, p:p + w]
        if a.shape[0] > h:
            p = (a.shape[0] - h) // 2
            a = a[p:p + h]
        t = torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255.0
        item.pixels = t * 2.0 - 1.0
    return item.pixels


def captions(batch: Batch, epoch: int) -> list[str]:
    return [process_caption(it.caption, it.subset.params, epoch) for it in batch.items]


def size_conditions(batch: Batch) -> torch.Tensor:
    """SDXL's time ids per image: original (h, w), crop (top, left), target (h, w)."""
    rows = []
    for it in batch.items:
        left, top, _, _ = crop_ltrb(it.bucket, it.size)
        rows.append([it.size[1], it.size[0], top, left, it.bucket[1], it.bucket[0]])
    return torch.tensor(rows, dtype=torch.float32)
