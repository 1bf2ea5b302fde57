"""What every click command shares (click and stdlib only): one-line errors and JSON output."""

from __future__ import annotations

import json
from functools import wraps
from typing import Any

import click

from lora_audit.errors import EvidenceError

ML_EXTRA = ("this command needs the ml extra: pip install torch==2.13.0 (the CPU wheel; pin it first), then "
            "pip install 'lora-audit[ml]'")
HEAVY = ("torch", "diffusers", "transformers", "peft", "PIL", "numpy", "safetensors")


def one_line_errors(fn):
    """Bad input: ``error: <file>[:line]: message`` on stderr and exit code 2; a heavy library missing: how to
    install the ``ml`` extra. The traceback only with ``--debug``."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except EvidenceError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except ModuleNotFoundError as e:
            if debug or e.name not in HEAVY:
                raise
            click.echo(f"error: {ML_EXTRA} (missing {e.name})", err=True)
            ctx.exit(2)

    return wrapper


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
