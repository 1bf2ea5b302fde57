"""Writes the event files in this folder with TensorBoard's own writer (run with a Python that has `tensorboard`;
the test suite does not need it):

    python tests/data/tensorboard/make_events.py

The way kohya's runs write them: accelerate's TensorBoardTracker.log -> torch.utils.tensorboard
SummaryWriter.add_scalar -> summary.scalar(new_style=False) (a Summary.Value with simple_value) -> tensorboard's
EventFileWriter; the folder is logging_dir/<log_prefix><timestamp>/network_train. A second file holds new-style
scalars (a DT_FLOAT tensor with the "scalars" plugin metadata), what add_scalar(new_style=True) writes.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

HERE = Path(__file__).parent
STEPS = 40


def losses() -> list[float]:
    return [0.15 - 0.001 * i + 0.01 * math.sin(i) for i in range(STEPS)]


def lrs() -> list[float]:
    return [1e-4 * 0.5 * (1 + math.cos(math.pi * i / STEPS)) for i in range(STEPS)]


def write(folder: Path, new_style: bool) -> None:
    folder.mkdir(parents=True)
    w = EventFileWriter(str(folder), filename_suffix="")
    for step, (loss, lr) in enumerate(zip(losses(), lrs()), start=1):
        values = []
        for tag, v in (("loss/current", loss), ("loss/average", loss), ("lr/unet", lr), ("lr/textencoder", lr / 2)):
            if new_style:
                meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
                    plugin_name="scalars"))
                t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[v])
                values.append(summary_pb2.Summary.Value(tag=tag, tensor=t, metadata=meta))
            else:
                values.append(summary_pb2.Summary.Value(tag=tag, simple_value=v))
        for value in values:  # add_scalar writes one event per scalar
            w.add_event(event_pb2.Event(wall_time=1704110400.0 + step, step=step,
                                        summary=summary_pb2.Summary(value=[value])))
    w.add_event(event_pb2.Event(wall_time=1704110500.0, step=1, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="loss/epoch_average", simple_value=sum(losses()) / STEPS)])))
    w.close()


if __name__ == "__main__":
    for name in ("old_style", "new_style"):
        shutil.rmtree(HERE / name, ignore_errors=True)
        write(HERE / name / "logs" / "mylora20240101120000" / "network_train", new_style=name == "new_style")
