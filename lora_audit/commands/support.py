"""What every click command shares (click and stdlib only): one-line errors and JSON output."""

from __future__ import annotations

import json
import unicodedata
from functools import wraps
from typing import Any

import click

from lora_audit.errors import EvidenceError

ML_EXTRA = ("this command needs the ml extra: pip install torch==2.13.0 (the CPU wheel; pin it first), then "
            "pip install 'lora-audit[ml]'")
HEAVY = ("torch", "diffusers", "transformers", "peft", "PIL", "numpy", "safetensors")


def one_line(text: str) -> str:
    """``text`` on one line, whatever a file name or value in it holds: line breaks and other control or format
    characters (a terminal escape included) are shown escaped (``\\n``, ``\\x1b``); backslashes stay as written."""
    return "".join(ch if ch == " " or unicodedata.category(ch) not in _INVISIBLE
                   else {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or
                   (f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                    else f"\\U{ord(ch):08x}")
                   for ch in text)


_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


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
