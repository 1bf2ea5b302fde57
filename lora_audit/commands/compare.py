"""The ``compare`` click command. Only click and stdlib are imported here (the CLI imports this on every start);
torch, diffusers, numpy and PIL are imported when the command runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lora_audit.commands.support import echo_json, one_line_errors
from lora_audit.compare.job import compare_loras, comparison_settings

_SCHEDULERS = ["ddim", "pndm", "euler", "euler_a", "heun", "lms", "dpm++2m", "dpm++2m_karras", "unipc", "ddpm"]


def _progress_printer():
    """One bar redrawn in place on a terminal; in a log, a line per tenth of the work (and the last)."""
    shown = {"decile": -1}

    def progress(done: int, total: int, what: str, eta: float | None) -> None:
        eta_s = "?" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        width = 24
        bar = "#" * (width * done // total) + "-" * (width - width * done // total)
        line = f"[{bar}] {done}/{total} ETA {eta_s}  {what}"
        if sys.stderr.isatty():
            click.echo("\r\033[K" + line[:200], err=True, nl=done >= total)
        elif done >= total or (10 * done) // total > shown["decile"]:
            shown["decile"] = (10 * done) // total
            click.echo(line, err=True)

    return progress


@click.command("compare")
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="Base model: a diffusers folder or a single .safetensors checkpoint (SD1.x or SDXL).")
@click.option("--model-config", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Diffusers config folder for a single-file base, so it loads offline.")
@click.option("--lora", "loras", multiple=True, metavar="PATH[@S1,S2]",
              help="A LoRA file, optionally with strengths (default 1). Repeatable.")
@click.option("--study", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A study folder (lora-audit ablate): its base model, prompts and every variant's LoRA.")
@click.option("--epochs", is_flag=True,
              help="Also every per-epoch file (name-000001.safetensors, ...) of each --lora and each --study "
                   "variant, compared like LoRAs; reports the best epoch and the rule that picked it.")
@click.option("--strengths", default="1", show_default=True, help="With --study: strengths to try, e.g. 0.5,1.")
@click.option("--prompt", "prompt_texts", multiple=True, help="A prompt. Repeatable.")
@click.option("--prompts", "prompts_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A file with one prompt a line.")
@click.option("--seeds", default="42,43,44", show_default=True, help="Seeds: 42,43,44 or 42-45.")
@click.option("--steps", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Sampling steps per image (the same for every row).")
@click.option("--cfg", type=click.FloatRange(0, 50), default=None,
              help="Guidance scale (default 7; FLUX.1-dev: its distilled guidance, default 3.5; FLUX.1-schnell has "
                   "none).")
@click.option("--size", default="512x512", show_default=True, help="WxH, multiples of 8.")
@click.option("--scheduler", type=click.Choice(_SCHEDULERS), default=None,
              help="Sampler (default: the model's own).")
@click.option("--negative", default="", help="Negative prompt, the same for every image.")
@click.option("--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True,
              help="auto: cuda, else mps, else cpu.")
@click.option("--dtype", type=click.Choice(["auto", "fp16", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: fp16 on cuda, fp32 elsewhere (CPU half precision is slow and not bit-stable).")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="Seeds per pipeline call.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output folder (default <study>/compare or reports/compare). Finished images are kept and "
                   "reused when the same comparison runs again.")
@click.option("--clip-model", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Local CLIP weights (a transformers CLIPModel folder): adds a CLIP text-image score per image.")
@click.option("--reference", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With --clip-model: folder of reference images; adds a Fréchet distance (CLIP embeddings) per "
                   "model.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print comparison.json to stdout.")
@one_line_errors
def compare(base: Path | None, model_config: Path | None, loras: tuple[str, ...], study: Path | None, epochs: bool,
            strengths: str, prompt_texts: tuple[str, ...], prompts_file: Path | None, seeds: str, steps: int,
            cfg: float | None, size: str, scheduler: str | None, negative: str, device: str, dtype: str, batch: int,
            out: Path | None, clip_model: Path | None, reference: Path | None, quiet: bool, as_json: bool) -> None:
    """Generate the same prompts and seeds with the base model and each LoRA (at each strength), from identical
    starting noise, and measure how each LoRA moves the images; writes images, grids, comparison.json/.csv and
    report.md."""
    settings, out, missing = comparison_settings(
        base=base, loras=loras, prompts=prompt_texts, prompts_file=prompts_file, study=study, epochs=epochs,
        strengths=strengths, seeds=seeds, steps=steps, cfg=cfg, size=size, scheduler=scheduler, negative=negative,
        device=device, dtype=dtype, batch=batch, out=out, clip_model=clip_model, reference=reference)
    if missing:
        click.echo(f"note: no trained LoRA yet for: {', '.join(missing)}", err=True)
    from lora_audit.votes.stats import row_votes

    result = compare_loras(settings, out, None if quiet else _progress_printer(), model_config, clip_model, reference,
                           study, prompts_file, votes=row_votes(Path(out), "human") if Path(out).is_dir() else None)
    cmp, data, loss_plot = result.comparison, result.data, None
    if study is not None:  # the variants' loss curves, when they were launched, linked from the report
        from lora_audit.report.plots import add_study_loss_plot

        loss_plot = add_study_loss_plot(study, out, data)
    if as_json:
        echo_json(data)
        return
    for lo in cmp.loras:
        click.echo(f"{lo.spec.name}: {lo.matched} of {lo.modules_in_file} modules matched, {lo.unmatched} unmatched")
    for st in data["statistics"]["models"]:
        t = st["timing"]
        click.echo(f"{st['model_name']}: {t['images']} images, {t['mean_s']:.3f} s/image, "
                   f"{t['images_per_s']:.2f} images/s, distance to base {st['distance_to_base']['mean']:.2f}")
    for f in data["findings"]:
        click.echo(f)
    for s in data.get("epochs") or []:
        pick = s["best"] if s["best"] is not None else "no pick"
        click.echo(f"best epoch of {s['series']}: {pick} ({s['rule']})")
    if loss_plot is not None:
        click.echo(f"loss plot: {out / loss_plot['png']}" if "png" in loss_plot else f"loss plot: {loss_plot['note']}")
    click.echo(f"written: {out / 'report.md'}, comparison.json, comparison.csv, {len(cmp.grids)} grids"
               + (f" ({cmp.resumed} images reused)" if cmp.resumed else ""))
    sys.stdout.flush()
