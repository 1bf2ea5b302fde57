"""Loss / lr curves: kohya's TensorBoard event files (read without tensorboard) and printed avr_loss.

Neither tensorboard nor tbparse is installed here, so the event files are written by a small TFRecord + protobuf
encoder below, the way ``torch.utils.tensorboard.SummaryWriter.add_scalar`` (what accelerate's TensorBoardTracker
calls) writes them: a ``file_version`` event first, then one Event per scalar with ``simple_value``.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.curves import curve_facts, run_curves
from lora_audit.evidence.kohya_log import parse_log_text
from lora_audit.evidence.tensorboard import crc32c, masked_crc, read_curves


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, wt: int, payload: bytes | int) -> bytes:
    key = _varint(num << 3 | wt)
    if wt == 0:
        return key + _varint(payload)  # type: ignore[arg-type]
    if wt == 2:
        return key + _varint(len(payload)) + payload  # type: ignore[arg-type]
    return key + payload  # type: ignore[operator]


def event(step: int, values: dict[str, float] | None = None, tensor: bool = False, version: bool = False) -> bytes:
    b = _field(1, 1, struct.pack("<d", 1704110400.0 + step)) + _field(2, 0, step)
    if version:
        return b + _field(3, 2, b"brain.Event:2")
    summary = b""
    for tag, v in (values or {}).items():
        if tensor:  # TensorBoard's new-style scalar: a DT_FLOAT TensorProto with float_val
            val = _field(1, 2, tag.encode()) + _field(8, 2, _field(1, 0, 1) + _field(2, 2, b"")
                                                       + _field(5, 2, struct.pack("<f", v)))
        else:
            val = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", v))
        summary += _field(1, 2, val)
    return b + _field(5, 2, summary)


def record(data: bytes) -> bytes:
    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", masked_crc(n)) + data + struct.pack("<I", masked_crc(data))


def kohya_events(run: Path, losses: list[float], lrs: list[float], tensor: bool = False) -> Path:
    """logging_dir/<log_prefix><timestamp>/network_train/events.out.tfevents.* as kohya + accelerate lay it out."""
    d = run / "logs" / "mylora20240101120000" / "network_train"
    d.mkdir(parents=True)
    body = record(event(0, version=True))
    for step, (loss, lr) in enumerate(zip(losses, lrs), start=1):
        body += record(event(step, {"loss/current": loss, "loss/average": loss, "lr/unet": lr,
                                    "lr/textencoder": lr / 2}, tensor))
    body += record(event(1, {"loss/epoch_average": sum(losses) / len(losses)}))  # epoch_logging: step = epoch
    f = d / "events.out.tfevents.1704110400.host.1234.0"
    f.write_bytes(body)
    return f


def run_folder(tmp_path: Path, name: str = "r1", scheduler: str = "cosine") -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "config.toml").write_text(f'pretrained_model_name_or_path = "x.safetensors"\nlr_scheduler = "{scheduler}"\n'
                                     'network_dim = 8\nlogging_dir = "logs"\n')
    return run


N = 60
COSINE = [1e-4 * 0.5 * (1 + math.cos(math.pi * i / N)) for i in range(N)]
FALLING = [0.2 - 0.001 * i + 0.002 * math.sin(i) for i in range(N)]


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)


@pytest.mark.parametrize("tensor", [False, True])
def test_reads_kohya_tags(tmp_path, tensor):
    run = run_folder(tmp_path)
    kohya_events(run, FALLING, COSINE, tensor=tensor)
    c = read_curves(run)
    assert set(c.curves) == {"loss/current", "loss/average", "lr/unet", "lr/textencoder", "loss/epoch_average"}
    assert c.curves["loss/current"].steps == list(range(1, N + 1))
    assert c.curves["loss/current"].values == pytest.approx(FALLING, rel=1e-6)
    assert c.curves["loss/epoch_average"].steps == [1]
    assert not c.warnings


def test_inspect_json_exposes_curves_and_facts(tmp_path):
    run = run_folder(tmp_path, scheduler="constant")
    kohya_events(run, FALLING[:30] + [float("nan")] * 30, COSINE)
    r = CliRunner().invoke(main, ["inspect", "--json", str(run)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["runs"][0]
    tags = data["curves"]["tags"]
    assert tags["lr/unet"]["steps"][:3] == [1, 2, 3]
    assert tags["loss/average"]["values"][30] == "nan"
    f = data["curve_facts"]
    assert f["loss"]["nonfinite_step"] == 31
    assert f["lr"]["shape"] == "cosine decay"
    assert f["lr"]["configured"] == "constant" and f["lr"]["fits_configured"] is False
    text = CliRunner().invoke(main, ["inspect", str(run)]).output
    assert "NaN/inf from step 31" in text and "does NOT fit" in text


def test_rising_loss_and_fitting_schedule(tmp_path):
    run = run_folder(tmp_path)
    kohya_events(run, [0.1 + 0.01 * i for i in range(N)], COSINE)
    f = curve_facts(run_curves(run), "cosine")
    assert f["loss"]["rising"] is True and f["loss"]["plateau"] is False
    assert f["lr"]["fits_configured"] is True


def test_damaged_tail_keeps_the_rest(tmp_path):
    run = run_folder(tmp_path)
    f = kohya_events(run, FALLING, COSINE)
    f.write_bytes(f.read_bytes()[:-7])  # a run still writing
    c = read_curves(run)
    assert len(c.curves["loss/current"].steps) == N and c.warnings and "cut record" in c.warnings[0]
    f.write_bytes(b"not an event file at all, nope")
    c = read_curves(run)
    assert not c.curves and "not a TensorBoard event file" in c.warnings[0]


LOG = ("steps:   0%|          | 0/4 [00:00<?, ?it/s]\r"
       "steps:  25%|██▌       | 1/4 [00:01<00:03,  1.10s/it, avr_loss=0.151]\r"
       "steps:  50%|█████     | 2/4 [00:02<00:02,  1.05s/it, avr_loss=0.142]\n"
       "validation steps:  50%|█████     | 1/2 [00:00<00:00, 5.0it/s, val_avg_loss=0.9, timestep=500]\n"
       "steps:  75%|███████▌  | 3/4 [00:03<00:01,  1.02s/it, Keys Scaled=2, Average key norm=0.3, avr_loss=0.133]\r"
       "steps: 100%|██████████| 4/4 [00:04<00:00,  1.01s/it, avr_loss=nan]\n")


def test_kohya_printed_avr_loss():
    c = parse_log_text(LOG, "train.log")
    assert list(c.curves) == ["avr_loss"]
    assert c.curves["avr_loss"].steps == [1, 2, 3, 4]
    assert c.curves["avr_loss"].values[:3] == [0.151, 0.142, 0.133] and math.isnan(c.curves["avr_loss"].values[3])


def test_log_used_when_no_event_file(tmp_path):
    run = run_folder(tmp_path)
    (run / "train.log").write_text(LOG, encoding="utf-8")
    r = CliRunner().invoke(main, ["inspect", "--json", str(run)])
    data = json.loads(r.output)["runs"][0]
    assert data["curves"]["tags"]["avr_loss"]["steps"] == [1, 2, 3, 4]
    assert data["curve_facts"]["loss"]["nonfinite_step"] == 4


def test_no_curves_no_key(tmp_path):
    run = run_folder(tmp_path)
    data = json.loads(CliRunner().invoke(main, ["inspect", "--json", str(run)]).output)["runs"][0]
    assert "curves" not in data


def _verdict(run: Path, verdict: str) -> None:
    (run / "run.toml").write_text(f'name = "{run.name}"\nverdict = "{verdict}"\n')


def test_audit_findings_from_curves(tmp_path):
    good = run_folder(tmp_path, "good", scheduler="cosine")
    bad = run_folder(tmp_path, "bad", scheduler="constant")
    (bad / "config.toml").write_text((bad / "config.toml").read_text().replace("network_dim = 8", "network_dim = 16"))
    _verdict(good, "good")
    _verdict(bad, "bad")
    kohya_events(good, FALLING, COSINE)
    # the bad run: 10x the loss scale, then NaN from step 41; its lr is cosine although lr_scheduler says constant
    kohya_events(bad, [10 * v for v in FALLING[:40]] + [float("nan")] * 20, COSINE)
    r = CliRunner().invoke(main, ["audit", "--json", str(good), str(bad)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    ids = {f["id"]: f for f in data["pairs"][0]["findings"]}
    assert ids["loss-nonfinite"]["level"] == "primary" and "step 41" in ids["loss-nonfinite"]["title"]
    ratio = float(ids["loss-scale-differs"]["title"].split("differs ")[1].split("x")[0])
    assert 9 < ratio < 12  # medians: all of good's 60 points, bad's 40 finite ones
    assert ids["lr-schedule-mismatch"]["title"].startswith("bad's logged learning rate looks like cosine decay")
    assert data["dynamics"]["bad"]["curves"]["loss"]["nonfinite_step"] == 41
    out = tmp_path / "report.md"
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = out.read_text()
    assert "## Training dynamics" in md
    section = md.split("## Training dynamics", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| **bad**"))
    assert "| 41 |" in row and "lr_scheduler constant does not fit" in row


def test_audit_without_curves_has_no_dynamics_section(tmp_path):
    good, bad = run_folder(tmp_path, "good"), run_folder(tmp_path, "bad", scheduler="constant")
    _verdict(good, "good")
    _verdict(bad, "bad")
    out = tmp_path / "report.md"
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Training dynamics" not in out.read_text()


def test_garbage_records_never_raise(tmp_path):
    """Valid TFRecord framing around random bytes: warnings or nothing, never an exception."""
    import random

    rnd = random.Random(0)
    run = run_folder(tmp_path)
    d = run / "logs" / "x" / "network_train"
    d.mkdir(parents=True)
    body = b"".join(record(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 80)))) for _ in range(300))
    body += record(event(5, {"loss/current": 0.5}))
    (d / "events.out.tfevents.1.host.1.0").write_bytes(body)
    c = read_curves(run)
    assert c.curves["loss/current"].steps[-1] == 5


@pytest.mark.parametrize("style", ["old_style", "new_style"])
def test_event_files_written_by_tensorboard_itself(style):
    """tests/data/tensorboard/: written by TensorBoard's EventFileWriter and protobuf classes (make_events.py), not by
    the encoder above: simple_value scalars (what kohya's runs write) and new-style tensor scalars."""
    run = Path(__file__).parent / "data" / "tensorboard" / style
    c = read_curves(run)
    assert not c.warnings
    expected = [0.15 - 0.001 * i + 0.01 * math.sin(i) for i in range(40)]
    assert c.curves["loss/current"].steps == list(range(1, 41))
    assert c.curves["loss/current"].values == pytest.approx(expected, rel=1e-6)
    assert curve_facts(c, "cosine")["lr"]["fits_configured"] is True
    assert c.curves["loss/epoch_average"].steps == [1]


def test_real_kohya_logs():
    """Logs captured from real sd-scripts runs (tests/data/kohya_logs, see its README)."""
    from lora_audit.evidence.kohya_log import read_log

    logs = Path(__file__).parent / "data" / "kohya_logs"
    ok = read_log(logs / "ok.log")
    assert ok.curves["avr_loss"].steps == [1, 2] and all(math.isfinite(v) for v in ok.curves["avr_loss"].values)
    nan = curve_facts(read_log(logs / "nan_loss.log"))
    assert nan["loss_tag"] == "avr_loss" and nan["loss"]["nonfinite_step"] == 2
    assert read_log(logs / "missing_model.log") is None  # no step bar: no curve
