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
# torch's allocator, Python's MemoryError, safetensors (a Rust io::Error) and torch's mmap of a model file
_CPU_OOM = re.compile(r"DefaultCPUAllocator: can't allocate memory[^\n]*|\bMemoryError\b[^\n]*|"
                      r"unable to mmap [^\n]*Cannot allocate memory[^\n]*|Cannot allocate memory \((?:os error )?12\)")
# argparse: "train_network.py: error: unrecognized arguments: --network_dimm 8" (ArgumentParser.error)
_ARGPARSE = re.compile(r"^\S+\.py: error: (unrecognized arguments?|argument [^:]+|the following arguments are "
                       r"required):?\s*(.*)$")
_BASH = re.compile(r"^(?:.*?): line \d+: (.+?): (No such file or directory|command not found|Permission denied)$")

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
    """Why the run failed, in kohya's words where the log says so; None for a clean run.

    The root cause, not its wrappers: ``accelerate launch`` re-raises every failure of its child as
    ``subprocess.CalledProcessError`` (accelerate ``commands/launch.py``, ``simple_launcher``), and torch re-raises
    an exception of a DataLoader worker as ``Caught X in DataLoader worker process N`` with the original
    traceback after it; both are skipped. Looked for in order of how specific the cause is: out of memory, NaN/inf
    loss, an argparse error, the last real exception (a missing file gets its path), a kohya ERROR log record
    (kohya returns with exit code 0 after some, e.g. ``No data found``), a shell error; else the exit code."""
    lines = _lines(text)
    records = kohya_records(text)
    saved = any(r.message.startswith("model saved") for r in records)
    # an out-of-memory error caught and survived (a run that saved its LoRA and exited 0) is no failure
    oom = _out_of_memory(lines) if exit_code or not saved else None
    if oom is not None:
        return oom
    if any(_NAN.search(ln) for ln in lines):
        return "NaN/inf loss"
    bad_args = _argparse_error(lines)
    if bad_args is not None:
        return bad_args
    exc = _root_exception(lines) if exit_code else None  # an exception that ended the run; exit 0: it did not
    if exc is not None:
        # kohya often logs what it was doing as an ERROR record, then re-raises (config_util: "Invalid user
        # config", "Error on parsing TOML config file"): both say more than either
        err = next((_english(r.message) for r in reversed(records) if r.level in ("ERROR", "CRITICAL")), None)
        return f"{err} ({exc})"[:_MAX] if err and not exc.startswith("missing file") else exc
    if not exit_code and saved:
        return None
    said = _record_reason(records, exit_code)
    if said is not None:
        return said
    shell = _shell_error(lines)
    if shell is not None:
        return shell
    return _exit_reason(exit_code)


def _out_of_memory(lines: list[str]) -> str | None:
    for ln in lines:
        if _OOM.search(ln):
            return "CUDA out of memory"
    for ln in lines:
        m = _CPU_OOM.search(ln)
        if m:
            return f"CPU out of memory: {m.group(0)}"[:_MAX]
    return None


def _argparse_error(lines: list[str]) -> str | None:
    for ln in lines:
        m = _ARGPARSE.search(ln)
        if m:
            kind, what = m.group(1), m.group(2).strip()
            if kind.startswith("unrecognized"):
                return f"unknown argument: {what}"[:_MAX]
            if kind.startswith("argument "):
                return f"bad argument {kind[9:]}: {what}"[:_MAX]
            return f"missing argument: {what}"[:_MAX]
    return None


def _record_reason(records: list[Record], exit_code: int | None) -> str | None:
    for r in reversed(records):  # kohya said why and returned (exit code 0) or exited
        if r.level in ("ERROR", "CRITICAL"):
            return _english(r.message)[:_MAX]
        missing = _NOT_FOUND_RECORD.match(r.message)
        if missing and exit_code:
            return f"missing file: {missing.group(1)}"[:_MAX]
    return None


def _shell_error(lines: list[str]) -> str | None:
    for ln in lines:
        m = _BASH.match(ln)
        if m:
            what, why = m.group(1), m.group(2)
            return f"missing file: {what}" if why == "No such file or directory" else f"{why}: {what}"
    return None


def _exit_reason(exit_code: int | None) -> str | None:
    if not exit_code:
        return None
    if exit_code < 0:
        return f"killed by signal {-exit_code}" + (" (out of memory?)" if exit_code == -9 else "")
    if exit_code == 137:
        return "killed (exit code 137: SIGKILL, often the out-of-memory killer)"
    return f"exit code {exit_code}"


# -- kohya's log records ------------------------------------------------------------------------------------------
# kohya logs through rich (library.utils.setup_logging: RichHandler(console=Console(stderr=True))). Without a
# terminal, rich lays each record out as a table of the console's width (80, or $COLUMNS): time (only when it
# changed), level, the message wrapped into its column, and the source file:line at the right:
#   "2026-12-02 10:50:02 INFO     /work/kohya/cases/nope_config.to train_util.py:4741"
#   "                             ml not found.                                      "
_RECORD = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19,20}) ?(DEBUG|INFO|WARNING|ERROR|CRITICAL) +")
_SOURCE = re.compile(r" ([\w.-]+\.py:\d+) *$")
_MSG_COL = 29


@dataclass
class Record:
    level: str
    message: str
    source: str | None


def kohya_records(text: str) -> list[Record]:
    """kohya's log records, each message unwrapped into one line (a word folded at the column edge is joined)."""
    out: list[Record] = []
    cur: Record | None = None
    width = 0
    full = False
    for raw in re.split(r"\r\n|[\r\n]", text):
        m = _RECORD.match(raw)
        if m and m.end() >= _MSG_COL - 1:
            col = m.end()
            src = _SOURCE.search(raw, col)
            slot = raw[col: src.start()] if src else raw[col:]
            width = len(slot)
            cur = Record(m.group(1), slot.strip(), src.group(1) if src else None)
            out.append(cur)
            full = bool(slot) and " " not in slot and src is not None
            continue
        if cur is not None and raw.startswith(" " * _MSG_COL) and raw.strip():
            slot = raw[_MSG_COL: _MSG_COL + width] if width else raw[_MSG_COL:]
            piece = slot.strip()
            if piece:
                cur.message += ("" if full else " ") + piece
            # rich moves a word that does not fit to the next line, and folds one longer than the column: a full
            # piece without a space is the start of a folded word, joined to what follows without a space
            full = len(slot) == width and " " not in slot
            continue
        cur = None
    return out


# -- exceptions -----------------------------------------------------------------------------------------------------
_MAX = 300
_EXC = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Invalid|Exit|Warning))(?:: (.*))?$")
_WRAPPERS = ("CalledProcessError",)
_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.?$")
_NOT_FOUND_RECORD = re.compile(r"^(.+?) not found\.?$")
_PATH_IN = re.compile(r"""No such file or directory: ['"]([^'"]+)['"]|file not found[^:]*:\s*(\S.*)$""")
_MODEL_PATH = re.compile(r'pretrained_model_name_or_path "([^"]+)" is neither a valid local path')


def _root_exception(lines: list[str]) -> str | None:
    """The last exception line that is not a wrapper, as ``Name: message`` (kohya's English half)."""
    for i in range(len(lines) - 1, -1, -1):
        m = _EXC.match(lines[i])
        if not m:
            continue
        name, msg = m.group(1).rsplit(".", 1)[-1], (m.group(2) or "").strip()
        if name in _WRAPPERS or name.endswith("Warning") or _WORKER.match(msg):
            continue
        if name == "AssertionError" and not msg:  # a bare assert: the line above names the condition
            msg = _assert_source(lines, i)
        path = _PATH_IN.search(msg)
        if path:
            return f"missing file: {(path.group(1) or path.group(2)).strip()}"[:_MAX]
        model = _MODEL_PATH.search(msg)
        if model:
            return f"missing file: {model.group(1)} (pretrained_model_name_or_path)"[:_MAX]
        return f"{name}: {_english(msg)}"[:_MAX] if msg else name
    return None


def _assert_source(lines: list[str], i: int) -> str:
    for j in range(i - 1, max(i - 4, -1), -1):
        if lines[j].startswith("assert "):
            return lines[j]
    return ""


def _english(msg: str) -> str:
    """kohya writes ``English / 日本語`` (and ``...: path`` at the very end): keep the English and the path."""
    k = re.search(r"[^\x00-\x7f]", msg)
    cut = msg.rfind(" / ", 0, k.start()) if k else -1
    if cut < 0:
        return msg
    head, tail = msg[:cut].rstrip(), msg[cut:]
    path = re.search(r"[:：]\s*((?:[A-Za-z]:)?[\\/][^\s].*)$", tail)
    return head + (f": {path.group(1)}" if path else "")


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


def read_all(path: Path, head: int = 1 << 20, tail: int = 4 << 20) -> str:
    """A whole log, or its first MB and last 4 MB when it is longer (a long run's tqdm redraws): the causes of a
    failure are at its end, and what went wrong early (a kohya ERROR record) at its start."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(0)
            if size <= head + tail:
                return f.read().decode("utf-8", "replace")
            first = f.read(head)
            f.seek(size - tail)
            return (first + b"\n" + f.read()).decode("utf-8", "replace")
    except OSError:
        return ""


def _float(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) or math.isnan(v) or math.isinf(v) else None
