"""One comparison end to end (``lora-audit compare``) from Python: its settings from plain values (a study's base,
prompts and LoRAs merged in), then the images, metrics and files. Light at import (spec and safety only); torch,
diffusers, numpy and PIL are imported when :func:`compare_loras` runs.

    from lora_audit.compare.job import comparison_settings, compare_loras
    settings, out, missing = comparison_settings(base="models/tiny", loras=["a.safetensors@0.5,1"],
                                                 prompts=["a pixel-art knight"], seeds="42,43", steps=4)
    result = compare_loras(settings, out)   # result.data is comparison.json
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_audit.compare.safety import check_inputs
from lora_audit.compare.spec import LoraSpec, Settings, parse_lora, parse_seeds, parse_size, read_prompts
from lora_audit.errors import EvidenceError


def unique_labels(specs: list[LoraSpec]) -> list[LoraSpec]:
    """Rows and image folders are named by label: two LoRAs called the same (``a/last`` and ``b/last``) would
    overwrite each other, so each of those is labelled ``<its folder>/<name>``."""
    labels = [s.name for s in specs]
    dup = {n for n in labels if labels.count(n) > 1}
    return [LoraSpec(s.path, s.strengths, f"{s.path.parent.name}/{s.name}") if s.name in dup else s for s in specs]


def comparison_settings(*, base: Path | str | None = None, loras: list[str] | tuple[str, ...] = (),
                        prompts: list[str] | tuple[str, ...] = (), prompts_file: Path | str | None = None,
                        study: Path | str | None = None, epochs: bool = False, strengths: str = "1",
                        seeds: str = "42,43,44", steps: int = 20, cfg: float | None = None, size: str = "512x512",
                        scheduler: str | None = None, negative: str = "", device: str = "auto", dtype: str = "auto",
                        batch: int = 1, out: Path | str | None = None, clip_model: Path | str | None = None,
                        reference: Path | str | None = None) -> tuple[Settings, Path, list[str]]:
    """The settings of one comparison, as ``lora-audit compare`` takes them: ``loras`` as ``PATH[@S1,S2]``;
    ``study``'s base model, prompts and every variant's LoRA (at ``strengths``) fill what is not given;
    ``epochs``: also every per-epoch file of each LoRA and variant (``name-000001.safetensors`` ...), and
    comparison.json gets the best epoch of each (``compare.epochs``). Returns (settings, output folder, the
    study's variants with no LoRA yet).
    Default output: ``<study>/compare``, else ``reports/compare``. ``cfg`` None: the model's own (7; FLUX.1-dev's
    distilled guidance 3.5)."""
    specs: list[LoraSpec] = [parse_lora(t) for t in loras]
    if epochs:  # each LoRA's per-epoch files beside it, compared like LoRAs; the best epoch is picked (epochs.py)
        from lora_audit.compare.epochs import epoch_specs

        expanded = {(str(e.path), e.strengths): e for s in specs for e in epoch_specs(s)}  # two files of one run
        specs = list(expanded.values())
    texts: list[str] = list(prompts)
    if prompts_file is not None:
        texts += read_prompts(Path(prompts_file))
    missing: list[str] = []
    folder = Path(out) if out is not None else None
    base_path = Path(base) if base is not None else None
    if study is not None:
        from lora_audit.compare.study import study_inputs

        si = study_inputs(Path(study), epochs, parse_lora(f"x@{strengths}").strengths)
        base_path = base_path or si.base
        texts = texts or si.prompts
        specs = si.loras + specs
        missing = list(si.missing)
        folder = folder or Path(study) / "compare"
    if base_path is None:
        raise EvidenceError("give --base MODEL (or --study)")
    if not texts:
        raise EvidenceError("give --prompt TEXT or --prompts FILE")
    if reference is not None and clip_model is None:
        raise EvidenceError("--reference needs --clip-model DIR (the embeddings the distance is measured in)")
    width, height = parse_size(size)
    settings = Settings(base=base_path, prompts=texts, seeds=parse_seeds(seeds), steps=steps, width=width,
                        height=height, scheduler=scheduler, negative=negative, device=device, dtype=dtype,
                        batch=batch, loras=unique_labels(specs))
    settings.cfg = cfg  # type: ignore[assignment]  # None: compare.pipeline.load_base sets the model's own
    return settings, folder or Path("reports") / "compare", missing


@dataclass
class CompareResult:
    comparison: Any  # compare.run.ComparisonRun: the loaded LoRAs (matched modules), grids, images reused
    data: dict[str, Any]  # comparison.json


def compare_loras(settings: Settings, out: Path | str, progress=None, model_config: Path | str | None = None,
                  clip_model: Path | str | None = None, reference: Path | str | None = None,
                  study: Path | str | None = None, prompts_file: Path | str | None = None,
                  votes: Mapping[str, tuple[int, int]] | None = None) -> CompareResult:
    """Generate ``settings``' prompts and seeds with the base model and each LoRA (at each strength) from identical
    starting noise, measure how each LoRA moves the images (``clip_model``: also a CLIP score; ``reference``: a
    Fréchet distance), and write images, grids, comparison.json/.csv and report.md into ``out``. Every input is
    checked first (no pickle; nothing of the user's under ``out``). ``study``: the comparison is recorded in it (so
    ``audit --study`` finds it; ``report.plots.add_study_loss_plot`` adds the variants' loss curves). ``votes``: {row
    label: (times shown, wins)} of the human votes already on ``out`` (:func:`lora_audit.votes.stats.row_votes`),
    which pick the best of a run's epochs first."""
    out = Path(out)
    opt = {k: Path(v) if v is not None else None for k, v in
           {"model_config": model_config, "clip_model": clip_model, "reference": reference,
            "prompts_file": prompts_file}.items()}
    # before anything heavy is imported or loaded: no pickle anywhere, nothing of the user's under out
    check_inputs(settings, out, opt["model_config"], opt["clip_model"], opt["reference"], opt["prompts_file"])
    from lora_audit.compare.export import write_all
    from lora_audit.compare.run import run_comparison

    cmp = run_comparison(settings, out, progress, opt["model_config"])
    cmp.votes = dict(votes or {})
    if opt["clip_model"] is not None:
        from lora_audit.compare.clip import add_clip_metrics

        add_clip_metrics(cmp, opt["clip_model"], opt["reference"])
    data = write_all(cmp)
    if study is not None:  # so that audit --study finds it wherever out is
        from lora_audit.compare.study import record_comparison

        record_comparison(Path(study), out)
    return CompareResult(cmp, data)
