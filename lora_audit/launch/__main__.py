"""``python -m lora_audit.launch launch|status ...``: the two commands without the rest of the CLI."""

import click

from lora_audit.commands.launch import launch, status


@click.group()
def main() -> None:
    """Run a study's variants and show their state."""


main.add_command(launch)
main.add_command(status)

if __name__ == "__main__":
    main()
