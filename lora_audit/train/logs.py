"""What kohya's ``--logging_dir`` holds: per-step losses and learning rates, as CSV and (if installed) TensorBoard.

kohya (``train_util.prepare_accelerator``, ``init_trackers``) logs to ``<logging_dir>/<log_prefix><YYYYmmddHHMMSS>/
<log_tracker_name or network_train>/``; the step logs are ``loss/current``, ``loss/average`` and ``lr/<group>``
(``generate_step_logs``), and ``loss/epoch_average`` at each epoch's end.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from types import SimpleNamespace


class LossRecorder:
    """``train_util.LossRecorder``: the mean of the latest loss at each step index of an epoch."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.total = 0.0

    def add(self, epoch: int, step: int, loss: float) -> None:
        if epoch == 0:
            self.losses.append(loss)
        else:
            while len(self.losses) <= step:
                self.losses.append(0.0)
            self.total -= self.losses[step]
            self.losses[step] = loss
        self.total += loss

    @property
    def moving_average(self) -> float:
        return self.total / len(self.losses) if self.losses else 0.0


class StepLog:
    """loss.csv (always, when logging) and TensorBoard events (when tensorboard is installed)."""

    def __init__(self, args: SimpleNamespace, base: Path, lr_names: list[str]):
        root = Path(str(args.logging_dir)).expanduser()
        root = root if root.is_absolute() else base / root
        self.dir = root / ((args.log_prefix or "") + time.strftime("%Y%m%d%H%M%S", time.localtime())) / (
            args.log_tracker_name or "network_train")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lr_names = lr_names
        # held open for the whole training (a row per step) and closed by close(): no with-block can span that
        self._file = open(self.dir / "loss.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        self._csv.writerow(["step", "epoch", "loss/current", "loss/average"] + [f"lr/{n}" for n in lr_names])
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir))
        except ImportError:
            pass

    def step(self, step: int, epoch: int, loss: float, average: float, lrs: list[float]) -> None:
        self._csv.writerow([step, epoch, f"{loss:.6g}", f"{average:.6g}"] + [f"{lr:.6g}" for lr in lrs])
        self._file.flush()
        if self._tb is not None:
            self._tb.add_scalar("loss/current", loss, step)
            self._tb.add_scalar("loss/average", average, step)
            for name, lr in zip(self.lr_names, lrs):
                self._tb.add_scalar(f"lr/{name}", lr, step)

    def epoch(self, step: int, average: float) -> None:
        if self._tb is not None:
            self._tb.add_scalar("loss/epoch_average", average, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
