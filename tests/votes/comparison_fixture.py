"""A comparison folder in the shape ``lora-audit compare`` writes (comparison.json + one small PNG per image), made
with the standard library only, so the vote and stats tests need neither torch nor PIL."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any


def png_bytes(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_comparison(folder: Path, models: list[str] | None = None, prompts: list[str] | None = None,
                    seeds: list[int] | None = None, metrics: dict[str, dict[str, float]] | None = None) -> Path:
    """models[0] is the base (no LoRA). ``metrics[model]`` is copied into every image of that model."""
    models = models or ["base", "lora_a", "lora_b"]
    prompts = prompts or ["a knight", "a punk"]
    seeds = seeds or [1, 2]
    metrics = metrics or {}
    folder.mkdir(parents=True, exist_ok=True)
    comparisons: list[dict[str, Any]] = []
    rows = []
    for pi, prompt in enumerate(prompts):
        for seed in seeds:
            cid = f"cmp-{pi + 1:03d}-{seed}"
            entry: dict[str, Any] = {"comparison_id": cid, "prompt": prompt, "seed": seed, "models": [],
                                     "winner": None, "notes": ""}
            for mi, m in enumerate(models):
                rel = f"images/p{pi + 1:02d}/{m}/seed{seed}.png"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(png_bytes(((40 * mi) % 256, (17 * seed) % 256, (60 * pi) % 256)))
                lora = None if mi == 0 else f"/loras/{m}.safetensors"
                entry["models"].append({"name": m, "base_model": "/models/tiny", "lora": lora,
                                        "lora_strength": 0.0 if mi == 0 else 1.0, "generation_time_s": 0.1 + mi / 100,
                                        "image": rel, "distance_to_base": 0.0 if mi == 0 else 10.0 * mi,
                                        "metrics": dict(metrics.get(m, {})), "completed_at": "2026-01-01T00:00:00Z"})
                rows.append([cid, prompt, seed, m, "/models/tiny", lora or "", 0.0 if mi == 0 else 1.0,
                             0.1 + mi / 100, "", "", "2026-01-01T00:00:00Z", rel])
            comparisons.append(entry)
    data = {"metadata": {"generated_at": "2026-01-01T00:00:00Z", "version": "1.0.0",
                         "total_comparisons": len(comparisons), "tool": "lora-audit compare"},
            "comparisons": comparisons,
            "statistics": {"total_comparisons": len(comparisons), "comparisons_with_preference": 0,
                           "preference_rate": 0.0, "model_wins": [], "models": []},
            "findings": []}
    (folder / "comparison.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    import csv

    with open(folder / "comparison.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["comparison_id", "prompt", "seed", "model_name", "base_model", "lora", "lora_strength",
                    "generation_time_s", "winner", "notes", "completed_at", "image"])
        w.writerows(rows)
    return folder
