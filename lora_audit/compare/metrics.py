"""Image metrics that need no downloads (numpy, PIL): distance to base, compressibility, palette, pixel-grid fit,
sharpness; and timing statistics."""

from __future__ import annotations

import io
import math
import statistics

import numpy as np
from PIL import Image

NO_EFFECT_LEVELS = 2.0  # every image within 2 of 255 levels (mean abs. difference) of base: nothing anyone sees
GRID_FIT_GOOD = 0.95
MAX_GRID = 32


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in 8-bit levels (0 identical, 255 opposite)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def jpeg_bytes(img: Image.Image, quality: int = 90) -> int:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return len(buf.getvalue())


def palette_size(a: np.ndarray) -> int:
    flat: np.ndarray = a.reshape(-1, a.shape[-1]).astype(np.uint32)
    return int(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]).size)


def grid_fit(a: np.ndarray, k: int) -> float:
    """1 − MSE(image, its k×k block means blown back up) / variance: 1.0 when the image is exactly a grid of
    k×k flat cells (pixel art upscaled k times), near 0 when blocks explain nothing. Phase 0 (cells from the
    top-left corner), which is where an upscaled sprite's cells sit."""
    h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    x: np.ndarray = a[:h, :w].astype(np.float64)
    var = x.var()
    if var == 0:
        return 1.0
    blocks = x.reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))
    up = np.repeat(np.repeat(blocks, k, axis=0), k, axis=1)
    return float(1 - ((x - up) ** 2).mean() / var)


def best_grid(a: np.ndarray) -> tuple[int, float]:
    """The pixel size of the image's grid: the largest k (2..32) whose fit is ≥ 0.95, with its fit; when no k
    fits that well (not pixel art, or cells off the corner's phase), the k that fits best, with its fit."""
    fits = {k: grid_fit(a, k) for k in range(2, min(MAX_GRID, min(a.shape[:2]) // 2) + 1)}
    if not fits:
        return 1, 1.0
    good = [k for k, f in fits.items() if f >= GRID_FIT_GOOD]
    k = max(good) if good else max(fits, key=lambda k: fits[k])
    return k, fits[k]


def sharpness(a: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (higher: more edges / detail)."""
    g = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var()) if lap.size else 0.0


def image_metrics(img: Image.Image, png_bytes: int) -> dict[str, float | int]:
    a = np.asarray(img.convert("RGB"))
    k, fit = best_grid(a)
    return {"png_bytes": png_bytes, "jpeg_bytes": jpeg_bytes(img), "palette": palette_size(a), "grid_k": k,
            "grid_fit": round(fit, 4), "grid_fit_2": round(grid_fit(a, 2), 4), "sharpness": round(sharpness(a), 3)}


def timing(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    total = sum(times)
    return {"mean_s": statistics.fmean(times), "std_s": statistics.pstdev(times) if len(times) > 1 else 0.0,
            "min_s": min(times), "max_s": max(times), "images_per_s": len(times) / total if total else math.inf,
            "images": len(times)}
