"""Which of the user's files hold a run's settings, from the provenance the evidence parsers recorded.

The common layout: a script (``train.sh``) runs ``accelerate launch [opts] train_network.py --config_file
config.toml [--dataset_config dataset.toml]``; the values live in the config TOML (sources ``config.toml:7``), the
dataset settings in the dataset TOML, and a few flags in the script itself. A variant is those files copied with
only the lines its values came from edited, so this module says, for each parameter, which file and line it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.model import Run

SCRIPT_KINDS = ("shell", "bat", "ps1")
_LAUNCHER_KEY = re.compile(r"[a-z][a-z0-9_]*")


def source_of(source: str | None) -> tuple[str | None, int | None]:
    """``path:line`` → (path, line); a source without a line → (path, None)."""
    if not source:
        return None, None
    head, sep, tail = source.rpartition(":")
    if sep and tail.isdigit():
        return head, int(tail)
    return source, None


def _same(a: str | None, b: str | Path | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


@dataclass
class Layout:
    script: Path | None = None  # the one shell/bat/ps1 script of the run
    script_kind: str | None = None
    config: Path | None = None  # the user's kohya config TOML (its own evidence, or what --config_file names)
    dataset: Path | None = None  # the dataset TOML (--dataset_config / dataset_config)
    launcher: list[str] = field(default_factory=list)  # accelerate launch options the user wrote, as words

    @property
    def config_from_script(self) -> bool:
        """The script runs kohya with ``--config_file``: its own flags override the config (kohya:
        train_util.read_config_from_file parses the command line into the config's namespace), so they stay
        flags."""
        return self.script is not None and self.config is not None

    def where(self, run: Run, name: str) -> tuple[str | None, int | None]:
        """('config' | 'script' | 'dataset' | None, line) for the explicit value of ``name`` in ``run``."""
        p = run.params.get(name)
        if p is None or p.origin != "explicit":
            return None, None
        path, line = source_of(p.source)
        for kind, f in (("config", self.config), ("dataset", self.dataset), ("script", self.script)):
            if f is not None and _same(path, f):
                return kind, line
        return None, None


def layout_of(run: Run) -> Layout:
    lay = Layout()
    scripts = [e for e in run.evidence if e.kind in SCRIPT_KINDS]
    if len(scripts) == 1:
        lay.script, lay.script_kind = Path(scripts[0].path), scripts[0].kind
    configs = [e for e in run.evidence if e.kind == "config_toml"]
    others = [e for e in run.evidence if e.kind in ("notes", "gui_json", "notebook")]
    if configs and not scripts and not others:
        lay.config = Path(configs[0].path)
    cf = run.params.get("config_file")
    if lay.config is None and lay.script is not None and cf is not None and cf.origin == "explicit":
        lay.config = _named_file(run, str(cf.value))
    ds = run.params.get("dataset_config")
    if ds is not None and ds.origin == "explicit":
        lay.dataset = _named_file(run, str(ds.value))
    if lay.script is not None:
        lay.launcher = _launcher_words(lay.script, run)
    return lay


def _named_file(run: Run, value: str) -> Path | None:
    """The file a ``--config_file``/``dataset_config`` value names, as the parser resolved it: the source file of
    the values read from it; else the path itself, relative to the run folder or as given."""
    name = Path(value).name
    for p in run.params.values():
        path, _ = source_of(p.source)
        if path and Path(path).name == name and Path(path).suffix.lower() == ".toml" and Path(path).is_file():
            return Path(path)
    base = Path(run.path) if run.path else None
    if base is not None and base.is_file():
        base = base.parent
    for cand in ([base / value] if base is not None else []) + [Path(value)]:
        try:
            if cand.is_file():
                return cand
        except (OSError, ValueError):
            continue
    if base is not None and base.is_dir():
        matches = sorted(base.rglob(name))
        if matches:
            return matches[0]
    return None


def _launcher_words(script: Path, run: Run) -> list[str]:
    """The ``accelerate launch`` options of the script's training command (``--num_cpu_threads_per_process 1``,
    ``--num_processes 2``, ``--mixed_precision fp16``, ``--gpu_ids 0,1``, ``--multi_gpu``...), as words."""
    from lora_audit.errors import EvidenceError
    from lora_audit.evidence.parse import parse_file

    try:
        evidences = parse_file(script)
    except (EvidenceError, OSError, ValueError, RecursionError):
        return []
    want = run.value("training_script")
    ev = next((e for e in evidences if e.script == want), evidences[0] if evidences else None)
    acc: dict[str, Any] = (ev.facts.get("accelerate") or {}) if ev is not None else {}
    words: list[str] = []
    for key, value in acc.items():
        if not isinstance(key, str) or not _LAUNCHER_KEY.fullmatch(key):
            continue
        if value is True:
            words.append(f"--{key}")
        elif isinstance(value, (str, int, float)) and value is not False:
            words += [f"--{key}", str(value)]
    return words
