"""Property-based fuzzing of every evidence reader: whatever the bytes, only the one-line EvidenceError escapes.

Each reader gets random bytes, mutations of a valid file (byte flips, cuts, insertions of brackets, quotes, NULs,
BOMs, 5000-digit integers) and, for the structured formats, valid syntax with values of the wrong type at every
level. The library must return Evidence or raise ``EvidenceError``; ``lora-audit inspect`` must exit 0 or 2 with
one ``error:`` line and no traceback. Deterministic (derandomized, no example database) so CI is stable; set
``HYPOTHESIS_PROFILE=fuzz-long`` (and ``FUZZ_EXAMPLES``, default 3000) for a long random search.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

import pytest
import tomlkit
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_audit.cli import main
from lora_audit.errors import EvidenceError
from lora_audit.evidence.run import load_run, parse_file

settings.register_profile("ci", max_examples=120, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "3000")), deadline=None,
                          database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = Path(__file__).parent / "data"

# --- valid seeds, one per reader ------------------------------------------------------------------------------------

SHELL = b"""#!/bin/bash
MODEL="runwayml/stable-diffusion-v1-5"
accelerate launch --num_processes=1 train_network.py \\
  --pretrained_model_name_or_path="$MODEL" --train_data_dir=./img \\
  --network_module=networks.lora --network_dim=32 --network_alpha=16 \\
  --resolution="512,512" --learning_rate=1e-4 --optimizer_type AdamW8bit \\
  --network_args "conv_dim=4" "conv_alpha=1" --max_train_epochs 10 --output_dir "$(dirname "$0")/out"
"""
BAT = b"""@echo off\r
set MODEL=runwayml/stable-diffusion-v1-5\r
accelerate launch train_network.py ^\r
  --pretrained_model_name_or_path=%MODEL% --train_data_dir=.\\img ^\r
  --network_module=networks.lora --network_dim=32 --learning_rate=1e-4 --resolution="512,512"\r
"""
PS1 = b"""$model = "runwayml/stable-diffusion-v1-5"
accelerate launch train_network.py `
  --pretrained_model_name_or_path=$model --train_data_dir=".\\img" `
  --network_module=networks.lora --network_dim=32 --learning_rate=1e-4 --resolution "512,512" `
  --output_name "$($env:USERNAME)-lora"
"""
NOTES = b"""# Run 3

Worked well. Command:

```bash
accelerate launch train_network.py --pretrained_model_name_or_path=base.safetensors \\
  --train_data_dir=img --network_module=networks.lora --network_dim 16 --learning_rate 5e-5
```

```powershell
accelerate launch train_network.py --network_dim 8 --network_module networks.lora
```
"""
NOTES_TXT = b"""run 3, worked well:

accelerate launch train_network.py --pretrained_model_name_or_path=base.safetensors --train_data_dir=img \\
  --network_module=networks.lora --network_dim 16 --learning_rate 5e-5

then dim 32 was worse.
"""
CONFIG = b"""pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"
train_data_dir = "img"

[network]
network_module = "networks.lora"
network_dim = 32
network_alpha = 16.0
network_args = ["conv_dim=4", "conv_alpha=1"]

[optimizer]
learning_rate = 1e-4
optimizer_type = "AdamW8bit"
resolution = "512,512"
"""
DATASET = b"""[general]
shuffle_caption = true
caption_extension = ".txt"
keep_tokens = 1

[[datasets]]
resolution = 512
batch_size = 4

  [[datasets.subsets]]
  image_dir = "img/10_cat"
  num_repeats = 10

  [[datasets.subsets]]
  image_dir = "img/reg"
  is_reg = true
  num_repeats = 1
"""
RUN_TOML = b"""name = "run-3"
verdict = "bad"
notes = "faces melt"
arch = "sd15"

[dataset]
images = 40
repeats = 10

[[artifacts]]
name = "last.safetensors"
size = "72MB"
"""
GUI = (DATA / "gui" / "sd15-lora-edg.json").read_bytes()
NOTEBOOK = json.dumps({"cells": [
    {"cell_type": "code", "source": ["network_dim = 32\n", "lr = 1e-4\n"], "metadata": {}, "outputs": []},
    {"cell_type": "code", "metadata": {}, "outputs": [], "source": [
        "!accelerate launch train_network.py --pretrained_model_name_or_path=m --train_data_dir=img \\\n",
        "  --network_module=networks.lora --network_dim={network_dim} --learning_rate={lr}\n"]},
    {"cell_type": "code", "metadata": {}, "outputs": [], "source": [
        "%%bash\n", "accelerate launch train_network.py --network_dim 8\n"]}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1).encode()


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


METADATA = {"ss_network_dim": "4", "ss_network_alpha": "2.0", "ss_network_module": "networks.lora",
            "ss_learning_rate": "0.0001", "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.01)",
            "ss_network_args": json.dumps({"conv_dim": "4", "conv_alpha": "1"}),
            "ss_datasets": json.dumps([{"batch_size_per_device": 2, "resolution": [512, 512],
                                        "subsets": [{"num_repeats": 10, "image_dir": "10_cat"}]}]),
            "ss_dataset_dirs": json.dumps({"10_cat": {"n_repeats": 10, "img_count": 40}}),
            "ss_base_model_version": "sd_v1", "ss_resolution": "(512, 512)",
            "modelspec.timestep_range": "0,1000", "modelspec.architecture": "stable-diffusion-v1/lora"}


def _lora_header() -> dict:
    header: dict = {"__metadata__": METADATA}
    offset = 0
    for name, shape in (("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", []),
                        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", [4, 320, 1, 1]),
                        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", [320, 4, 1, 1]),
                        ("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", []),
                        ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", [4, 768]),
                        ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", [3072, 4])):
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    return header


def _lora_bytes(header: dict | None = None) -> bytes:
    header = header or _lora_header()
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    return _safetensors(header, b"\x00\x3c" * (end // 2))  # fp16 1.0 everywhere


LORA = _lora_bytes()

# (file name, seed bytes) per reader
READERS = {
    "shell": ("train.sh", SHELL), "bat": ("train.bat", BAT), "ps1": ("train.ps1", PS1),
    "notes": ("NOTES.md", NOTES), "config_toml": ("config.toml", CONFIG), "dataset_toml": ("dataset.toml", DATASET),
    "gui_json": ("gui.json", GUI), "safetensors": ("last.safetensors", LORA),
    "notebook": ("train.ipynb", NOTEBOOK), "notes_txt": ("notes.txt", NOTES_TXT),
    "metadata_dump": ("metadata.json", json.dumps(METADATA, indent=2).encode()),
}

# --- mutations ------------------------------------------------------------------------------------------------------

HOSTILE = [b"[", b"]", b"{", b"}", b"(", b")", b'"', b"'", b"`", b"\\", b"$", b"$(", b"${", b"%", b"^", b"\x00",
           b"\n", b"\r", b"\r\n", b"=", b",", b"#", b"[[", b"]]", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf",
           b"\xed\xa0\x80", b"\xc3", b"\xe9", b"$\xc3\xa9", b"9" * 5000, b"-" + b"9" * 400, b"1e400", b"nan", b"inf",
           b"[" * 3000, b"{a=" * 500, b'{"a":' * 3000, b"$(" * 500, b"(" * 500, b'"' * 33, b"```", b"--", b" ",
           b"null", b"true", b"-5", b"\t", b"\x0b\x0c", b"\xe2\x80\xae", b"@", b"&", b"|", b";"]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_line", "replace"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            i = min(pos, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(HOSTILE) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup_line":
            end = data.find(b"\n", pos)
            line = bytes(data[pos:end + 1 if end >= 0 else len(data)])
            data[pos:pos] = line * draw(st.integers(1, 3))
        elif op == "replace":
            n = draw(st.integers(1, 12))
            data[pos:pos + n] = draw(st.sampled_from(HOSTILE))
    enc = draw(st.sampled_from([None, None, None, "utf-16", "utf-16-le", "utf-16-be", "latin-1"]))
    if enc:
        text = bytes(data).decode("utf-8", errors="replace")
        data = bytearray(text.encode(enc, errors="replace"))
        if draw(st.booleans()):
            del data[len(data) - 1:]  # cut UTF-16 in the middle of a code unit
    return bytes(data)


def inputs(seed: bytes):
    return st.one_of(mutated(seed), st.binary(max_size=300))


# Values of every type at every level (the "wrong shape" attack for TOML/JSON evidence).
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(10 ** 4000), 10 ** 4000)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["", "-5MB", "1e400GB", "sd99", "0", "-1", "None", "[", "$(x)", "a\nb", "512,512",
                              "networks.lora", "Standard", "LyCORIS/LoHa", "AdamW8bit", "72MB", "9" * 5000]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)


JSON_KINDS = ("gui_json", "notebook", "metadata_dump")


def _keys_of(seed: bytes, kind: str) -> list[str]:
    if kind in JSON_KINDS:
        return list(json.loads(seed))
    import tomllib

    def walk(d, out):
        for k, v in d.items():
            out.append(k)
            if isinstance(v, dict):
                walk(v, out)
            elif isinstance(v, list):
                for x in v:
                    if isinstance(x, dict):
                        walk(x, out)
        return out

    return walk(tomllib.loads(seed.decode()), [])


@st.composite
def wrong_shapes(draw, seed: bytes, kind: str) -> bytes:
    """The seed's own structure with some values (at any level) replaced by values of any type."""
    if kind in JSON_KINDS:
        obj = json.loads(seed)
    else:
        import tomllib

        obj = tomllib.loads(seed.decode())
    keys = _keys_of(seed, kind)

    def replace(o):
        if isinstance(o, dict):
            for k in list(o):
                if draw(st.integers(0, 3)) == 0:
                    o[k] = draw(VALUES)
                else:
                    replace(o[k])
        elif isinstance(o, list):
            for i in range(len(o)):
                if draw(st.integers(0, 3)) == 0:
                    o[i] = draw(VALUES)
                else:
                    replace(o[i])

    replace(obj)
    for _ in range(draw(st.integers(0, 3))):
        obj[draw(st.sampled_from(keys))] = draw(VALUES)
    if kind in JSON_KINDS:
        return json.dumps(obj, allow_nan=True).encode()
    return tomlkit.dumps(_tomlable(obj)).encode()


def _tomlable(o):
    """TOML has no null: drop Nones (and dicts with non-string keys cannot occur)."""
    if isinstance(o, dict):
        return {k: _tomlable(v) for k, v in o.items() if v is not None}
    if isinstance(o, list):
        return [_tomlable(v) for v in o if v is not None]
    return o


# --- the properties -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check_library(folder: Path, name: str, data: bytes) -> None:
    for old in folder.iterdir():
        old.unlink()
    path = folder / name
    path.write_bytes(data)
    for call in (lambda: parse_file(path), lambda: load_run(folder)):
        try:
            call()
        except EvidenceError as e:
            assert e.path and str(folder) in e.path, str(e)  # it names the file (or the run folder)


def _check_cli(folder: Path, name: str, data: bytes) -> None:
    for old in folder.iterdir():
        old.unlink()
    (folder / name).write_bytes(data)
    for target in (folder / name, folder):
        res = CliRunner().invoke(main, ["inspect", str(target)])
        assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert "Traceback" not in res.output
        if res.exit_code == 2:
            errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
            assert len(errors) == 1, res.output


def _folder(work: Path, kind: str) -> Path:
    d = work / kind
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.parametrize("kind", list(READERS))
def test_mutated_and_random_inputs_raise_only_evidence_error(work, kind):
    name, seed = READERS[kind]
    folder = _folder(work, kind)

    @given(data=inputs(seed))
    def run(data):
        _check_library(folder, name, data)

    run()


@pytest.mark.parametrize("kind", ["config_toml", "dataset_toml", "gui_json", "notebook", "metadata_dump", "run_toml"])
def test_wrong_types_at_every_level(work, kind):
    name, seed = READERS.get(kind) or ("run.toml", RUN_TOML)
    folder = _folder(work, kind + "-shapes")

    @given(data=wrong_shapes(seed, kind))
    def run(data):
        if kind == "run_toml":
            _check_run_toml(folder, data)
        else:
            _check_library(folder, name, data)

    run()


def _check_run_toml(folder: Path, data: bytes) -> None:
    for old in folder.iterdir():
        old.unlink()
    (folder / "run.toml").write_bytes(data)
    (folder / "config.toml").write_bytes(CONFIG)
    with contextlib.suppress(EvidenceError):
        load_run(folder)


def test_run_toml_mutations(work):
    folder = _folder(work, "run_toml")

    @given(data=inputs(RUN_TOML))
    def run(data):
        _check_run_toml(folder, data)

    run()


@given(md=st.dictionaries(st.sampled_from(sorted(METADATA) + ["ss_tag_frequency", "ss_resolution", "ss_v2",
                                                               "ss_network_dropout", "ss_sd_model_name"]),
                          VALUES.map(lambda v: json.dumps(v, allow_nan=True)) | st.text(max_size=30)
                          | st.sampled_from(HOSTILE).map(lambda b: b.decode("latin-1")), max_size=8))
def test_metadata_json_values(tmp_path_factory, md):
    """The ss_* metadata strings (JSON and Python reprs inside the header) with any content."""
    header = _lora_header()
    header["__metadata__"] = {**METADATA, **md}
    path = tmp_path_factory.getbasetemp() / "meta.safetensors"
    path.write_bytes(_lora_bytes(header))
    with contextlib.suppress(EvidenceError):
        parse_file(path)


@given(entry=st.fixed_dictionaries({}, optional={"dtype": VALUES | st.sampled_from(["F16", "F32", "BF16", "Q4"]),
                                                  "shape": VALUES | st.lists(st.integers(-3, 2 ** 70), max_size=4),
                                                  "data_offsets": VALUES | st.lists(st.integers(-3, 2 ** 70),
                                                                                    max_size=3)}))
def test_safetensors_tensor_entries(tmp_path_factory, entry):
    header = _lora_header()
    header["lora_unet_x.lora_down.weight"] = entry
    path = tmp_path_factory.getbasetemp() / "entry.safetensors"
    path.write_bytes(_safetensors(header, b"\0" * 64))
    with contextlib.suppress(EvidenceError):
        parse_file(path)


@pytest.mark.parametrize("kind", list(READERS) + ["run_toml"])
def test_inspect_cli_exits_0_or_2_with_one_line(work, kind):
    name, seed = READERS.get(kind) or ("run.toml", RUN_TOML)
    folder = _folder(work, kind + "-cli")

    @settings(max_examples=max(25, settings().max_examples // 5))  # CliRunner is slower: a fifth of the examples
    @given(data=inputs(seed))
    def run(data):
        _check_cli(folder, name, data)

    run()
