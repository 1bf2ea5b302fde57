"""``audit``: ranked suspects and a Markdown report."""

from __future__ import annotations

import click

from lora_audit.commands.support import echo_json, one_blas_thread, one_line_errors


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--good", multiple=True, help="Name of a good run (default: verdicts from run.toml).")
@click.option("--bad", multiple=True, help="Name of a bad run (default: verdicts from run.toml).")
@click.option("--out", type=click.Path(dir_okay=False), help="Report path (default: reports/<runs>.md).")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), help="Your own jinja2 template.")
@click.option("--date", "report_date", help="Date printed in the report (YYYY-MM-DD; default today).")
@click.option("--study", type=click.Path(file_okay=False), default=None,
              help="A study folder: its comparisons (lora-audit compare --study) are linked, with their win rates.")
@click.option("--compare", "compare_dirs", multiple=True, type=click.Path(file_okay=False),
              help="A comparison folder (lora-audit compare --out) to link, with its win rates; overrides the "
                   "study's. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings and the diff as JSON (no report).")
@click.option("--weights", "with_weights", is_flag=True,
              help="Also analyse each run's LoRA weights (effective rank, NaN/dead modules; needs the ml extra).")
@click.option("--sd-scripts", "sd_scripts", type=click.Path(file_okay=False), default=None,
              help="An sd-scripts git checkout: count the commits between two runs' sd_scripts_commit and list those "
                   "touching training code (default: the global --sd-scripts, $LORA_AUDIT_SD_SCRIPTS, the submodule).")
@one_line_errors
def audit(runs, good, bad, out, template, report_date, study, compare_dirs, as_json, with_weights=False,
          sd_scripts=None) -> None:
    """Diagnose RUNS (folders, or one folder of run folders): ranked suspects and a Markdown report."""
    from lora_audit.report.audit_report import audit_runs
    from lora_audit.sd_scripts_version import checkout

    if with_weights:
        one_blas_thread()
    report = audit_runs(list(runs), list(good), list(bad), out=out, template=template, report_date=report_date,
                        study=study, compare=list(compare_dirs), weights=with_weights, write=not as_json,
                        sd_scripts=checkout(sd_scripts, (click.get_current_context().find_root().obj or {}).get(
                            "sd_scripts")))
    result, path, png = report.audit, report.path, report.loss_plot
    if as_json:
        echo_json(result.to_json())
        return
    for p in result.pairs:
        top = [f for f in p.findings if f.level == "primary"]
        unknown = len(p.diff.effective_changes()) - len(p.diff.known_changes())
        click.echo(f"{p.good} -> {p.bad}: {len(p.diff.known_changes())} effective changes, {p.nominal} nominal, "
                   f"{unknown} unknown; primary suspects: " + (", ".join(
                       dict.fromkeys(x for f in top for x in f.params)) or "none"))
        if p.version is not None:
            click.echo("  " + p.version.lines(0)[0])
    for c in result.comparisons:
        click.echo(f"comparison {c.folder}: {c.images} images, {c.human_votes} human / {c.machine_votes} machine "
                   f"votes" + (f"; furthest from base: {c.furthest}" if c.furthest else ""))
        for sentence in c.sentences:
            click.echo(f"  {sentence}")
    if png is not None or result.loss_plot_note:
        click.echo(f"loss plot: {png}" if png is not None else f"loss plot: {result.loss_plot_note}")
    click.echo(f"report: {path}")
