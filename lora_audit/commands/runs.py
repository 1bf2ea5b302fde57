"""``inspect``, ``infer-dim`` and ``diff``: read runs' evidence, fit a file size, compare runs."""

from __future__ import annotations

import click

from lora_audit.commands.support import echo_json, one_blas_thread, one_line_errors
from lora_audit.errors import EvidenceError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also show parameters at kohya's defaults.")
@click.option("--weights", "with_weights", is_flag=True,
              help="Also analyse the runs' LoRA files' weights (lora-audit weights; needs numpy, the ml extra).")
@one_line_errors
def inspect(paths: tuple[str, ...], as_json: bool, show_all: bool, with_weights: bool = False) -> None:
    """Read the evidence of each run (a folder or a file) into kohya parameters with provenance."""
    from lora_audit.report.inspect_report import inspect_runs, render_inspections

    if with_weights:
        one_blas_thread()
    items = inspect_runs(list(paths), weights=with_weights, modules=as_json)
    if as_json:
        echo_json({"runs": [it.to_json() for it in items]})
        return
    click.echo(render_inspections(items, show_all))


@click.command("infer-dim")
@click.argument("size")
@click.option("--arch", type=click.Choice(["sd15", "sd2", "sdxl", "flux", "sd3", "lumina", "hunyuan_image", "anima"]),
              help="Architecture, if known.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=10, show_default=True, help="Candidates to show (text output).")
@one_line_errors
def infer_dim(size: str, arch: str | None, as_json: bool, limit: int) -> None:
    """List every (network_dim, save precision, text encoder, conv dim) a LoRA file SIZE fits, best first."""
    from lora_audit.kohya.filesize import candidates
    from lora_audit.report.console import table

    try:
        cands = candidates(size, arch)
    except ValueError as e:
        raise EvidenceError(str(e)) from None
    if as_json:
        echo_json({"candidates": [c.model_dump() for c in cands]})
        return
    if not cands:
        click.echo(f"no kohya LoRA layout fits {size}")
        return
    dit = any(c.layout for c in cands[:limit])
    rows = [[c.arch, str(c.network_dim), c.save_precision, "yes" if c.text_encoder else "no", str(c.conv_dim or "-"),
             f"{c.expected_bytes:,}", f"{c.delta_bytes:+,}"] + ([c.layout or "-"] if dit else [])
            for c in cands[:limit]]
    click.echo(table(rows, ["arch", "dim", "precision", "text encoder", "conv dim", "expected bytes", "delta"]
                     + (["layout (DiT)"] if dit else [])))
    if len(cands) > limit:
        click.echo(f"... {len(cands) - limit} more (--limit, --json)")


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--all", "show_all", is_flag=True, help="Also list the parameters that stayed the same.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--sd-scripts", "sd_scripts", type=click.Path(file_okay=False), default=None,
              help="An sd-scripts git checkout: count the commits between the runs' sd_scripts_commit and list those "
                   "touching training code (default: the global --sd-scripts, $LORA_AUDIT_SD_SCRIPTS, the submodule).")
@one_line_errors
def diff(runs: tuple[str, ...], show_all: bool, as_json: bool, sd_scripts: str | None = None) -> None:
    """Every parameter that differs between RUNS (the first is the baseline), grouped by category."""
    from lora_audit.diff import diff_runs
    from lora_audit.evidence import load_runs
    from lora_audit.report.console import render_diff

    loaded = load_runs(list(runs))
    if len(loaded) < 2:
        raise EvidenceError(f"diff needs at least two runs, got {len(loaded)} ({', '.join(runs)})")
    d = diff_runs(loaded, include_same=show_all)
    from lora_audit.sd_scripts_version import checkout, version_changes

    versions = version_changes(loaded, checkout(sd_scripts, (click.get_current_context().find_root().obj or {}).get(
        "sd_scripts")))
    if as_json:
        echo_json({**d.to_json(), "sd_scripts_versions": [v.model_dump() for v in versions]})
        return
    click.echo(render_diff(d))
    for v in versions:
        click.echo("\n".join(v.lines()))
