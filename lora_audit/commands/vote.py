"""The ``vote`` click command: the blind voting page, or machine votes with ``--judge``. Only click and stdlib at
import time (the CLI imports this on every start); Starlette and uvicorn are imported when the page is served."""

from __future__ import annotations

import dataclasses
import webbrowser
from pathlib import Path
from typing import Any

import click

from lora_audit.commands.support import echo_json, one_line_errors
from lora_audit.votes.store import MODES


@click.command("vote")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but a loopback address needs --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option("--mode", type=click.Choice(MODES), default="best-of", show_default=True,
              help="best-of: every model of one (prompt, seed) side by side; pairwise: two at a time.")
@click.option("--voter", default="anonymous", show_default=True,
              help="Your name, stored with each vote; a restart with the same name resumes where you stopped.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host that is not a loopback address (prints a warning).")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True,
              help="Open the page in a web browser.")
@click.option("--judge", metavar="METRIC[:min|max]", default=None,
              help="Serve nothing: cast machine votes from a compare metric (e.g. grid_fit for pixel art).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the start line (or, with --judge, the votes cast) as JSON.")
@one_line_errors
def vote(folder: Path, host: str, port: int, mode: str, voter: str, allow_remote: bool, open_browser: bool,
         judge: str | None, as_json: bool) -> None:
    """Blind voting page over a comparison folder (lora-audit compare --out): the images of one prompt and seed in
    a shuffled order, names hidden until you vote. Keys: 1-9 vote for that image, 0 or t tie, b both bad, n notes,
    u undo. Votes go to votes.sqlite in the folder."""
    if judge is not None:
        from lora_audit.votes.judge import cast_machine_votes

        votes = cast_machine_votes(folder, judge, mode)
        if as_json:
            echo_json([dataclasses.asdict(v) for v in votes])
        elif votes:
            click.echo(f"cast {len(votes)} machine vote(s) ({mode}) as {votes[0].voter}")
        else:
            click.echo("no machine vote cast: every item already has one from this judge")
        return
    if not voter.strip():
        raise click.BadParameter("must not be empty", param_hint="--voter")

    from lora_audit.votes.server import serve

    def announce(info: dict[str, Any]) -> None:
        if as_json:
            echo_json(info, indent=None)
        else:
            click.echo(f"voting page: {info['url']}  ({info['done']} / {info['total']} done as {voter}; "
                       "Ctrl+C stops)")
        if open_browser:
            webbrowser.open(info["url"])

    serve(folder, host, port, mode, voter, allow_remote, announce)
