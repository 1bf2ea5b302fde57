"""kohya's TensorBoard logs as loss / learning-rate curves, read without TensorFlow or tensorboard.

Where they are: ``train_util.prepare_accelerator`` makes ``logging_dir/<log_prefix><%Y%m%d%H%M%S>`` the accelerate
project dir and ``train_util.init_trackers(accelerator, args, "network_train")`` starts accelerate's
``TensorBoardTracker``, which writes ``<that dir>/network_train/events.out.tfevents.*`` (``log_tracker_name``
renames the last folder). Tags (``train_network.NetworkTrainer.generate_step_logs`` and the training loop):
``loss/current``, ``loss/average``, ``lr/unet``, ``lr/textencoder``, ``lr/group<i>``, ``lr/d*lr/...``,
``max_norm/*``, ``norm/*``, at the global step; ``loss/epoch_average`` and ``loss/validation/epoch_*`` at the
*epoch* (``epoch_logging`` passes the epoch as the step); ``loss/validation/step_*`` at ``global_step + val_step``.

Why a reader of our own: ``tensorboard`` and ``tbparse`` pull in TensorFlow-sized dependencies (protobuf, grpc,
numpy, pandas) that the light install (``inspect``/``audit``) must not need, and the format is small: TFRecord
(``uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data)``) holding ``Event`` protobufs,
whose ``Summary.Value`` carries a ``simple_value`` float (what accelerate's ``add_scalar`` writes) or a ``tensor``
(TensorBoard's new-style scalars). The protobuf wire format is decoded by hand, only the fields used here.
Damaged records (bad CRC, cut tail: a run that is still writing) end the read of that file with a warning.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import open_regular

MAX_EVENT_BYTES = 512 * 1024 * 1024  # per file; a kohya run's scalars are a few MB
MAX_RECORD = 64 * 1024 * 1024
CHECK_DATA_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 4  # run folder / logs / <prefix><timestamp> / network_train / events...

_CRC_TABLE: list[int] = []


def _crc_table() -> list[int]:
    if not _CRC_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
            _CRC_TABLE.append(c)
    return _CRC_TABLE


def crc32c(data: bytes) -> int:
    table, c = _crc_table(), 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        x = b[i]
        i += 1
        result |= (x & 0x7F) << shift
        if not x & 0x80:
            return result, i
        shift += 7


def fields(b: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message: varint -> int, 64/32-bit -> bytes, length -> bytes."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        v: int | bytes
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i: i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i: i + n], i + n
        elif wt == 5:
            v, i = b[i: i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        if i > len(b):
            raise ValueError("truncated field")
        out.append((num, wt, v))
    return out


# tensorflow DataType -> struct format of one value in tensor_content
_DT = {1: "<f", 2: "<d", 3: "<i", 9: "<q"}


def _tensor_scalar(b: bytes) -> float | None:
    """A TensorProto holding one number (TensorBoard's new-style scalar summary)."""
    dtype, content = 0, None
    vals: dict[int, Any] = {}
    for num, wt, v in fields(b):
        if num == 1 and wt == 0:
            dtype = v
        elif num == 4 and wt == 2:
            content = v
        elif num in (5, 6, 7, 10):
            vals.setdefault(num, v)
    if content and dtype in _DT and len(content) >= struct.calcsize(_DT[dtype]):
        return float(struct.unpack_from(_DT[dtype], content)[0])
    if 5 in vals:  # float_val, packed or not
        v = vals[5]
        return float(struct.unpack_from("<f", v)[0]) if isinstance(v, bytes) and len(v) >= 4 else None
    if 6 in vals:
        v = vals[6]
        return float(struct.unpack_from("<d", v)[0]) if isinstance(v, bytes) and len(v) >= 8 else None
    for n in (7, 10):  # int_val / int64_val: packed bytes or a varint
        if n in vals:
            v = vals[n]
            return float(_varint(v, 0)[0] if isinstance(v, bytes) else v)
    return None


def parse_event(b: bytes) -> tuple[int, float, list[tuple[str, float]]]:
    """(step, wall_time, [(tag, value)]) of one Event's scalar summaries."""
    step, wall, values = 0, 0.0, []
    for num, wt, v in fields(b):
        if num == 1 and wt == 1:
            wall = struct.unpack("<d", v)[0]
        elif num == 2 and wt == 0:
            step = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 5 and wt == 2:  # Summary
            for snum, swt, sv in fields(v):
                if snum != 1 or swt != 2:
                    continue
                tag, value = None, None
                for vnum, vwt, vv in fields(sv):
                    if vnum == 1 and vwt == 2:
                        tag = vv.decode("utf-8", "replace")
                    elif vnum == 2 and vwt == 5:
                        value = struct.unpack("<f", vv)[0]
                    elif vnum == 8 and vwt == 2:
                        value = _tensor_scalar(vv)
                if tag is not None and value is not None:
                    values.append((tag, value))
    return step, wall, values


@dataclass
class Curve:
    tag: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "values": [v if math.isfinite(v) else str(v) for v in self.values],
                "source": self.source}


@dataclass
class Curves:
    curves: dict[str, Curve] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, tag: str, step: int, value: float, source: str) -> None:
        c = self.curves.setdefault(tag, Curve(tag, source=source))
        c.steps.append(step)
        c.values.append(value)

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "warnings": self.warnings,
                "tags": {t: c.to_json() for t, c in sorted(self.curves.items())}}


def read_records(path: str | os.PathLike, warnings: list[str]) -> list[bytes]:
    label = str(path)
    with open_regular(path, label) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_EVENT_BYTES:
            raise EvidenceError(f"event file of {size} bytes is over the {MAX_EVENT_BYTES}-byte limit", label)
        data = f.read(size)
    # the data checksum costs a pure-Python CRC over every byte (~1 s per 3 MB); a long run's file is checked by
    # its length checksums (and the protobuf decoding) only
    check_data = size <= CHECK_DATA_BYTES
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if i + 12 > len(data):
            warnings.append(f"{label}: cut record at byte {i} (still being written?)")
            break
        header = data[i: i + 8]
        (n,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8: i + 12])
        if hcrc != masked_crc(header):
            if not out and i == 0:
                raise EvidenceError("not a TensorBoard event file (TFRecord length checksum fails)", label)
            warnings.append(f"{label}: bad record checksum at byte {i}; the rest is skipped")
            break
        if n > MAX_RECORD or i + 12 + n + 4 > len(data):
            warnings.append(f"{label}: cut record at byte {i} (still being written?)")
            break
        body = data[i + 12: i + 12 + n]
        (dcrc,) = struct.unpack("<I", data[i + 12 + n: i + 16 + n])
        if check_data and dcrc != masked_crc(body):
            warnings.append(f"{label}: bad data checksum at byte {i}; the rest is skipped")
            break
        out.append(body)
        i += 16 + n
    return out


def read_event_file(path: str | os.PathLike, curves: Curves | None = None) -> Curves:
    curves = curves or Curves()
    label = str(path)
    curves.files.append(label)
    for k, rec in enumerate(read_records(path, curves.warnings)):
        try:
            step, _, values = parse_event(rec)
        except (ValueError, struct.error, IndexError) as e:
            curves.warnings.append(f"{label}: record {k} is not an Event protobuf ({e})")
            continue
        for tag, value in values:
            curves.add(tag, step, value, label)
    return curves


def find_event_files(folder: str | os.PathLike) -> list[Path]:
    """``events.out.tfevents.*`` under a run folder, at most MAX_DEPTH folders down, oldest run first."""
    root = Path(folder)
    found: list[Path] = []
    if not root.is_dir():
        return found
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for e in entries:
            if e.is_symlink():
                continue
            if e.is_dir() and depth < MAX_DEPTH and not e.name.startswith("."):
                stack.append((e, depth + 1))
            elif e.is_file() and e.name.startswith("events.out.tfevents."):
                found.append(e)
    return sorted(found, key=lambda p: (str(p.parent), p.name))


def read_curves(folder: str | os.PathLike) -> Curves | None:
    """Every event file of a run folder merged into one set of curves (a resumed run continues the steps), or
    None when the folder has no event file. Points of one tag are ordered by step, the last write of a step wins."""
    files = find_event_files(folder)
    if not files:
        return None
    curves = Curves()
    for f in files:
        try:
            read_event_file(f, curves)
        except EvidenceError as e:  # one unreadable file among a run's logs: say so, keep the others
            curves.warnings.append(str(e))
    for c in curves.curves.values():
        last = {s: v for s, v in zip(c.steps, c.values)}
        c.steps = sorted(last)
        c.values = [last[s] for s in c.steps]
    return curves
