"""kohya's printed ``avr_loss`` as a loss curve, for runs that kept a console log but no TensorBoard events.

``train_network.NetworkTrainer.train`` sets the step bar's postfix every step:
``progress_bar.set_postfix(**{**max_mean_logs, {"avr_loss": loss_recorder.moving_average}})``, so a captured console
shows, one bar redraw per step (separated by ``\\r``), ``steps:  40%|████      | 4/10 [00:01<00:02, 2.01it/s,
avr_loss=0.123]``. The step is the bar's ``n`` (``4/10``): the bar is ``tqdm(range(max_train_steps -
initial_step), desc="steps")``, so a resumed run's bar counts from the resumed step, not from 0 of the run. The
``validation steps`` bars (``val_avg_loss`` postfix) count validation batches, not training steps: not read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lora_audit.evidence._io import read_text
from lora_audit.evidence.tensorboard import Curves

_BAR = re.compile(r"(?<![\w ])steps:\s*\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
                  r"\[[^\]]*?(?P<post>(?:,\s*[^,=\]]+=[^,\]]*)+)\]")
_PAIR = re.compile(r"([\w/*]+)=\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)", re.I)
LOSS_KEYS = ("avr_loss",)


def parse_log_text(text: str, label: str) -> Curves:
    """Curves of the loss postfixes in a kohya console log (tqdm redraws split on ``\\r`` and newlines)."""
    curves = Curves(files=[label])
    last: dict[str, dict[int, float]] = {}
    for chunk in re.split(r"[\r\n]+", text):
        for m in _BAR.finditer(chunk):
            for key, value in _PAIR.findall(m.group("post")):
                if key in LOSS_KEYS:
                    last.setdefault(key, {})[int(m.group("n"))] = float(value)
    for key, points in last.items():
        for step in sorted(points):
            curves.add(key, step, points[step], label)
    return curves


def read_log(path: str | os.PathLike) -> Curves | None:
    """The loss curves of one log file, or None when it prints no loss postfix."""
    curves = parse_log_text(read_text(path, str(path)), str(path))
    return curves if curves.curves else None


def find_logs(folder: str | os.PathLike) -> list[Path]:
    """``*.log`` / ``*.txt`` files directly in a run folder or its ``logs/`` that look like kohya console output."""
    root = Path(folder)
    out = []
    for d in (root, root / "logs"):
        if d.is_dir() and not d.is_symlink():
            out += [p for p in sorted(d.iterdir()) if p.suffix in (".log", ".txt") and p.is_file()
                    and not p.is_symlink()]
    return out
