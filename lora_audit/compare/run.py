"""The comparison loop: base loaded once, each (prompt, seed)'s noise made once, LoRAs switched as adapters; images,
grids and a journal that lets an interrupted comparison resume (heavy: torch, diffusers, PIL, numpy)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lora_audit.compare import images as img_io
from lora_audit.compare import metrics as mx
from lora_audit.compare import pipeline as pl
from lora_audit.compare.spec import Row, Settings, rows_for

Progress = Callable[[int, int, str, float | None], None]  # done, total, what, eta seconds


@dataclass
class ComparisonRun:
    """A comparison being made: its settings, rows and image records (comparison.json is its
    :class:`lora_audit.compare.schema.Comparison`, built by ``export.comparison``)."""

    settings: Settings
    out: Path
    model: dict[str, Any]
    loras: list[pl.LoadedLora]
    rows: list[Row]
    records: list[dict[str, Any]] = field(default_factory=list)
    grids: list[str] = field(default_factory=list)
    resumed: int = 0
    fd_clip: dict[str, float] = field(default_factory=dict)  # row label -> Fréchet distance (CLIP)
    # row label -> (times shown, wins) in the human votes already on this folder, handed in by the caller (the votes
    # come after compare in the flow: compare never reads votes.sqlite itself)
    votes: dict[str, tuple[int, int]] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_path(out: Path, pi: int, row: Row, seed: int) -> Path:
    return out / "images" / f"p{pi + 1:02d}" / row.slug / f"seed{seed}.png"


def _journal(out: Path) -> dict[str, dict[str, Any]]:
    """Records of images already finished by an earlier, interrupted or identical, run (keyed by image path)."""
    f = out / "journal.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if f.is_file():
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by a kill (or not ours): that image is simply made again
            if isinstance(rec, dict) and all(isinstance(rec.get(k), t) for k, t in _JOURNAL_FIELDS.items()):
                done[rec["image"]] = rec
    return done


# what a journal record must hold to be reused as is (the rest is recomputed from the image)
_JOURNAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "comparison_id": str, "prompt": str, "prompt_index": int, "seed": int, "model_name": str, "base_model": str,
    "lora": str, "lora_strength": (int, float), "generation_time_s": (int, float), "winner": str, "notes": str,
    "completed_at": str, "image": str, "parameters": str}


def run_comparison(s: Settings, out: Path, progress: Progress | None = None, model_config: Path | None = None
                   ) -> ComparisonRun:
    """Generate ``s``'s prompts and seeds with the base model and each LoRA at each strength, from the same starting
    noise, into ``out`` (finished images are reused); ``progress(done, total, what, eta)`` is called as it goes.
    Returns the comparison in memory; ``compare.export.write_all`` writes its files (``compare_loras`` does both)."""
    import numpy as np
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe, device, dtype = pl.load_base(s, model_config)
    loras = [pl.load_lora(pipe, spec, f"l{i}") for i, spec in enumerate(s.loras)]
    rows = rows_for(s.loras)
    cmp = ComparisonRun(s, out, pl.model_info(pipe, s.base, s), loras, rows)
    sampler = pl.sampler_name(pipe)
    by_adapter = {lo.adapter: lo for lo in loras}
    latents = {seed: pl.initial_latents(pipe, seed, s.width, s.height) for seed in s.seeds}
    done = _journal(out)
    total = len(rows) * len(s.prompts) * len(s.seeds)
    count, t_gen, n_gen = 0, 0.0, 0
    base_px: dict[tuple[int, int], Any] = {}
    with open(out / "journal.jsonl", "a", encoding="utf-8") as journal:
        for row in rows:
            lo = by_adapter.get(row.adapter)
            pl.activate(pipe, row.adapter or None, row.strength)
            for pi, prompt in enumerate(s.prompts):
                for start in range(0, len(s.seeds), max(1, s.batch)):
                    chunk = s.seeds[start:start + max(1, s.batch)]
                    params = {seed: img_io.a1111_parameters(
                        prompt, s.negative, s.steps, sampler, s.cfg, seed, s.width, s.height, Path(s.base).name,
                        lo.spec.path.stem if lo else None, row.strength, lo.sha256 if lo else None) for seed in chunk}
                    paths = {seed: image_path(out, pi, row, seed) for seed in chunk}
                    todo = [sd for sd in chunk if not _reusable(done, paths[sd], params[sd], out)]
                    times: dict[int, float] = {}
                    if todo:
                        result, dt = _generate(pipe, s, prompt, [latents[sd] for sd in todo], todo, device, dtype)
                        t_gen, n_gen = t_gen + dt * len(todo), n_gen + len(todo)
                        for sd, im in zip(todo, result):
                            paths[sd].parent.mkdir(parents=True, exist_ok=True)
                            img_io.save_png(im, paths[sd], params[sd])
                            times[sd] = dt
                    for sd in chunk:
                        rel = str(paths[sd].relative_to(out))
                        if sd in times:
                            rec = _record(s, cmp, row, lo, pi, prompt, sd, rel, times[sd], params[sd])
                            journal.write(json.dumps(rec) + "\n")
                            journal.flush()
                        else:
                            rec = done[rel]
                            cmp.resumed += 1
                        with Image.open(paths[sd]) as im:
                            im.load()
                            a = np.asarray(im.convert("RGB"))
                            rec["metrics"] = mx.image_metrics(im, paths[sd].stat().st_size)
                        if row.adapter == "":
                            base_px[(pi, sd)] = a
                        rec["distance_to_base"] = round(mx.distance(a, base_px[(pi, sd)]), 4)
                        cmp.records.append(rec)
                    count += len(chunk)
                    if progress:
                        eta = (t_gen / n_gen) * (total - count) if n_gen else None
                        progress(count, total, f"{row.label} | prompt {pi + 1} | seeds {chunk[0]}..{chunk[-1]}", eta)
    cmp.grids = write_grids(cmp)
    return cmp


def _generate(pipe: Any, s: Settings, prompt: str, latents: list[Any], seeds: list[int], device: str,
              dtype: Any) -> tuple[list[Any], float]:
    """One batch: the images of ``seeds`` (each from its own initial ``latents``) and the seconds per image."""
    import torch

    lat = torch.cat(latents).to(device=device, dtype=dtype)
    gens = [torch.Generator("cpu").manual_seed(sd) for sd in seeds]
    kw = pl.call_kwargs(pipe, s, prompt, len(seeds)) | {"latents": lat, "generator": gens}
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        result = pipe(**kw).images
    if device == "cuda":
        torch.cuda.synchronize()
    return result, (time.perf_counter() - t0) / len(seeds)


def _reusable(done: dict[str, dict[str, Any]], path: Path, params: str, out: Path) -> bool:
    rel = str(path.relative_to(out))
    return rel in done and path.is_file() and img_io.read_parameters(path) == params


def _record(s: Settings, cmp: ComparisonRun, row: Row, lo: pl.LoadedLora | None, pi: int, prompt: str, seed: int,
            rel: str, t: float, params: str) -> dict[str, Any]:
    return {"comparison_id": f"cmp-{pi + 1:03d}-{seed}", "prompt": prompt, "prompt_index": pi, "seed": seed,
            "model_name": row.label, "base_model": str(s.base), "lora": str(lo.spec.path) if lo else "",
            "lora_strength": row.strength if lo else 0.0, "generation_time_s": round(t, 6), "winner": "",
            "notes": "", "completed_at": _now(), "image": rel, "parameters": params}


def write_grids(cmp: ComparisonRun) -> list[str]:
    s = cmp.settings
    paths = []
    for pi, prompt in enumerate(s.prompts):
        cells = [[image_path(cmp.out, pi, row, sd) for sd in s.seeds] for row in cmp.rows]
        g = img_io.grid(cells, [r.label for r in cmp.rows], [f"seed {sd}" for sd in s.seeds],
                        f"{pi + 1}: {prompt}")
        p = cmp.out / f"grid-p{pi + 1:02d}.png"
        g.save(p, format="PNG")
        paths.append(p.name)
    return paths
