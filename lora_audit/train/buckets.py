"""Where each image goes and at what size, as kohya's ``BucketManager`` decides (no torch).

Without ``enable_bucket`` every image is scaled to cover the resolution and centre-cropped to it. With it, images go
to the predefined bucket of nearest aspect ratio (``model_util.make_bucket_resolutions``), or with
``bucket_no_upscale`` to a bucket derived from the image's own size, only ever scaled down.
"""

from __future__ import annotations

import math
from typing import Any

from lora_audit.errors import EvidenceError

Size = tuple[int, int]  # (width, height)


def make_bucket_resolutions(max_reso: Size, min_size: int = 256, max_size: int = 1024, divisible: int = 64
                            ) -> list[Size]:
    max_area = max_reso[0] * max_reso[1]
    resos = {(int(math.sqrt(max_area) // divisible) * divisible,) * 2}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


class Buckets:
    """``select(w, h)`` → (bucket resolution, resized size) for one dataset's settings."""

    def __init__(self, resolution: Size, params: dict[str, Any]):
        self.enabled = bool(params.get("enable_bucket"))
        self.resolution = resolution
        self.max_area = resolution[0] * resolution[1]
        if not self.enabled:
            self.no_upscale, self.steps, self.predefined = False, None, [resolution]
            return
        steps = int(params.get("bucket_reso_steps") or 64)
        lo, hi = _adjust_min_max(resolution, int(params["min_bucket_reso"]), int(params["max_bucket_reso"]), steps)
        self.no_upscale, self.steps = bool(params.get("bucket_no_upscale")), steps
        self.predefined = [] if self.no_upscale else make_bucket_resolutions(resolution, lo, hi, steps)

    def select(self, width: int, height: int) -> tuple[Size, Size]:
        aspect = width / height
        if not self.no_upscale:
            reso = (width, height)
            if reso not in self.predefined:
                reso = min(self.predefined, key=lambda r: abs(r[0] / r[1] - aspect))  # first of the nearest
            scale = reso[1] / height if aspect > reso[0] / reso[1] else reso[0] / width
            return reso, (int(width * scale + 0.5), int(height * scale + 0.5))
        steps = self.steps
        assert steps is not None  # bucket_no_upscale is only read when enable_bucket is on (__init__)
        if width * height > self.max_area:
            rw = math.sqrt(self.max_area * aspect)
            rh = self.max_area / rw
            bw = self._round(rw)
            ar_w = bw / self._round(bw / aspect)
            bh = self._round(rh)
            ar_h = self._round(bh * aspect) / bh
            if abs(ar_w - aspect) < abs(ar_h - aspect):
                resized = (bw, int(bw / aspect + 0.5))
            else:
                resized = (int(bh * aspect + 0.5), bh)
        else:
            resized = (width, height)
        reso = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
        if min(reso) <= 0:
            raise EvidenceError(f"a {width}x{height} image gets an empty bucket with bucket_no_upscale and "
                                f"bucket_reso_steps {steps} (kohya fails the same way)")
        return reso, resized

    def _round(self, x: float) -> int:
        assert self.steps is not None  # only called on the bucket_no_upscale path, which implies enable_bucket
        n = int(x + 0.5)
        return n - n % self.steps


def _adjust_min_max(resolution: Size, lo: int, hi: int, steps: int) -> tuple[int, int]:
    # BaseDataset.adjust_min_max_bucket_reso_by_steps, assertions included
    if lo % steps:
        lo -= lo % steps
    if hi % steps:
        hi += steps - hi % steps
    if min(resolution) < lo:
        raise EvidenceError(f"min_bucket_reso {lo} must be equal or less than the resolution {resolution} (kohya "
                            "asserts it)")
    if max(resolution) > hi:
        raise EvidenceError(f"max_bucket_reso {hi} must be equal or greater than the resolution {resolution} (kohya "
                            "asserts it)")
    return lo, hi


def crop_ltrb(bucket: Size, image: Size) -> tuple[float, float, float, float]:
    """``BucketManager.get_crop_ltrb``: the crop SDXL is conditioned on (Stability AI's preprocessing)."""
    bucket_ar, image_ar = bucket[0] / bucket[1], image[0] / image[1]
    rw: float
    rh: float
    if bucket_ar > image_ar:
        rw, rh = bucket[1] * image_ar, bucket[1]
    else:
        rw, rh = bucket[0], bucket[0] / image_ar
    left, top = (bucket[0] - rw) // 2, (bucket[1] - rh) // 2
    return left, top, left + rw, top + rh
