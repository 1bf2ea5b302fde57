"""Training scripts (bash/sh, Windows .bat/.cmd, PowerShell .ps1) → one Evidence per kohya training command.

The tokenizers (``_bash``, ``_batch``, ``_powershell``) only turn text into commands of words, each word with the
line it is written on; ``invocation.find_training_command`` finds the training script among the words and
``invocation.resolve_invocation`` reads its arguments with kohya's argparse semantics.
"""

from __future__ import annotations

import re
from pathlib import Path

from lora_audit.evidence._bash import BashTokenizer
from lora_audit.evidence._batch import BatchTokenizer
from lora_audit.evidence._powershell import PowerShellTokenizer
from lora_audit.evidence._script import Command, read_script, unique_notes
from lora_audit.evidence.invocation import find_training_command, resolve_invocation
from lora_audit.model import Evidence

Tokenizer = BashTokenizer | BatchTokenizer | PowerShellTokenizer
KINDS = {"shell": BashTokenizer, "bat": BatchTokenizer, "ps1": PowerShellTokenizer}
# kohya's training entry points (train_network.py, sdxl_train_network.py, sdxl_train.py, flux_train_network.py,
# train_db.py, fine_tune.py ...); helper scripts (captioning, resizing, merging) are not training runs.
_TRAINING_NAME = re.compile(r"(^|_)train(_|\.py$)|^fine_tune\.py$", re.IGNORECASE)


def script_kind(path: Path) -> str:
    """The dialect of a script by its suffix: "bat" (.bat/.cmd), "ps1", else "shell"."""
    suffix = path.suffix.lower()
    return "bat" if suffix in (".bat", ".cmd") else "ps1" if suffix == ".ps1" else "shell"


def tokenizer(kind: str, label: str) -> Tokenizer:
    return KINDS[kind](label)


def parse_shell(path: Path | str, label: str | None = None) -> list[Evidence]:
    """Every kohya training command of a script, read as its shell would run it (usually one; [] if none)."""
    path = Path(path)
    label = label or str(path)
    kind = script_kind(path)
    commands = tokenizer(kind, label).commands(read_script(path, label))
    return training_evidence(commands, path, kind, label)


def training_evidence(commands: list[Command], path: Path, kind: str, label: str) -> list[Evidence]:
    """Evidence for each command that launches a training script; the expansion notes of those commands only."""
    out = []
    for cmd in commands:
        found = find_training_command(cmd.words)
        if found is None:
            continue
        script, args, facts = found
        if not _TRAINING_NAME.search(script):
            continue
        if cmd.error is not None:
            raise cmd.error
        ev = resolve_invocation(script, args, path, kind, facts=facts, label=label)
        ev.warnings = unique_notes(cmd.notes + ev.warnings)
        if cmd.variables:
            # where each value came from, for an editor that changes the value rather than the flag's line
            ev.facts["variables"] = list({(v["name"], v["defined"]): v for v in cmd.variables}.values())
        out.append(ev)
    return out
