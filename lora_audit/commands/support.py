"""What every click command shares (click and stdlib only): one-line errors and JSON output."""

from __future__ import annotations

import json
from functools import wraps
from typing import Any

import click

from lora_audit.errors import EvidenceError
from lora_audit.format import one_line

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
            click.echo(f"error: {one_line(str(e))}", err=True)
            ctx.exit(2)
        except ModuleNotFoundError as e:
            if debug or e.name not in HEAVY:
                raise
            click.echo(f"error: {ML_EXTRA} (missing {e.name})", err=True)
            ctx.exit(2)

    return wrapper


def echo_json(data: Any, indent: int | None = 2) -> None:
    """The one JSON printer of every ``--json``: indented (``indent=None``: one line, for a line read by a
    program as it comes)."""
    click.echo(json.dumps(data, indent=indent, default=str))


def one_blas_thread() -> None:
    """The weight analysis multiplies r×r and r×n matrices, too small for BLAS threads, which only contend: on a busy
    2-core machine OpenBLAS' default threads made it 50x slower (benchmarks/bench_weights.py). Before numpy loads."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's wheels bundle OpenBLAS; torch's threads untouched
