"""Click commands of the embedded trainer: ``make-tiny-model``, ``make-toy-dataset``, ``train``.

Only click is imported here (the CLI group imports this module on every start); torch and diffusers are imported
when a command runs. Errors are one line on stderr with exit code 2, like every lora-audit command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lora_audit.commands.support import echo_json, one_line_errors

if TYPE_CHECKING:
    from lora_audit.train.tiny_model import Arch


@click.command("make-tiny-model")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(["sd15", "sdxl", "flux", "flux-schnell", "sd3"]), default="sd15",
              show_default=True, help="Architecture: SD1.x/SDXL U-Net, FLUX.1-dev (guidance embedding) or -schnell "
                                      "transformer, SD3.5 transformer (CLIP + T5 text encoders).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights.")
@click.option("--single-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the model as one original-layout .safetensors checkpoint here (the kind of file "
                   "people download); PATH then serves as its --model-config folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def make_tiny_model(path: Path, arch: Arch, seed: int, single_file: Path | None, as_json: bool) -> None:
    """Write a tiny diffusers pipeline (random weights, local tokenizer, no download) to PATH."""
    from lora_audit.train.tiny_model import make_tiny_model as make

    out = make(path, arch, seed)
    if single_file is not None:
        from lora_audit.train.single_file import to_single_file

        to_single_file(out, single_file)
    if as_json:
        echo_json({"path": str(out), "arch": arch, "seed": seed,
                    "single_file": str(single_file) if single_file else None})
    else:
        click.echo(f"tiny {arch} model written to {out}"
                   + (f"; single-file checkpoint {single_file} (use --model-config {out})" if single_file else ""))


@click.command("make-toy-dataset")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--images", type=click.IntRange(1), default=8, show_default=True, help="Number of sprites.")
@click.option("--repeats", type=click.IntRange(1), default=10, show_default=True, help="kohya num_repeats.")
@click.option("--name", default="pixelpunk", show_default=True, help="Dataset name (the folder's class tokens).")
@click.option("--size", type=click.IntRange(24), default=96, show_default=True, help="PNG size in pixels.")
@click.option("--resolution", type=click.IntRange(0), default=64, show_default=True,
              help="Resolution written to the dataset TOML, where kohya takes it before the training config's; 0 "
                   "leaves it to the training config.")
@click.option("--batch-size", type=click.IntRange(0), default=4, show_default=True,
              help="batch_size written to the dataset TOML (0: left to the training config's train_batch_size).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same sprites.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Also write config.toml training this diffusers model on the dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def make_toy_dataset(path: Path, images: int, repeats: int, name: str, size: int, resolution: int,
                     batch_size: int, seed: int, model: Path | None, as_json: bool) -> None:
    """Write a kohya-style toy dataset of pixel-art sprites with captions and a dataset TOML to PATH."""
    from lora_audit.train.toy_dataset import make_toy_dataset as make

    ds = make(path, images=images, repeats=repeats, name=name, size=size, resolution=resolution or None,
              batch_size=batch_size or None, seed=seed, model=model)
    if as_json:
        echo_json({k: (str(v) if isinstance(v, Path) else v) for k, v in ds.__dict__.items()})
        return
    click.echo(f"{ds.images} images in {ds.image_dir}\ndataset config: {ds.dataset_toml}")
    if ds.config_toml:
        click.echo(f"training config: {ds.config_toml}\nrun: lora-audit train --config_file {ds.config_toml}")


@click.command("train", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True})
@click.option("--ignore-unsupported", is_flag=True,
              help="Train even when kohya settings the builtin trainer does not implement are set (each is warned "
                   "about).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON at the end.")
@click.argument("kohya_args", nargs=-1, type=click.UNPROCESSED)
@one_line_errors
def train(kohya_args: tuple[str, ...], ignore_unsupported: bool, no_progress: bool, as_json: bool) -> None:
    """Train a LoRA on CPU from kohya train_network.py arguments (--config_file, --dataset_config, --flags).

    The same config files and precedence as kohya's; writes kohya-format LoRA files with ss_* metadata.
    """
    from lora_audit.train.trainer import train as run_training

    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    result = run_training(list(kohya_args), Path.cwd(), ignore_unsupported, echo=echo, progress=not no_progress)
    if as_json:
        echo_json({"files": [str(p) for p in result.files], "final": result.final, "steps": result.steps,
                    "epochs": result.epochs, "log_dir": result.log_dir, "interrupted": result.interrupted,
                    "last_loss": result.losses[-1] if result.losses else None})
    if result.interrupted:
        sys.exit(130)
