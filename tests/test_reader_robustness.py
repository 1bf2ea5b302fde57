"""Hostile and careless evidence: every reader gives one line (``error: <file>[:<line>]: <what>``, exit 2) or a
warning, never a traceback, a hang or unbounded memory. The random side of this is tests/test_fuzz_readers.py."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import TEXT_CAP, decode, is_readable_evidence, read_text, unreadable_reason
from lora_audit.evidence.run import load_run, parse_file

CONFIG = 'pretrained_model_name_or_path = "m"\ntrain_data_dir = "img"\nnetwork_dim = 32\n'
SCRIPT = "accelerate launch train_network.py --pretrained_model_name_or_path=m --network_dim 16\n"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")


def inspect(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# --- non-regular files: never opened for reading ---------------------------------------------------------------------

def _specials(tmp_path):
    fifo = tmp_path / "train.sh"
    os.mkfifo(fifo)  # opening it for reading would block forever
    zero = tmp_path / "config.toml"
    zero.symlink_to("/dev/zero")  # reading it would never end
    loop = tmp_path / "notes.md"
    loop.symlink_to(tmp_path / "notes.md")
    return {"fifo": fifo, "zero": zero, "loop": loop}


@posix_only
@pytest.mark.parametrize("which,words", [("fifo", "a FIFO (named pipe), not a regular file: not read"),
                                          ("zero", "a character device, not a regular file: not read"),
                                          ("loop", "a symlink loop")])
def test_a_non_regular_file_named_directly_is_one_line(tmp_path, which, words):
    path = _specials(tmp_path)[which]
    assert not is_readable_evidence(path) and unreadable_reason(path)
    with pytest.raises(EvidenceError) as e:
        read_text(path)
    assert str(e.value) == f"{path}: {words}"
    one_line_error(inspect(path), str(path), words)


@posix_only
def test_non_regular_files_in_a_run_folder_are_skipped(tmp_path):
    _specials(tmp_path)
    (tmp_path / "real.toml").write_text(CONFIG)
    res = inspect(tmp_path)  # would hang on the FIFO or /dev/zero if either were opened
    assert res.exit_code == 0, res.output
    assert "network_dim" in res.output and "32" in res.output
    for words in ("a FIFO (named pipe): skipped, not read", "a character device: skipped, not read",
                  "a symlink loop: skipped, not read"):
        assert words in res.output


@posix_only
def test_safetensors_fifo_and_device(tmp_path):
    fifo = tmp_path / "a.safetensors"
    os.mkfifo(fifo)
    one_line_error(inspect(fifo), "a FIFO")
    dev = tmp_path / "b.safetensors"
    dev.symlink_to("/dev/zero")
    one_line_error(inspect(dev), "a character device")


# --- size cap ---------------------------------------------------------------------------------------------------------

def test_text_evidence_over_the_cap_is_refused_unread(tmp_path):
    big = tmp_path / "train.sh"
    with open(big, "wb") as f:
        f.truncate(TEXT_CAP + 1)  # sparse: costs nothing to make, and must cost nothing to refuse
    with pytest.raises(EvidenceError, match="over the 20.0 MB limit for text evidence"):
        read_text(big)
    one_line_error(inspect(big), "limit for text evidence")


# --- encodings --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,text", [
    ("x = \"é\"\n".encode("utf-8-sig"), "x = \"é\"\n"),
    ("x = \"é\"\n".encode("utf-16"), "x = \"é\"\n"),  # BOM, little-endian
    (b"\xfe\xff" + "x = \"é\"\n".encode("utf-16-be"), "x = \"é\"\n"),
    ("x = \"é\"\n".encode("utf-16-le"), "x = \"é\"\n"),  # no BOM: told by its NUL bytes
    ("x = \"é\"\n".encode("utf-16-be"), "x = \"é\"\n"),
    ("x = \"é\"\n".encode("utf-16-le")[:-1], "x = \"é\"\ufffd"),  # cut in the middle of a code unit
    (b"\xff\xfe" + b"\x00\xd8x\x00", "\ufffdx"),  # a lone surrogate
    ("x = \"café\"\n".encode("latin-1"), "x = \"café\"\n"),
    ("set X=\u20ac\n".encode("cp1252"), "set X=\u20ac\n"),  # Windows "ANSI"
    (b"ok \xc3\xa9 \xe2\x82", "ok \u00e9 \ufffd"),  # UTF-8 with its last character cut
    (b"\x81\x8d\x8f", "\x81\x8d\x8f"),  # bytes cp1252 leaves undefined
])
def test_any_encoding_decodes(data, text):
    assert decode(data) == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_a_utf16_config_reads_like_utf8(tmp_path, encoding):
    p = tmp_path / "config.toml"
    p.write_bytes(CONFIG.encode(encoding))
    (ev,) = parse_file(p)
    assert {s.name: s.value for s in ev.settings}["network_dim"] == 32


@pytest.mark.parametrize("encoding,words", [
    ("utf-8-sig", "byte order mark, which kohya's toml reader does not skip"),
    ("utf-16", "the file is utf-16-le, not UTF-8: kohya opens it as UTF-8 and stops"),
    ("utf-16-be", "the file is utf-16-be without BOM, not UTF-8"),
    ("utf-8", None),
])
def test_a_config_kohya_cannot_read_as_utf8_is_said(tmp_path, encoding, words):
    # train_util.read_config_from_file: open(config_path, "r", encoding="utf-8") then toml.load (0.10.2)
    import toml

    p = tmp_path / "config.toml"
    p.write_bytes(CONFIG.encode(encoding))
    (ev,) = parse_file(p)
    said = [w.message for w in ev.warnings if "kohya" in w.message and ("UTF-8" in w.message)]
    if words is None:
        assert not said
        toml.loads(p.read_text(encoding="utf-8"))  # kohya's reading works
        return
    assert len(said) == 1 and words in said[0]
    with pytest.raises((UnicodeDecodeError, toml.TomlDecodeError, KeyError, AssertionError)):
        parsed = toml.loads(p.read_text(encoding="utf-8"))  # what kohya does with it
        assert "pretrained_model_name_or_path" in parsed  # a BOM renames the first key: not what was meant


@pytest.mark.parametrize("name,data", [
    ("train.sh", "accelerate launch train_network.py --network_dim $\u00e9 --output_name caf\u00e9\n"
     .encode("latin-1")),
    ("train.ps1", ("accelerate launch train_network.py --network_dim 8 --output_name caf\u00e9\n").encode("utf-16")),
    ("train.bat", "accelerate launch train_network.py --network_dim 8 --output_name caf\u00e9\r\n".encode("cp1252")),
    ("notes.md", "```bash\naccelerate launch train_network.py --network_dim 8\n```\n".encode("utf-16-le")),
    ("gui.json", json.dumps({"LoRA_type": "Standard", "network_dim": 8, "output_name": "caf\u00e9"}).encode("utf-16")),
    ("gui.json", b'{"LoRA_type": "Standard", "network_dim": 8, "output_name": "\\ud800"}'),  # escaped lone surrogate
])
def test_odd_encodings_are_read_or_one_line(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    res = inspect(p)
    assert res.exit_code in (0, 2) and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
    if res.exit_code == 2:
        one_line_error(res, str(p))


# --- depth bombs, huge integers, wrong shapes -------------------------------------------------------------------------

BOMBS = [
    ("config.toml", "network_args = " + "[" * 100_000, "nested too deeply"),
    ("config.toml", "network_args = " + "[" * 100 + "]" * 100, "nested more than 64 levels"),
    ("config.toml", "network_dim = " + "9" * 5000, "an integer with thousands of digits"),
    ("config.toml", "network_dim = " + "9" * 400, "an integer outside 64 bits"),
    ("dataset.toml", "[[datasets]]\n[[datasets.subsets]]\nnum_repeats = " + "9" * 100, "outside 64 bits"),
    ("gui.json", "[" * 100_000, "nested too deeply"),
    ("gui.json", '{"LoRA_type": "Standard", "network_dim": ' + "9" * 5000 + "}", "thousands of digits"),
    ("gui.json", '{"LoRA_type": "Standard", "network_dim": ' + "9" * 30 + "}", "outside 64 bits"),
    ("run.toml", "notes = " + "{a=" * 30_000, "invalid TOML"),
]


@pytest.mark.parametrize("name,text,words", BOMBS)
def test_bombs_are_one_line_for_the_file_and_its_folder(tmp_path, name, text, words):
    p = tmp_path / name
    p.write_text(text)
    if name == "run.toml":
        (tmp_path / "config.toml").write_text(CONFIG)
        with pytest.raises(EvidenceError, match=words):
            load_run(tmp_path)
    else:
        with pytest.raises(EvidenceError, match=words):
            parse_file(p)
        one_line_error(inspect(p), str(p), words)
    res = inspect(tmp_path)
    one_line_error(res)


@pytest.mark.parametrize("text,words", [
    ('datasets = [1, "a"]\n', "[[datasets]] #1 must be a table"),
    ('[[datasets]]\nsubsets = 5\n', "subsets of [[datasets]] #1 must be an array of tables"),
    ('[[datasets]]\nsubsets = [1]\n', "must be an array of tables"),
    ('general = 5\n[[datasets]]\n', "[general] must be a table"),
])
def test_dataset_toml_wrong_shapes(tmp_path, text, words):
    p = tmp_path / "dataset.toml"
    p.write_text(text)
    one_line_error(inspect(p), f"{p}:", words)


def test_gui_json_values_no_form_can_hold_are_warnings(tmp_path):
    p = tmp_path / "gui.json"
    p.write_text(json.dumps({"LoRA_type": ["Standard"], "network_dim": 1e400, "learning_rate": {"a": 1},
                             "max_resolution": [[512]], "pretrained_model_name_or_path": "m", "epoch": 1}))
    res = inspect(p)
    assert res.exit_code == 0, res.output
    for key in ("LoRA_type", "network_dim", "learning_rate", "max_resolution"):
        assert f"{key}: " in res.output and "the GUI's form cannot load it" in res.output


@pytest.mark.parametrize("toml,words", [
    ("notes = 5\n", "run.toml:1: notes must be text"),
    ('name = ["a"]\n', "run.toml:1: name must be text"),
    ('verdict = "meh"\n', "run.toml:1: verdict must be good, bad or unknown, not 'meh'"),
    ('verdict = ["good"]\n', "verdict must be good, bad or unknown, not a list"),
    ('arch = "sd99"\n', "run.toml:1: unknown arch 'sd99'"),
    ("dataset = 5\n", "dataset must be a table"),
    ("[dataset]\nimages = -3\n", "run.toml:2: dataset.images must be a whole number"),
    ('artifacts = "x"\n', "artifacts must be a list of tables"),
    ('[[artifacts]]\nname = "a.safetensors"\nsize = "-5MB"\n', "run.toml:3: artifacts #1 (a.safetensors): a file size "
                                                               "cannot be negative"),
    ('[[artifacts]]\nname = "a.safetensors"\nsize = "1e400GB"\n', "run.toml:3: artifacts #1 (a.safetensors): cannot "
                                                                  "read a file size from '1e400GB'"),
    ('[[artifacts]]\nname = "a.safetensors"\nsize = -5\n', "cannot be negative"),
    ('[[artifacts]]\nname = "a.safetensors"\nsize = true\n', "size must be text or a byte count"),
    ('[[artifacts]]\nname = "a.safetensors"\nsize = "99999999999999999GB"\n', "larger than any LoRA file"),
    ('[[artifacts]]\nsize = "72MB"\n', "artifacts #1 needs a name"),
])
def test_run_toml_values_out_of_range_are_one_line(tmp_path, toml, words):
    (tmp_path / "run.toml").write_text(toml)
    (tmp_path / "config.toml").write_text(CONFIG)
    with pytest.raises(EvidenceError) as e:
        load_run(tmp_path)
    assert words in str(e.value)
    one_line_error(inspect(tmp_path), words)


def test_run_toml_unknown_key_is_a_warning(tmp_path):
    (tmp_path / "run.toml").write_text('verdict = "good"\ncolour = "blue"\n')
    (tmp_path / "config.toml").write_text(CONFIG)
    run = load_run(tmp_path)
    assert run.verdict == "good"
    assert any("unknown key 'colour' in run.toml" in w.message for w in run.warnings)


def test_run_toml_size_only_run_still_works(tmp_path):
    (tmp_path / "run.toml").write_text('arch = "SD1.5"\n[[artifacts]]\nname = "last.safetensors"\nsize = "72MB"\n')
    run = load_run(tmp_path)
    assert run.params["network_dim"].origin == "inferred"


# --- safetensors named on the command line and in a folder ------------------------------------------------------------

def test_safetensors_bad_layout_through_the_cli(tmp_path):
    head = json.dumps({"a": {"dtype": "F16", "shape": [-2], "data_offsets": [0, 4]}}).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 4)
    one_line_error(inspect(p), str(p), "negative dimension")
    one_line_error(inspect(tmp_path), str(p), "negative dimension")


# --- what the fuzz suite found ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,data", [
    ("train.sh", "(" * 5000 + "\n"),
    ("notes.md", "```bash\naccelerate launch train_network.py " + "(" * 5000 + "\n```\n"),
])
def test_brackets_thousands_deep_in_a_script_are_one_line(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(data)
    with pytest.raises(EvidenceError, match="nested too deeply"):
        parse_file(p)


def test_gui_number_field_holding_1e400_is_a_warning(tmp_path):
    p = tmp_path / "gui.json"
    p.write_text(json.dumps({"LoRA_type": "Standard", "network_dim": "1e400", "pretrained_model_name_or_path": "m"}))
    (ev,) = parse_file(p)
    assert any("network_dim = '1e400' is not a int" in w.message for w in ev.warnings)


def test_run_toml_artifact_name_longer_than_a_file_name(tmp_path):
    (tmp_path / "run.toml").write_text(f'[[artifacts]]\nname = "{"x" * 300}.safetensors"\nsize = "72MB"\n')
    with pytest.raises(EvidenceError, match="run.toml:2: artifacts #1: .* is longer than a file name can be"):
        load_run(tmp_path)


def test_metadata_number_outside_64_bits_is_a_warning(tmp_path):
    head = json.dumps({"__metadata__": {"ss_network_dim": "9" * 300, "ss_network_alpha": "1"},
                       "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 4)
    (ev,) = parse_file(p)
    [w] = [w for w in ev.warnings if w.source.endswith(":ss_network_dim")]
    assert "outside 64 bits" in w.message and len(w.message) < 200


@pytest.mark.parametrize("bad_dim", [0, -5])
def test_audit_of_a_run_with_network_dim_0_or_negative_finishes(tmp_path, bad_dim):
    # the recommended sweep doubled from the smaller dim: from 0 (or below) that loop never ended, in unbounded memory
    for name, dim, verdict in (("good", 32, "good"), ("bad", bad_dim, "bad")):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "config.toml").write_text(CONFIG.replace("network_dim = 32", f"network_dim = {dim}"))
        (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    res = CliRunner().invoke(main, ["audit", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    assert "network_dim" in res.output


def test_brackets_thousands_deep_in_a_notebook_cell_are_read_as_a_bad_line(tmp_path):
    p = tmp_path / "train.ipynb"
    cell = {"cell_type": "code", "metadata": {}, "outputs": [],
            "source": ["!accelerate launch train_network.py --network_dim " + "(" * 5000 + "\n"]}
    p.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with contextlib.suppress(EvidenceError):  # one line is fine too; a RecursionError is not
        parse_file(p)


@pytest.mark.parametrize("files", [
    {"config.toml": 'resolution = "1e400,512"\n', "train.sh": "accelerate launch train_network.py --resolution 512\n"},
    {"train.sh": "accelerate launch train_network.py --network_dim " + "9" * 400 + "\n",
     "config.toml": 'network_dim = 4\ntext_encoder_lr = ["x"]\n'},
])
def test_values_no_number_can_hold_are_compared_without_overflow(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    res = inspect(tmp_path)
    assert res.exit_code == 0, res.output
    assert "conflicting evidence" in res.output or "vs" in res.output
