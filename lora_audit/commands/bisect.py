"""``bisect start|good|bad|unsure|next|log``: find the changes that broke a run, round by round."""

from __future__ import annotations

from pathlib import Path

import click

from lora_audit.commands.support import echo_json, one_line_errors
from lora_audit.errors import EvidenceError
from lora_audit.evidence.pick import good_and_bad


@click.group()
def bisect() -> None:
    """Find the changes that broke a run in few trainings, the way git bisect works, over the change set."""


def _print_bisect(data: dict, as_json: bool, study: Path) -> None:
    from lora_audit.ablate.files import RUNNER

    if as_json:
        echo_json({"study": str(study), **data})
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
@click.option("--backend", type=click.Choice(["kohya", "builtin"]), default="kohya", show_default=True,
              help="kohya: scripts for your sd-scripts; builtin: the embedded CPU trainer (lora-audit train).")
@click.option("--force", is_flag=True, help="Regenerate files of an existing study even where they were edited.")
@click.option("--log", is_flag=True, help="Give every variant a logging_dir (logs/) even if the baseline had none.")
@click.option("--replicates", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Control replicates: the good run again with N other seeds; how many are judged bad measures "
                   "seed noise.")
@click.option("--method", type=click.Choice(["group-testing", "progressive"]), default="group-testing",
              show_default=True, help="group-testing: never more trainings than one change at a time; progressive: "
                                      "the earlier search, trains every claim (interactions, single culprits).")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_context
@one_line_errors
def bisect_start(ctx, runs, good, bad, out, parallel, backend, force, log, replicates, method, as_json):
    """Start a bisection: writes the study and the first round's variants."""
    from lora_audit.ablate import study as st
    from lora_audit.settings import sd_scripts_path

    g, b = good_and_bad(list(runs), good, bad)
    bs = st.start(g, b[0], Path(out), parallel, backend, str(sd_scripts_path(ctx.obj.get("sd_scripts"))),
                  inputs=list(runs), force=force, log=log, replicates=replicates, method=method)
    _print_bisect(st.status_json(bs), as_json, Path(out))


# the options every bisect subcommand after start shares
_study_option = click.option("--study", default=".", show_default=True, type=click.Path(file_okay=False),
                             help="The bisection's study folder.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")


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
    @_study_option
    @click.option("--from-votes", "votes_dir", type=click.Path(file_okay=False), default=None,
                  help="A comparison folder with votes (lora-audit compare --study, then lora-audit vote).")
    @click.option("--threshold", type=click.FloatRange(0, 1), default=0.6, show_default=True,
                  help="With --from-votes: the win rate against base that counts as good (the guide's 60%).")
    @click.option("--kind", type=click.Choice(["human", "machine"]), default=None,
                  help="With --from-votes: whose votes (default human, machine when there are no human votes).")
    @_json_option
    @one_line_errors
    def command(variants, study, votes_dir, threshold, kind, as_json):
        from lora_audit.ablate import study as st

        if votes_dir is None:
            if not variants:
                raise EvidenceError(f"name the VARIANTs that are {verdict}, or give --from-votes DIR")
            _print_bisect(st.status_json(st.judge(Path(study), verdict, list(variants))), as_json, Path(study))
            return
        from lora_audit.votes.verdicts import verdicts_from_votes, verdicts_to_record

        # the votes become verdicts here; the bisection takes verdicts and knows nothing of votes
        rows = verdicts_from_votes(Path(study), Path(votes_dir), threshold, kind, list(variants) or None)
        chosen, unsure = verdicts_to_record(rows, verdict)
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
            echo_json({"study": str(study), "from_votes": rows, **data})
            return
        _print_bisect(data, False, Path(study))

    return command


_judge_command("good")
_judge_command("bad")
_judge_command("unsure")


@bisect.command("next")
@_study_option
@_json_option
@one_line_errors
def bisect_next(study, as_json):
    """The variants to train now (or the result)."""
    from lora_audit.ablate import study as st

    _print_bisect(st.status_json(st.load(Path(study))), as_json, Path(study))


@bisect.command("log")
@_study_option
@_json_option
@one_line_errors
def bisect_log(study, as_json):
    """Every round, variant and verdict so far."""
    from lora_audit.ablate import bisect as bis
    from lora_audit.ablate import study as st

    bs = st.load(Path(study))
    if as_json:
        echo_json({**st.status_json(bs), "log": bis.log(bs.state)})
        return
    click.echo("\n".join(bis.log(bs.state)))
