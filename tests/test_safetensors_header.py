"""LoRA .safetensors files as evidence: metadata, shapes, alphas, and bad files, read from the header only."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest
from loras import DROP, header_length, kohya_metadata, minimal_metadata, write_lora

from lora_audit.errors import EvidenceError
from lora_audit.evidence.run import load_run
from lora_audit.evidence.safetensors_header import parse_safetensors
from lora_audit.kohya.metadata_keys import decode, network_args, parse_optimizer, read_metadata


def _settings(ev):
    out = {}
    for s in ev.settings:
        out.setdefault(s.name, []).append(s)
    return out


def _one(ev, name):
    [s] = _settings(ev)[name]
    return s


# --- metadata --------------------------------------------------------------------------------------------------

def test_sd15_with_full_metadata(tmp_path):
    path = write_lora(tmp_path / "perfect.safetensors", "sd15", 4, "fp16", metadata=kohya_metadata("sd15", 4, 2))
    ev = parse_safetensors(path)
    assert ev.kind == "safetensors" and ev.path == str(path) and not ev.complete
    assert ev.warnings == []
    values = {s.name: s.value for s in ev.settings}
    assert values["learning_rate"] == 1e-4 and isinstance(values["learning_rate"], float)
    assert values["text_encoder_lr"] == [5e-05]  # typed as --text_encoder_lr (nargs="*") is
    assert values["network_dim"] == 4 and values["network_alpha"] == 2.0
    assert values["resolution"] == "512,512"
    assert values["train_batch_size"] == 4
    assert values["shuffle_caption"] is True and values["keep_tokens"] == 2
    assert values["max_token_length"] == 225
    assert values["multires_noise_iterations"] == 6 and values["adaptive_noise_scale"] == 0.00357
    assert values["mixed_precision"] == "fp16" and values["seed"] == 42
    assert values["optimizer_type"] == "AdamW8bit"
    assert values["optimizer_args"] == ["weight_decay=0.01", "betas=0.9,0.99"]
    assert values["clip_skip"] is None  # "None": kohya's default
    assert values["num_repeats"] == 10
    assert values["save_precision"] == "fp16"
    dim = _one(ev, "network_dim")  # the shapes agree, so only the explicit one is kept
    assert (dim.origin, dim.source) == ("explicit", f"{path}:ss_network_dim")
    epochs = _one(ev, "max_train_epochs")
    assert epochs.origin == "inferred" and "ss_num_epochs" in epochs.note
    assert ev.facts["arch"] == "sd15" and "768" in ev.facts["arch_reason"]
    assert ev.facts["modules"] == {"te": 72, "unet": 192}
    assert ev.facts["epoch"] == 10 and ev.facts["model_hash"] == "0" * 64
    assert ev.facts["file_size"] == os.path.getsize(path)


def test_no_metadata_still_gives_dim_alpha_arch(tmp_path):
    path = write_lora(tmp_path / "bare.safetensors", "sdxl", 2, "bf16", network_alpha=1)
    ev = parse_safetensors(path)
    dim, alpha = _one(ev, "network_dim"), _one(ev, "network_alpha")
    assert (dim.value, dim.origin) == (2, "inferred") and "986 modules" in dim.note
    assert alpha.value == 1.0 and alpha.origin == "inferred"
    assert _one(ev, "save_precision").value == "bf16"
    assert _one(ev, "network_kind").value == "LoRA"
    assert _one(ev, "network_module").value == "networks.lora"
    assert _one(ev, "network_train_unet_only").value is False
    assert ev.facts["arch"] == "sdxl" and "2048" in ev.facts["arch_reason"]
    assert ev.facts["modules"] == {"te1": 72, "te2": 192, "unet": 722}
    assert ev.facts["metadata"] == {}


def test_kohya_no_metadata_style(tmp_path):
    # --no_metadata keeps SS_METADATA_MINIMUM_KEYS, modelspec.* and the sshs_* hashes
    md = minimal_metadata("sdxl", 1, 0.5, network_args={"conv_dim": "1", "conv_alpha": "1", "dropout": None})
    path = write_lora(tmp_path / "min.safetensors", "sdxl", 1, "fp16", text_encoder=False, conv_dim=1,
                      network_alpha=0.5, conv_alpha=1, metadata=md)
    ev = parse_safetensors(path)
    assert _one(ev, "network_dim").origin == "explicit"
    assert _one(ev, "network_alpha").value == 0.5
    assert _one(ev, "network_args").value == ["conv_dim=1", "conv_alpha=1"]  # kohya's own dropout key left out
    assert _one(ev, "conv_dim").value == 1 and _one(ev, "conv_dim").origin == "explicit"
    assert _one(ev, "network_kind").value == "LoCon"
    assert _one(ev, "network_train_unet_only").value is True
    assert _one(ev, "output_name").origin == "inferred"  # from modelspec.title
    assert ev.facts["arch"] == "sdxl" and ev.warnings == []


def test_metadata_and_shapes_disagree(tmp_path):
    md = minimal_metadata("sd15", 32, 16)
    path = write_lora(tmp_path / "odd.safetensors", "sd15", 8, "fp16", network_alpha=4, metadata=md)
    ev = parse_safetensors(path)
    dims = {(s.origin, s.value) for s in _settings(ev)["network_dim"]}
    assert dims == {("explicit", 32), ("inferred", 8)}
    assert any("ss_network_dim says network_dim 32 but the tensors say 8" in w.message for w in ev.warnings)
    run = load_run(path)  # the merge names both sources
    [conflict] = [c for c in run.conflicts if c.param == "network_dim"]
    assert {v.value for v in conflict.values} == {32, 8}


def test_ss_datasets(tmp_path):
    datasets = [{"is_dreambooth": True, "batch_size_per_device": 2, "num_train_images": 406, "num_reg_images": 0,
                 "resolution": [1024, 1024], "enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 2048,
                 "tag_frequency": {}, "bucket_info": None, "resize_interpolation": None,
                 "subsets": [{"img_count": 203, "num_repeats": 1, "shuffle_caption": False, "keep_tokens": 0,
                              "image_dir": "a"},
                             {"img_count": 203, "num_repeats": 2, "shuffle_caption": False, "keep_tokens": 0,
                              "image_dir": "b"}]}]
    md = kohya_metadata("sdxl", 1, 1, ss_datasets=json.dumps(datasets), ss_resolution=DROP,
                        ss_batch_size_per_device=DROP, ss_shuffle_caption=DROP, ss_keep_tokens=DROP)
    reading = read_metadata(md, "x.safetensors")
    values = {s.name: s for s in reading.settings}
    assert values["train_batch_size"].value == 2 and values["train_batch_size"].source == "x.safetensors:ss_datasets"
    assert values["resolution"].value == "1024,1024"
    assert values["shuffle_caption"].value is False and values["keep_tokens"].value == 0
    assert values["num_repeats"].value == [1, 2] and "differs per subset" in values["num_repeats"].note


def test_metadata_value_decoding():
    assert decode("None") is None and decode("True") is True and decode("0.0001") == 1e-4
    assert decode("(512, 512)") == (512, 512) and decode('{"a": 1}') == {"a": 1}
    assert decode("cosine_with_restarts") == "cosine_with_restarts"
    assert parse_optimizer("torch.optim.sgd.SGD(momentum=0.9)") == (
        "SGDNesterov", [], "momentum=0.9 left out: kohya adds it itself for SGDNesterov")
    assert parse_optimizer("prodigyopt.prodigy.Prodigy(d_coef=2,use_bias_correction=True)")[:2] == (
        "Prodigy", ["d_coef=2", "use_bias_correction=True"])
    assert parse_optimizer("transformers.optimization.Adafactor")[0] == "Adafactor"
    assert network_args('{"conv_dim": "4", "dropout": 0.1}', "None")[0] == ["conv_dim=4", "dropout=0.1"]


def test_wrong_typed_metadata_is_a_warning():
    reading = read_metadata({"ss_network_dim": "lots", "ss_mixed_precision": "fp8"}, "x.safetensors")
    assert reading.settings == []
    messages = sorted(w.message for w in reading.warnings)
    assert messages == ["ss_mixed_precision='fp8' is not a value kohya takes: --mixed_precision: invalid choice 'fp8' "
                        "(choose from 'no', 'fp16', 'bf16')",
                        "ss_network_dim='lots' is not a value kohya takes: --network_dim expects int, got 'lots'"]


# --- shapes ------------------------------------------------------------------------------------------------------

def test_locon_conv_rank_and_alpha(tmp_path):
    path = write_lora(tmp_path / "locon.safetensors", "sd15", 4, "float", conv_dim=2, network_alpha=1,
                      conv_alpha=0.3)
    ev = parse_safetensors(path)
    assert _one(ev, "network_kind").value == "LoCon"
    assert _one(ev, "conv_dim").value == 2 and _one(ev, "conv_alpha").value == 0.3
    assert _one(ev, "network_dim").value == 4
    prec = _one(ev, "save_precision")
    assert prec.value == "float" and [a.value for a in prec.alternatives] == [None]
    assert ev.facts["modules_conv3x3"] == 50


def test_fp16_alpha_reads_back_short(tmp_path):
    path = write_lora(tmp_path / "a.safetensors", "sd15", 4, "fp16", network_alpha=0.3)
    assert _one(parse_safetensors(path), "network_alpha").value == 0.3  # stored as 0.2998046875


def test_unet_only_sd2(tmp_path):
    path = write_lora(tmp_path / "v2.safetensors", "sd2", 2, "fp16", text_encoder=False)
    ev = parse_safetensors(path)
    assert ev.facts["arch"] == "sd2" and "1024" in ev.facts["arch_reason"]
    assert _one(ev, "v2").value is True
    assert _one(ev, "network_train_unet_only").value is True
    assert _one(ev, "text_encoder_included").value is False


def test_text_encoder_only_tells_arch_by_width(tmp_path):
    path = write_lora(tmp_path / "te.safetensors", "sd15", 2, "fp16", unet=False)
    ev = parse_safetensors(path)
    assert ev.facts["arch"] == "sd15"
    assert _one(ev, "network_train_text_encoder_only").value is True


def test_loha_and_dylora_kinds(tmp_path):
    loha = write_lora(tmp_path / "loha.safetensors", "sd15", 4, "fp16",
                      rename={"lora_down.weight": "hada_w1_b", "lora_up.weight": "hada_w1_a"})
    ev = parse_safetensors(loha)
    assert _one(ev, "network_kind").value == "LoHa" and _one(ev, "network_dim").value == 4
    lokr = write_lora(tmp_path / "lokr.safetensors", "sd15", 4, "fp16",
                      rename={"lora_down.weight": "lokr_w1_b", "lora_up.weight": "lokr_w1_a"})
    assert _one(parse_safetensors(lokr), "network_kind").value == "LoKr"
    md = minimal_metadata("sd15", 4, 2)
    md["ss_network_module"] = "networks.dylora"
    dy = write_lora(tmp_path / "dy.safetensors", "sd15", 4, "fp16", metadata=md)
    assert _one(parse_safetensors(dy), "network_kind").value == "DyLoRA"


# --- damaged and hostile files -----------------------------------------------------------------------------------

def test_cut_after_header_gives_what_the_header_says(tmp_path):
    path = write_lora(tmp_path / "cut.safetensors", "sd15", 4, "fp16", metadata=kohya_metadata("sd15", 4, 2))
    os.truncate(path, header_length(path))
    ev = parse_safetensors(path)
    assert ev.facts["truncated"] is True
    assert any("cut short" in w.message for w in ev.warnings)
    assert _one(ev, "network_dim").value == 4  # the metadata
    assert ev.facts["rank"] == {"min": 4, "max": 4, "most_common": 4}  # the shapes
    assert "network_alpha" in {s.name for s in ev.settings}  # from ss_network_alpha; the alpha bytes are gone
    assert any("alpha values could not be read" in w.message for w in ev.warnings)


def _raw(path, length: int, header: bytes, tail: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.write(length.to_bytes(8, "little") + header + tail)
    return str(path)


def test_header_length_larger_than_the_file_fails_fast(tmp_path):
    path = _raw(tmp_path / "huge.safetensors", 2**63, b'{"a": 1}')
    tracemalloc.start()
    with pytest.raises(EvidenceError) as e:
        parse_safetensors(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000  # nothing sized by the claimed length was allocated
    assert str(e.value) == (f"{path}: header length {2**63} is larger than the file (16 bytes): not a safetensors "
                            "file, or its header is cut")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content,message", [
    (b"{not json at all", "not valid JSON"),
    (b"[1, 2, 3]", "not an object"),
    (b"\xff\xfe garbage", "not UTF-8"),
    (b'{"x.alpha": {"dtype": "F16", "shape": [2], "data_offsets": [0, 2]}}', "needs 4 bytes"),
    (b'{"x.alpha": {"dtype": "Q4", "shape": [], "data_offsets": [0, 1]}}', "unknown dtype"),
    (b'{"x.alpha": [1, 2]}', "not a tensor description"),
])
def test_invalid_headers(tmp_path, content, message):
    path = _raw(tmp_path / "bad.safetensors", len(content), content, b"\0" * 8)
    with pytest.raises(EvidenceError, match=message):
        parse_safetensors(path)


def test_too_short_and_missing(tmp_path):
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(EvidenceError, match="too short"):
        parse_safetensors(tmp_path / "tiny.safetensors")
    with pytest.raises(EvidenceError):
        parse_safetensors(tmp_path / "absent.safetensors")


def test_a_large_sparse_file_is_read_from_its_header(tmp_path):
    # SDXL dim 128 fp32: a 1.8 GB file (sparse here); parsing it touches the header and the alphas only
    path = write_lora(tmp_path / "big.safetensors", "sdxl", 128, "float", network_alpha=64,
                      metadata=kohya_metadata("sdxl", 128, 64), sparse=True)
    assert os.path.getsize(path) > 1_800_000_000
    tracemalloc.start()
    ev = parse_safetensors(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 30_000_000
    assert ev.facts["rank"]["most_common"] == 128 and _one(ev, "network_dim").value == 128
    assert ev.facts["alpha"]["most_common"] == 64.0
    assert _one(ev, "save_precision").value == "float"


# --- the layout, checked as safetensors' Metadata::validate checks it ------------------------------------------------

def _entries(path, entries: dict, data_len: int, metadata: dict | None = None) -> str:
    head = dict(entries)
    if metadata is not None:
        head["__metadata__"] = metadata
    raw = json.dumps(head).encode()
    return _raw(path, len(raw), raw, b"\0" * data_len)


def _f16(shape, begin, end):
    return {"dtype": "F16", "shape": shape, "data_offsets": [begin, end]}


def test_safetensors_loads_what_passes(tmp_path):
    # the library's own writer gives a layout with no warning here
    path = write_lora(tmp_path / "ok.safetensors", "sd15", 4, "fp16", metadata=kohya_metadata("sd15", 4, 2))
    ev = parse_safetensors(path)
    assert "layout_problems" not in ev.facts and ev.warnings == []


@pytest.mark.parametrize("entries,data_len,message", [
    ({"a": _f16([2], 0, 4), "b": _f16([2], 2, 6)}, 6, "the data of 'b' (bytes 2-6) overlaps 'a', which ends at 4"),
    ({"a": _f16([2], 4, 8)}, 8, "4 bytes of the data section before 'a' belong to no tensor"),
    ({"a": _f16([2], 0, 4)}, 10, "6 bytes follow the last tensor's data"),
])
def test_overlaps_gaps_and_stray_bytes_are_warnings_naming_the_file(tmp_path, entries, data_len, message):
    path = _entries(tmp_path / "odd.safetensors", entries, data_len)
    ev = parse_safetensors(path)
    [w] = [w for w in ev.warnings if "safetensors refuses" in w.message]
    assert w.message.startswith(message) and w.source == path
    # the library agrees that the file is unusable
    import safetensors

    with pytest.raises(safetensors.SafetensorError), safetensors.safe_open(path, "numpy") as f:
        [f.get_tensor(k) for k in f.keys()]  # noqa: SIM118 (a safe_open handle is not iterable)


def test_metadata_that_is_not_text_is_a_warning(tmp_path):
    path = _entries(tmp_path / "m.safetensors", {"a": _f16([2], 0, 4)}, 4, {"ss_network_dim": 4})
    ev = parse_safetensors(path)
    assert any("__metadata__ value 'ss_network_dim' is not text" in w.message for w in ev.warnings)


@pytest.mark.parametrize("entry,message", [
    (_f16([-2, -1], 0, 4), "shape [-2, -1] has a negative dimension"),
    (_f16([2], 4, 0), "data_offsets [4, 0] are not a byte range"),
    (_f16([2], -4, 0), "are not a byte range"),
    (_f16([2 ** 40, 2 ** 40], 0, 2 ** 81), "not a byte range"),
    (_f16([2 ** 40, 2 ** 40], 0, 4), "overflows 64 bits"),
    ({"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}, "not a whole number of bytes"),
    ({"dtype": "F4", "shape": [4], "data_offsets": [0, 3]}, "needs 2 bytes but its data_offsets span 3"),
    ({"dtype": "F16", "shape": [2.0], "data_offsets": [0, 4]}, "shape is not a list of whole numbers"),
    ({"dtype": "F16", "shape": [True], "data_offsets": [0, 2]}, "shape is not a list of whole numbers"),
    ({"dtype": "F16", "shape": [2], "data_offsets": [0, 2, 4]}, "data_offsets is not [begin, end]"),
    ({"dtype": None, "shape": [2], "data_offsets": [0, 4]}, "has no dtype"),
    ({"dtype": "F16", "shape": "2", "data_offsets": [0, 4]}, "shape is not a list"),
])
def test_bad_tensor_entries_are_one_line_errors(tmp_path, entry, message):
    path = _entries(tmp_path / "bad.safetensors", {"a": entry}, 8)
    with pytest.raises(EvidenceError) as e:
        parse_safetensors(path)
    assert message in str(e.value) and str(e.value).startswith(path) and "\n" not in str(e.value)


@pytest.mark.parametrize("header,message", [
    (b"[" * 100_000, "not usable JSON (nested too deeply to read)"),
    (b'{"a": ' + b"9" * 5000 + b"}", "not usable JSON (an integer with thousands of digits)"),
])
def test_header_bombs_are_one_line_errors(tmp_path, header, message):
    path = _raw(tmp_path / "bomb.safetensors", len(header), header)
    with pytest.raises(EvidenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_safetensors(path)


def test_metadata_json_with_wrong_shapes_gives_warnings_not_tracebacks(tmp_path):
    md = {"ss_network_dim": "[]", "ss_datasets": json.dumps([{"subsets": 5, "resolution": [1, [2]]}]),
          "ss_network_args": json.dumps({"conv_dim": 1e400, "conv_alpha": []}),
          "ss_dataset_dirs": json.dumps({"a": 5, "b": {"n_repeats": 2}, "c": {"n_repeats": 3}}),
          "ss_learning_rate": "[" * 50_000, "ss_resolution": "(" + "9" * 5000 + ", 1)",
          "modelspec.timestep_range": "a,b,c"}
    path = _entries(tmp_path / "md.safetensors", {"a": _f16([2], 0, 4)}, 4, md)
    ev = parse_safetensors(path)
    assert any("ss_network_dim" in w.message for w in ev.warnings)
