"""What a run's loss and learning-rate curves say: divergence (NaN/inf, loss rising), plateau, the lr schedule's shape.

Curves come from the run folder's TensorBoard events (``evidence.tensorboard``) or, failing those, from kohya's
printed ``avr_loss`` in a console log (``evidence.kohya_log``). Stdlib only: ``inspect`` and ``audit`` use it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from statistics import median
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence.kohya_log import find_logs, read_log
from lora_audit.evidence.tensorboard import Curves, read_curves

LOSS_TAGS = ("loss/average", "loss/current", "avr_loss")  # kohya's step-axis loss tags, best first
LR_TAGS = ("lr/unet", "lr/group0", "lr/textencoder")
# what each kohya --lr_scheduler looks like once logged (diffusers' get_scheduler / train_util.get_scheduler_fix)
SCHEDULE_SHAPES = {"constant": {"constant"}, "constant_with_warmup": {"warmup then constant", "constant"},
                   "linear": {"linear decay", "warmup then linear decay"},
                   "cosine": {"cosine decay", "warmup then cosine decay"},
                   "cosine_with_restarts": {"cosine with restarts", "cosine decay", "warmup then cosine decay"},
                   "polynomial": {"linear decay", "warmup then linear decay", "polynomial decay",
                                  "warmup then polynomial decay"}}


def _attempt_number(p: Path) -> int:
    digits = "".join(ch for ch in p.stem.rsplit("-", 1)[-1] if ch.isdigit())
    return int(digits) if digits else -1


def run_curves(folder: str | os.PathLike | None, latest_attempt_first: bool = False) -> Curves | None:
    """The curves of a run folder: its event files, else the avr_loss of its console logs, else None.
    ``latest_attempt_first``: a launched variant's ``logs/attempt-N.log`` are tried from the highest N down."""
    if folder is None or not Path(folder).is_dir():
        return None
    curves = read_curves(folder)
    if curves is not None:
        return curves
    logs = find_logs(folder)
    if latest_attempt_first:
        logs = sorted(logs, key=_attempt_number, reverse=True)
    for log in logs:
        try:
            found = read_log(log)
        except EvidenceError:
            continue
        if found is not None:
            return found
    return None


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc, q = [], 0.0, []
    for v in values:
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def loss_facts(steps: list[int], values: list[float]) -> dict[str, Any]:
    bad = next((s for s, v in zip(steps, values) if not math.isfinite(v)), None)
    finite = [v for v in values if math.isfinite(v)]
    out: dict[str, Any] = {"points": len(values), "first_step": steps[0] if steps else None,
                           "last_step": steps[-1] if steps else None, "nonfinite_step": bad}
    if len(finite) < 4:
        return out
    sm = _smooth(finite, max(1, len(finite) // 20))
    q = max(1, len(finite) // 4)
    start, end = sum(finite[:q]) / q, sum(finite[-q:]) / q
    third = sum(finite[-2 * q: -q]) / q
    out.update(start=start, end=end, minimum=min(sm), median=median(finite), change=(end - start) / start if start
               else None)
    # rising: the smoothed loss ends well above its low point and above where it started
    out["rising"] = bool(sm[-1] > 1.25 * min(sm) and end > start * 1.1)
    # plateau: the last two quarters differ by < 1% and the whole run moved < 5%
    out["plateau"] = bool(third and abs(end - third) / abs(third) < 0.01 and start and abs(end - start) / abs(start)
                          < 0.05)
    return out


def lr_shape(values: list[float]) -> dict[str, Any]:
    """The learning rate curve's shape: constant / warmup / linear, cosine or polynomial decay / restarts."""
    v = [x for x in values if math.isfinite(x)]
    if len(v) < 3:
        return {"shape": "unknown", "restarts": 0}
    hi, lo = max(v), min(v)
    if hi <= 0 or (hi - lo) <= 0.01 * hi:
        return {"shape": "constant", "restarts": 0, "max": hi}
    peak = v.index(hi)
    warm = peak > 0 and v[0] < 0.5 * hi
    tail = v[peak:]
    span = hi - lo
    restarts = sum(1 for a, b in zip(tail, tail[1:]) if b - a > 0.2 * span)
    if restarts:
        shape = "cosine with restarts"
    elif max(tail) - min(tail) <= 0.01 * hi:
        shape = "warmup then constant" if warm else "constant"
    else:
        # a quarter of the way through the decay: linear is at 75% of the range, cosine at 85%
        at = (tail[len(tail) // 4] - tail[-1]) / ((tail[0] - tail[-1]) or 1)
        shape = "cosine decay" if at > 0.81 else ("linear decay" if at > 0.65 else "polynomial decay")
        if warm:
            shape = "warmup then " + shape
    return {"shape": shape, "restarts": restarts, "max": hi, "min": lo}


def curve_facts(curves: Curves, scheduler: str | None = None) -> dict[str, Any]:
    """The facts the audit reads: loss tag, divergence, plateau, the lr schedule shape and whether it fits."""
    out: dict[str, Any] = {"files": curves.files, "tags": sorted(curves.curves)}
    tag = next((t for t in LOSS_TAGS if t in curves.curves), None)
    if tag:
        c = curves.curves[tag]
        out["loss_tag"] = tag
        out["loss"] = loss_facts(c.steps, c.values)
    nonfinite = {t: s for t, c in curves.curves.items() if t.startswith("loss")
                 and (s := next((st for st, v in zip(c.steps, c.values) if not math.isfinite(v)), None)) is not None}
    if nonfinite:
        out["nonfinite_loss"] = nonfinite
    lr_tag = next((t for t in LR_TAGS if t in curves.curves), None) or next(
        (t for t in sorted(curves.curves) if t.startswith("lr/") and "d*lr" not in t), None)
    if lr_tag:
        out["lr_tag"] = lr_tag
        out["lr"] = lr_shape(curves.curves[lr_tag].values)
        if scheduler in SCHEDULE_SHAPES and out["lr"]["shape"] != "unknown":
            out["lr"]["configured"] = scheduler
            out["lr"]["fits_configured"] = out["lr"]["shape"] in SCHEDULE_SHAPES[scheduler]
    if curves.warnings:
        out["warnings"] = curves.warnings[:5]
    return out
