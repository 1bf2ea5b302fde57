"""The ``lora-audit`` command line: the group, and the commands of ``lora_audit/commands/`` registered on it.
Each command parses options, calls the library, prints; no logic lives here."""

from __future__ import annotations

import sys

import click

from lora_audit import __version__
from lora_audit.commands import ablate, audit, bisect, compare, launch, runs, stats, train, vote, weights


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lora-audit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--sd-scripts", "sd_scripts", type=click.Path(file_okay=False), envvar="LORA_AUDIT_SD_SCRIPTS",
              help="sd-scripts checkout (default: $LORA_AUDIT_SD_SCRIPTS, else the sd-scripts submodule).")
@click.pass_context
def main(ctx: click.Context, debug: bool, sd_scripts: str | None) -> None:
    """Audit kohya-ss sd-scripts LoRA training runs: read the evidence, diff runs, rank suspects."""
    ctx.obj = {"debug": debug, "sd_scripts": sd_scripts}


COMMANDS: list[click.Command] = [
    runs.inspect, weights.weights, runs.infer_dim, runs.diff, audit.audit, ablate.ablate, bisect.bisect,
    train.make_tiny_model, train.make_toy_dataset, train.train, launch.launch, launch.status, compare.compare,
    vote.vote, stats.stats_cmd, stats.export_cmd,
]
for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
