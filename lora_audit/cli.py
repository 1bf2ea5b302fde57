"""The ``lora-audit`` command line: parses options, calls the library, prints. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lora_audit import __version__
from lora_audit.commands.support import one_line_errors
from lora_audit.errors import EvidenceError


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


handles_errors = one_line_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lora-audit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--sd-scripts", "sd_scripts", type=click.Path(file_okay=False), envvar="LORA_AUDIT_SD_SCRIPTS",
              help="sd-scripts checkout (default: $LORA_AUDIT_SD_SCRIPTS, else the sd-scripts submodule).")
@click.pass_context
def main(ctx: click.Context, debug: bool, sd_scripts: str | None) -> None:
    """Audit kohya-ss sd-scripts LoRA training runs: read the evidence, diff runs, rank suspects."""
    ctx.obj = {"debug": debug, "sd_scripts": sd_scripts}


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also show parameters at kohya's defaults.")
@click.option("--weights", "with_weights", is_flag=True,
              help="Also analyse the runs' LoRA files' weights (lora-audit weights; needs numpy, the ml extra).")
@handles_errors
def inspect(paths: tuple[str, ...], as_json: bool, show_all: bool, with_weights: bool = False) -> None:
    """Read the evidence of each run (a folder or a file) into kohya parameters with provenance."""
    from lora_audit.evidence import load_runs
    from lora_audit.report.console import render_run

    runs = load_runs(list(paths), unique=False)  # the one discovery rule: a folder of runs shows each run
    weights, trajectories = {}, {}
    if with_weights:
        _one_blas_thread()
        from lora_audit.weights import analyse_series, lora_series

        for r in runs:
            reports, trajectories[r.name] = analyse_series(
                lora_series([e.path for e in r.evidence if e.kind == "safetensors"]))
            weights[r.name] = [rep.to_json(modules=as_json) for rep in reports.values()]
    from lora_audit.curves import curve_facts, run_curves

    curves = {r.name: c for r in runs if (c := run_curves(r.path)) is not None}  # TensorBoard events / avr_loss logs

    def scheduler(r):
        p = r.params.get("lr_scheduler")
        return p.value if p is not None else None

    if as_json:
        _echo_json({"runs": [r.to_json() | ({"weights": weights[r.name], "weights_trajectories": trajectories[r.name]}
                                             if with_weights else {})
                             | ({"curves": curves[r.name].to_json(),
                                 "curve_facts": curve_facts(curves[r.name], scheduler(r))} if r.name in curves else {})
                             for r in runs]})
        return
    texts = [render_run(r, show_all) for r in runs]
    if curves:
        from lora_audit.report.weights_text import render_curve_facts

        texts = [t + ("\n" + render_curve_facts(curve_facts(curves[r.name], scheduler(r))) if r.name in curves else "")
                 for t, r in zip(texts, runs)]
    if with_weights:
        from lora_audit.report.weights_text import render_trajectory, render_weights

        texts = [t + "\n\nweights:\n" + ("\n\n".join([render_weights(w, blocks=False) for w in weights[r.name]]
                                                     + [render_trajectory(stem, rows)
                                                        for stem, rows in trajectories[r.name].items()])
                                          or "no LoRA file in this run's evidence") for t, r in zip(texts, runs)]
    click.echo("\n\n".join(texts))


def _one_blas_thread() -> None:
    """The weight analysis multiplies r×r and r×n matrices, too small for BLAS threads, which only contend: on a busy
    2-core machine OpenBLAS' default threads made it 50x slower (benchmarks/bench_weights.py). Before numpy loads."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's wheels bundle OpenBLAS; torch's threads untouched


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every module with its spectrum).")
@click.option("--blocks/--no-blocks", default=True, show_default=True, help="Show the per-block table.")
@handles_errors
def weights(files: tuple[str, ...], as_json: bool, blocks: bool) -> None:
    """Per module and block of each LoRA FILE: norm, spectrum and effective rank of the update (alpha/rank)·up·down,
    dead and NaN modules; several files of one series (name-000001.safetensors ...) also print a trajectory. A folder
    stands for the .safetensors files directly in it."""
    _one_blas_thread()
    from lora_audit.report.weights_text import render_trajectory, render_weights
    from lora_audit.weights import analyse_series, expand_files

    reports, trajectories = analyse_series(expand_files(list(files)))
    if as_json:
        _echo_json({"files": [r.to_json() for r in reports.values()], "trajectories": trajectories})
        return
    parts = [render_weights(r.to_json(modules=False), blocks) for r in reports.values()]
    parts += [render_trajectory(stem, rows) for stem, rows in trajectories.items()]
    click.echo("\n\n".join(parts))


@main.command("infer-dim")
@click.argument("size")
@click.option("--arch", type=click.Choice(["sd15", "sd2", "sdxl", "flux", "sd3", "lumina", "hunyuan_image", "anima"]),
              help="Architecture, if known.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=10, show_default=True, help="Candidates to show (text output).")
@handles_errors
def infer_dim(size: str, arch: str | None, as_json: bool, limit: int) -> None:
    """List every (network_dim, save precision, text encoder, conv dim) a LoRA file SIZE fits, best first."""
    from lora_audit.kohya.filesize import candidates
    from lora_audit.report.console import table

    try:
        cands = candidates(size, arch)
    except ValueError as e:
        raise EvidenceError(str(e)) from None
    if as_json:
        _echo_json({"candidates": [c.model_dump() for c in cands]})
        return
    if not cands:
        click.echo(f"no kohya LoRA layout fits {size}")
        return
    dit = any(c.layout for c in cands[:limit])
    rows = [[c.arch, c.network_dim, c.save_precision, "yes" if c.text_encoder else "no", c.conv_dim or "-",
             f"{c.expected_bytes:,}", f"{c.delta_bytes:+,}"] + ([c.layout or "-"] if dit else [])
            for c in cands[:limit]]
    click.echo(table(rows, ["arch", "dim", "precision", "text encoder", "conv dim", "expected bytes", "delta"]
                     + (["layout (DiT)"] if dit else [])))
    if len(cands) > limit:
        click.echo(f"... {len(cands) - limit} more (--limit, --json)")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--all", "show_all", is_flag=True, help="Also list the parameters that stayed the same.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handles_errors
def diff(runs: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """Every parameter that differs between RUNS (the first is the baseline), grouped by category."""
    from lora_audit.diff import diff_runs
    from lora_audit.evidence import load_runs
    from lora_audit.report.console import render_diff

    loaded = load_runs(list(runs))
    if len(loaded) < 2:
        raise EvidenceError(f"diff needs at least two runs, got {len(loaded)} ({', '.join(runs)})")
    d = diff_runs(loaded, include_same=show_all)
    if as_json:
        _echo_json(d.to_json())
        return
    click.echo(render_diff(d))


@main.command()
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
@handles_errors
def audit(runs, good, bad, out, template, report_date, study, compare_dirs, as_json, with_weights=False) -> None:
    """Diagnose RUNS (folders, or one folder of run folders): ranked suspects and a Markdown report."""
    from lora_audit.audit import audit as run_audit, check_report_path, default_report_path
    from lora_audit.evidence import load_runs
    from lora_audit.report.markdown import render_audit
    from lora_audit.compare.study import study_comparisons
    from lora_audit.votes.summary import link_comparison

    if with_weights:
        _one_blas_thread()
    result = run_audit(load_runs(list(runs)), list(good) or None, list(bad) or None, weights=with_weights)
    if report_date:
        result.date = report_date
    path = Path(out) if out else default_report_path(list(runs))
    # --compare overrides; else every comparison of the study, wherever compare --study wrote it
    folders = [Path(c) for c in compare_dirs] if compare_dirs else (study_comparisons(study) if study else [])
    if not as_json:
        check_report_path(path, list(runs), result.runs, folders)
    result.comparisons = [link_comparison(f, path) for f in dict.fromkeys(folders)]
    if as_json:
        _echo_json(result.to_json())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_audit(result, template), encoding="utf-8")
    for p in result.pairs:
        top = [f for f in p.findings if f.level == "primary"]
        unknown = len(p.diff.effective_changes()) - len(p.diff.known_changes())
        click.echo(f"{p.good} -> {p.bad}: {len(p.diff.known_changes())} effective changes, {p.nominal} nominal, "
                   f"{unknown} unknown; primary suspects: " + (", ".join(
                       dict.fromkeys(x for f in top for x in f.params)) or "none"))
    for c in result.comparisons:
        click.echo(f"comparison {c.folder}: {c.images} images, {c.human_votes} human / {c.machine_votes} machine "
                   f"votes" + (f"; furthest from base: {c.furthest}" if c.furthest else ""))
        for sentence in c.sentences:
            click.echo(f"  {sentence}")
    click.echo(f"report: {path}")


def _pick_runs(runs: tuple[str, ...], good: str, bads: tuple[str, ...]):
    """--good/--bad are run folders, or names of runs found in RUNS."""
    from lora_audit.evidence import load_runs

    loaded = {r.name: r for r in load_runs(list(runs))} if runs else {}

    def one(ref: str):
        if ref in loaded:
            return loaded[ref]
        if Path(ref).exists():
            found = load_runs([ref])  # the same discovery rule as RUNS
            if len(found) > 1:
                raise EvidenceError(f"{ref} holds {len(found)} runs ({', '.join(r.name for r in found)}): pass it "
                                    "as RUNS and name one with --good/--bad")
            r = found[0]
            loaded.setdefault(r.name, r)
            return r
        raise EvidenceError(f"no run named {ref!r}" + (f" (runs: {', '.join(loaded)})" if loaded else "")
                            + " and no such folder")

    g = one(good)
    b = [one(x) for x in bads]
    if not b:
        b = [r for r in loaded.values() if r.verdict == "bad" and r.name != g.name]
    if not b:
        raise EvidenceError("no bad run: pass --bad RUN")
    return g, b, loaded


@main.command()
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--good", required=True, help="The good run (a folder, or a name among RUNS).")
@click.option("--bad", "bads", multiple=True, help="A bad run (repeatable; default: RUNS with verdict bad).")
@click.option("--strategy", type=click.Choice(["ofat", "reverse", "groups"]), default="ofat", show_default=True)
@click.option("--sweep", "sweeps", multiple=True, metavar="PARAM=V1,V2,...", help="Also sweep a parameter.")
@click.option("--no-control", is_flag=True, help="Leave out the control variant (the good run unchanged).")
@click.option("--out", type=click.Path(file_okay=False), help="Study folder (default: runs/<good>-vs-<bad>).")
@click.option("--backend", type=click.Choice(["kohya", "builtin"]), default="kohya", show_default=True)
@click.option("--seconds-per-step", "seconds", help="For the GPU-hours estimate: a number, or a kohya log to read it from.")
@click.option("--dry-run", is_flag=True, help="Print the plan, write nothing.")
@click.option("--force", is_flag=True, help="Regenerate files of an existing study even where they were edited.")
@click.option("--include-inert", is_flag=True,
              help="Also train changes kohya ignores (e.g. bucket_no_upscale while enable_bucket is off).")
@click.option("--log", is_flag=True, help="Give every variant a logging_dir (logs/) even if the baseline had none.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
@handles_errors
def ablate(ctx, runs, good, bads, strategy, sweeps, no_control, out, backend, seconds, dry_run, force, include_inert,
           log, as_json):
    """Plan and write minimal-change retraining variants (a study folder kohya can run as is)."""
    from lora_audit.ablate.emit import write_study
    from lora_audit.ablate.plan import plan
    from lora_audit.report.console import render_plan
    from lora_audit.settings import sd_scripts_path

    from lora_audit.kohya.logs import seconds_per_step_option

    g, b, loaded = _pick_runs(runs, good, bads)
    seconds_per_step = seconds_per_step_option(seconds) if seconds else None
    if seconds_per_step is not None and not (0 < seconds_per_step < float("inf")):
        raise EvidenceError(f"--seconds-per-step must be a positive number of seconds, got {seconds_per_step:g}")
    p = plan(g, b, strategy, list(sweeps), control=not no_control, seconds_per_step=seconds_per_step,
             include_inert=include_inert)
    from lora_audit.ablate.emit import _safe

    # the default folder is named from the runs, each name made a plain file name (no "/", "..", control chars)
    default = _safe(f"{g.name}-vs-{'-'.join(r.name for r in b)}").lstrip(".")[:200] or "study"
    folder = Path(out) if out else Path("runs") / default
    if not dry_run:
        from lora_audit.ablate.plan import all_or_nothing

        with all_or_nothing(folder):  # an error leaves no half-written new study behind
            write_study(p, {r.name: r for r in [g, *b]}, folder, backend,
                        str(sd_scripts_path(ctx.obj.get("sd_scripts"))), inputs=list(runs), force=force, log=log)
    if as_json:
        _echo_json({"study": str(folder), "written": not dry_run, **p.to_json()})
        return
    click.echo(render_plan(p))
    if not dry_run:
        click.echo(f"study: {folder}")


@main.group()
def bisect() -> None:
    """Find the changes that broke a run in few trainings, the way git bisect works, over the change set."""


def _print_bisect(data: dict, as_json: bool, study: Path) -> None:
    from lora_audit.ablate.files import RUNNER

    if as_json:
        _echo_json({"study": str(study), **data})
        return
    if data["status"] == "found":
        click.echo(f"found after {data['trainings']} training(s): culprit(s) " + (", ".join(data["culprits"]) or
                                                                                 "none settled"))
        for b in data.get("basis", []):
            click.echo(f"  rests on: {b}")
    else:
        click.echo(f"round {data['round']}: train these variants, then say `lora-audit bisect good|bad|unsure "
                   f"--study {study} VARIANT...`")
        for v in data["variants"]:
            click.echo(f"  {study / v['id'] / RUNNER}  ({', '.join(v['params'])}) {v['purpose']}")
    waiting = [c["id"] for c in data.get("controls", []) if not c["verdict"]]
    if waiting:
        click.echo("control replicates to judge (the good run with other seeds): "
                   + ", ".join(str(study / c / RUNNER) for c in waiting))
    for n in data["notes"]:
        click.echo(f"note: {n}")


@bisect.command("start")
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--good", required=True, help="The good run (a folder, or a name among RUNS).")
@click.option("--bad", required=True, help="The bad run (a folder, or a name among RUNS).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Study folder.")
@click.option("--parallel", default=2, show_default=True, help="Variants per round (trained side by side).")
@click.option("--backend", type=click.Choice(["kohya", "builtin"]), default="kohya", show_default=True)
@click.option("--force", is_flag=True, help="Regenerate files of an existing study even where they were edited.")
@click.option("--log", is_flag=True, help="Give every variant a logging_dir (logs/) even if the baseline had none.")
@click.option("--replicates", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Control replicates: the good run again with N other seeds; how many are judged bad measures "
                   "seed noise.")
@click.option("--method", type=click.Choice(["group-testing", "progressive"]), default="group-testing",
              show_default=True, help="group-testing: never more trainings than one change at a time; progressive: "
                                      "the earlier search, trains every claim (interactions, single culprits).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def bisect_start(ctx, runs, good, bad, out, parallel, backend, force, log, replicates, method, as_json):
    """Start a bisection: writes the study and the first round's variants."""
    from lora_audit.ablate import study as st
    from lora_audit.settings import sd_scripts_path

    g, b, _ = _pick_runs(runs, good, (bad,))
    bs = st.start(g, b[0], Path(out), parallel, backend, str(sd_scripts_path(ctx.obj.get("sd_scripts"))),
                  inputs=list(runs), force=force, log=log, replicates=replicates, method=method)
    _print_bisect(st.status_json(bs), as_json, Path(out))


def _judge_command(verdict: str):
    @bisect.command(verdict, help=(f"Mark trained VARIANTs {verdict}; writes the next round when this one is done. "
                                   + ("unsure: the judge cannot tell; the search never branches on it, it asks again "
                                      "(the variant re-written with another seed). " if verdict == "unsure" else "")
                                   + "With --from-votes DIR, the variants (default: the round's) whose win rate "
                                     "against the base model in that comparison's votes is "
                                   + {"good": "at least", "bad": "below", "unsure": "not clearly above or below"}[
                                       verdict] + " --threshold are marked " + verdict + "; a variant whose 95% "
                                     "interval holds the threshold is marked unsure, never forced good or bad."))
    @click.argument("variants", nargs=-1)
    @click.option("--study", default=".", show_default=True, type=click.Path(file_okay=False))
    @click.option("--from-votes", "votes_dir", type=click.Path(file_okay=False), default=None,
                  help="A comparison folder with votes (lora-audit compare --study, then lora-audit vote).")
    @click.option("--threshold", type=click.FloatRange(0, 1), default=0.6, show_default=True,
                  help="With --from-votes: the win rate against base that counts as good (the guide's 60%).")
    @click.option("--kind", type=click.Choice(["human", "machine"]), default=None,
                  help="With --from-votes: whose votes (default human, machine when there are no human votes).")
    @click.option("--json", "as_json", is_flag=True)
    @handles_errors
    def command(variants, study, votes_dir, threshold, kind, as_json):
        from lora_audit.ablate import study as st

        if votes_dir is None:
            if not variants:
                raise EvidenceError(f"name the VARIANTs that are {verdict}, or give --from-votes DIR")
            _print_bisect(st.status_json(st.judge(Path(study), verdict, list(variants))), as_json, Path(study))
            return
        rows = st.verdicts_from_votes(Path(study), Path(votes_dir), threshold, kind, list(variants) or None)
        chosen = [r["variant"] for r in rows if r["verdict"] == verdict]
        unsure = [r["variant"] for r in rows if r["verdict"] == "unsure" and verdict != "unsure"]
        if not as_json:
            for r in rows:
                rate = (f"wins {r['wins']} of {r['n']} against base ({100 * r['win_rate']:.0f}%, 95% CI "
                        f"{100 * r['ci_lo']:.0f}-{100 * r['ci_hi']:.0f}%)" if r["n"] else "no decided votes")
                click.echo(f"{r['variant']}: {rate}, {r['kind']} votes -> "
                           + (f"{verdict}" if r["variant"] in chosen else
                              "unsure (the interval holds the threshold)" if r["variant"] in unsure else
                              f"not {verdict}" if r["verdict"] else "no verdict"))
        if not chosen and not unsure:
            raise EvidenceError(f"the votes in {votes_dir} mark no variant {verdict} at threshold {threshold:g}")
        data = st.status_json(st.judge_all(Path(study), [(v, "unsure") for v in unsure]
                                           + [(v, verdict) for v in chosen]))
        if as_json:
            _echo_json({"study": str(study), "from_votes": rows, **data})
            return
        _print_bisect(data, False, Path(study))

    return command


_judge_command("good")
_judge_command("bad")
_judge_command("unsure")


@bisect.command("next")
@click.option("--study", default=".", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def bisect_next(study, as_json):
    """The variants to train now (or the result)."""
    from lora_audit.ablate import study as st

    _print_bisect(st.status_json(st.load(Path(study))), as_json, Path(study))


@bisect.command("log")
@click.option("--study", default=".", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def bisect_log(study, as_json):
    """Every round, variant and verdict so far."""
    from lora_audit.ablate import bisect as bis, study as st

    bs = st.load(Path(study))
    if as_json:
        _echo_json({**st.status_json(bs), "log": bis.log(bs.state)})
        return
    click.echo("\n".join(bis.log(bs.state)))


def _register_optional() -> None:
    """Commands of the heavy parts register themselves when their modules are present."""
    from lora_audit.commands.compare import compare
    from lora_audit.commands.launch import launch, status
    from lora_audit.commands.train import make_tiny_model, make_toy_dataset, train
    from lora_audit.commands.vote import vote
    from lora_audit.commands.stats import export_cmd, stats_cmd

    for cmd in (make_tiny_model, make_toy_dataset, train, launch, status, compare, vote, stats_cmd, export_cmd):
        main.add_command(cmd)


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
