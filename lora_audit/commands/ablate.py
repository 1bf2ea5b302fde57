"""``ablate``: plan and write minimal-change retraining variants."""

from __future__ import annotations

import click

from lora_audit.commands.support import echo_json, one_line_errors


@click.command()
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--good", required=True, help="The good run (a folder, or a name among RUNS).")
@click.option("--bad", "bads", multiple=True, help="A bad run (repeatable; default: RUNS with verdict bad).")
@click.option("--strategy", type=click.Choice(["ofat", "reverse", "groups"]), default="ofat", show_default=True,
              help="ofat: each change alone on the good run; reverse: each change undone on the bad run; groups: "
                   "every change of one category (network, optimizer, ...) together on the good run.")
@click.option("--sweep", "sweeps", multiple=True, metavar="PARAM=V1,V2,...", help="Also sweep a parameter.")
@click.option("--no-control", is_flag=True, help="Leave out the control variant (the good run unchanged).")
@click.option("--out", type=click.Path(file_okay=False), help="Study folder (default: runs/<good>-vs-<bad>).")
@click.option("--backend", type=click.Choice(["kohya", "builtin"]), default="kohya", show_default=True,
              help="kohya: scripts for your sd-scripts; builtin: the embedded CPU trainer (lora-audit train).")
@click.option("--seconds-per-step", "seconds",
              help="For the GPU-hours estimate: a number, or a kohya log to read it from.")
@click.option("--dry-run", is_flag=True, help="Print the plan, write nothing.")
@click.option("--force", is_flag=True, help="Regenerate files of an existing study even where they were edited.")
@click.option("--include-inert", is_flag=True,
              help="Also train changes kohya ignores (e.g. bucket_no_upscale while enable_bucket is off).")
@click.option("--log", is_flag=True, help="Give every variant a logging_dir (logs/) even if the baseline had none.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
@one_line_errors
def ablate(ctx, runs, good, bads, strategy, sweeps, no_control, out, backend, seconds, dry_run, force, include_inert,
           log, as_json):
    """Plan and write minimal-change retraining variants (a study folder kohya can run as is)."""
    from lora_audit.ablate.ablation import ablate as make_study
    from lora_audit.evidence.pick import good_and_bad
    from lora_audit.kohya.logs import seconds_per_step_option
    from lora_audit.report.console import render_plan
    from lora_audit.settings import sd_scripts_path

    g, b = good_and_bad(list(runs), good, list(bads))
    seconds_per_step = seconds_per_step_option(seconds) if seconds else None
    p, folder = make_study(g, b, strategy, sweeps, control=not no_control, seconds_per_step=seconds_per_step,
                           include_inert=include_inert, out=out, backend=backend, inputs=list(runs), force=force,
                           log=log, sd_scripts=str(sd_scripts_path(ctx.obj.get("sd_scripts"))), write=not dry_run)
    if as_json:
        echo_json({"study": str(folder), "written": not dry_run, **p.to_json()})
        return
    click.echo(render_plan(p))
    if not dry_run:
        click.echo(f"study: {folder}")
