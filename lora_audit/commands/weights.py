"""``weights``: the weight analysis of LoRA files."""

from __future__ import annotations

import click

from lora_audit.commands.support import echo_json, one_blas_thread, one_line_errors


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every module with its spectrum).")
@click.option("--blocks/--no-blocks", default=True, show_default=True, help="Show the per-block table.")
@one_line_errors
def weights(files: tuple[str, ...], as_json: bool, blocks: bool) -> None:
    """Per module and block of each LoRA FILE: norm, spectrum and effective rank of the update (alpha/rank)·up·down,
    dead and NaN modules; several files of one series (name-000001.safetensors ...) also print a trajectory. A folder
    stands for the .safetensors files directly in it."""
    one_blas_thread()
    from lora_audit.report.weights_text import render_trajectory, render_weights
    from lora_audit.weights import analyse_series, expand_files

    reports, trajectories = analyse_series(expand_files(list(files)))
    if as_json:
        echo_json({"files": [r.to_json() for r in reports.values()], "trajectories": trajectories})
        return
    parts = [render_weights(r.to_json(modules=False), blocks) for r in reports.values()]
    parts += [render_trajectory(stem, rows) for stem, rows in trajectories.items()]
    click.echo("\n\n".join(parts))
