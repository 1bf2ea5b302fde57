"""Progress and failure reasons read from a training log (kohya's train_network.py or the builtin trainer).

Both print the same things: a tqdm bar with ``desc="steps"`` whose postfix holds ``avr_loss`` (kohya:
``NetworkTrainer.train``, ``progress_bar.set_postfix(**logs)``; builtin: ``trainer.run``), and ``epoch N/M``
lines (kohya: ``accelerator.print(f"\\nepoch {epoch+1}/{num_train_epochs}\\n")``). tqdm redraws with ``\\r``, so a
log is split on both ``\\r`` and ``\\n``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

# "steps:  40%|████      | 4/10 [00:01<00:02,  2.01it/s, avr_loss=0.123, epoch=1/2]"
_BAR = re.compile(r"^steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^<\]]*)<([^,\]]*)(?:,([^\]]*))?\]")
_EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s*$")
_LOSS = re.compile(r"\b(?:avr_loss|loss|loss/current|loss/average)\s*[=:]\s*([-+0-9.eE]+|nan|-?inf)\b", re.I)
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|MPS backend out of memory|"
                  r"HIP out of memory", re.I)
_NAN = re.compile(r"\b(?:avr_loss|loss)\s*[=:]\s*(?:nan|-?inf)\b|NaN detected|loss is nan|nan loss|"
                  r"non-finite loss", re.I)
_UNKNOWN_ARG = re.compile(r"unrecognized arguments?:\s*(.+)$")
_NO_FILE = re.compile(r"(?:FileNotFoundError|No such file or directory)[^'\"]*['\"]?([^'\"]*)['\"]?")
_BASH_MISSING = re.compile(r"^(?:.*?): line \d+: (.+?): No such file or directory$")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.*)$")


@dataclass
class Progress:
    step: int | None = None
    total_steps: int | None = None
    epoch: str | None = None
    loss: float | None = None
    eta: str | None = None


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]


def progress(text: str) -> Progress:
    """The latest step/total, epoch, loss and ETA seen in ``text``."""
    p = Progress()
    for ln in _lines(text):
        m = _BAR.match(ln)
        if m:
            p.step, p.total_steps = int(m.group(1)), int(m.group(2))
            eta = m.group(4).strip()
            p.eta = eta if eta and "?" not in eta else p.eta
            loss = _LOSS.search(m.group(5) or "")
            if loss:
                p.loss = _float(loss.group(1))
            continue
        m = _EPOCH.match(ln)
        if m:
            p.epoch = f"{m.group(1)}/{m.group(2)}"
    if p.step is not None and p.total_steps is not None and p.step >= p.total_steps:
        p.eta = "00:00"
    return p


def failure(text: str, exit_code: int | None) -> str | None:
    """Why the run failed, in a few words, where the log says so; None for a clean run.

    Looked for in order of how specific the cause is: out of memory, NaN/inf loss, unknown argument, missing file;
    else the last exception line; else the exit code."""
    lines = _lines(text)
    if any(_OOM.search(ln) for ln in lines):
        return "CUDA out of memory"
    if any(_NAN.search(ln) for ln in lines):
        return "NaN/inf loss"
    for ln in lines:
        m = _UNKNOWN_ARG.search(ln)
        if m:
            return f"unknown argument: {m.group(1).strip()}"
    for ln in lines:
        m = _BASH_MISSING.match(ln)
        if m:
            return f"missing file: {m.group(1)}"
        if "FileNotFoundError" in ln or "No such file or directory" in ln:
            m = _NO_FILE.search(ln)
            what = m.group(1).strip() if m else ""
            return f"missing file: {what}" if what else "missing file"
    if not exit_code:
        return None
    for ln in reversed(lines):
        m = _EXCEPTION.match(ln)
        if m:
            return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}"[:200]
    if exit_code < 0:
        return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


def read_tail(path: Path, size: int = 256 * 1024) -> str:
    """The end of a log: progress is in its last lines, and logs with tqdm bars grow large."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_all(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _float(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) or math.isnan(v) or math.isinf(v) else None
