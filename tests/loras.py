"""Write tiny-but-real kohya LoRA ``.safetensors`` files for tests and benchmarks.

Real kohya key names and real layer widths (from ``lora_audit.kohya.lora_layout``) for SD1.5, SD2 and SDXL; a small
rank keeps them small (SD1.5 at dim 4, fp16: 4.7 MB). Files are written by the safetensors library itself, so a test
comparing their size with ``filesize.expected_size`` checks the size model against the real writer. ``sparse=True``
writes the header (``filesize.header_bytes``) and the alpha scalars only and leaves the rest a hole: a file of any
size in no time, for the benchmark.

    write_lora(path, "sd15", network_dim=4, metadata=kohya_metadata("sd15", 4, 2))
    write_lora(path, "sdxl", network_dim=1, text_encoder=False, metadata=minimal_metadata("sdxl", 1, 1))
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from pathlib import Path

import safetensors

from lora_audit.kohya.filesize import PRECISIONS, header_bytes, tensors

_LIB_DTYPE = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def scalar_bytes(value: float, dtype: str) -> bytes:
    """One value as safetensors stores it (little-endian); bf16 is fp32's top half, rounded to nearest even."""
    if dtype == "F16":
        return struct.pack("<e", value)
    if dtype == "F32":
        return struct.pack("<f", value)
    if dtype == "BF16":
        bits = struct.unpack("<I", struct.pack("<f", value))[0]
        bits += 0x7FFF + ((bits >> 16) & 1)
        return struct.pack("<H", (bits >> 16) & 0xFFFF)
    raise ValueError(dtype)


def write_lora(path: str | os.PathLike, arch: str = "sd15", network_dim: int = 4, save_precision: str = "fp16", *,
               text_encoder: bool = True, unet: bool = True, conv_dim: int | None = None,
               network_alpha: float | None = None, conv_alpha: float | None = None,
               metadata: dict[str, str] | None = None, truncate: int | None = None, sparse: bool = False,
               rename: dict[str, str] | None = None) -> Path:
    """Write a kohya ``networks.lora`` file; returns its path.

    ``network_alpha``/``conv_alpha`` default to half the rank. ``truncate`` cuts the file to that many bytes after
    writing (a download cut short). ``rename`` maps tensor-name suffixes to others (``{"lora_down.weight":
    "hada_w1_a"}``) to fake other network kinds.
    """
    path = Path(path)
    items = tensors(arch, network_dim, save_precision, text_encoder, conv_dim, unet=unet)  # type: ignore[arg-type]
    alpha = network_dim / 2 if network_alpha is None else network_alpha
    calpha = (conv_dim or 0) / 2 if conv_alpha is None else conv_alpha
    conv_modules = {n.rsplit(".", 2)[0] for n, _, s in items if len(s) == 4 and s[2] == 3}
    if rename:
        items = [(_renamed(n, rename), d, s) for n, d, s in items]
    alphas = {n: (calpha if n[: -len(".alpha")] in conv_modules else alpha) for n, _, _ in items
              if n.endswith(".alpha")}
    if sparse:
        _write_sparse(path, items, alphas, metadata)
    else:
        _write_with_library(path, items, alphas, metadata)
    if truncate is not None:
        os.truncate(path, truncate)
    return path


def header_length(path: str | os.PathLike) -> int:
    """8 + the JSON header's length: where the tensor data starts."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def _renamed(name: str, rename: dict[str, str]) -> str:
    for old, new in rename.items():
        if name.endswith("." + old):
            return name[: -len(old)] + new
    return name


def _nbytes(dtype: str, shape: list[int]) -> int:
    n = {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    for d in shape:
        n *= d
    return n


def _write_with_library(path: Path, items, alphas: dict[str, float], metadata) -> None:
    biggest = max(_nbytes(d, s) for _, d, s in items)
    zeros = ctypes.create_string_buffer(biggest)  # every weight reads the same zeros; only alphas carry values
    keep = [zeros]
    specs = {}
    for name, dtype, shape in items:
        if name in alphas:
            buf = ctypes.create_string_buffer(scalar_bytes(alphas[name], dtype), _nbytes(dtype, shape))
            keep.append(buf)
        else:
            buf = zeros
        specs[name] = _spec(dtype, shape, buf, _nbytes(dtype, shape))
    safetensors.serialize_file(specs, str(path), metadata=metadata)
    del keep


def _spec(dtype: str, shape: list[int], buf, n: int):
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8: the caller hands a pointer
        return safetensors.TensorSpec(dtype=_LIB_DTYPE[dtype], shape=shape, data_ptr=ctypes.addressof(buf),
                                      data_len=n)
    return {"dtype": _LIB_DTYPE[dtype], "shape": shape, "data": ctypes.string_at(buf, n)}


def _write_sparse(path: Path, items, alphas: dict[str, float], metadata) -> None:
    head = header_bytes(items, metadata)
    entries = json.loads(head[8:])
    end = max(e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__")
    with open(path, "wb") as f:
        f.write(head)
        for name, value in alphas.items():
            e = entries[name]
            f.seek(len(head) + e["data_offsets"][0])
            f.write(scalar_bytes(value, e["dtype"]))
        f.truncate(len(head) + end)


# --- metadata as kohya's train_network.py writes it -----------------------------------------------------------------

def kohya_metadata(arch: str = "sd15", network_dim: int = 4, network_alpha: float = 2, **overrides) -> dict[str, str]:
    """A realistic full metadata dict (train_network.py: ``metadata = {...}``, then ``str()`` of every value)."""
    sdxl = arch == "sdxl"
    md: dict[str, object] = {
        "ss_session_id": 1234567890,
        "ss_training_started_at": 1731180000.5,
        "ss_output_name": "bespoke_punks_SD15_PERFECT",
        "ss_learning_rate": 0.0001,
        "ss_text_encoder_lr": 5e-05,
        "ss_unet_lr": 0.0001,
        "ss_num_train_images": 2030,
        "ss_num_validation_images": 0,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": 508,
        "ss_num_epochs": 10,
        "ss_gradient_checkpointing": True,
        "ss_gradient_accumulation_steps": 1,
        "ss_max_train_steps": 5080,
        "ss_lr_warmup_steps": 0,
        "ss_lr_scheduler": "cosine_with_restarts",
        "ss_network_module": "networks.lora",
        "ss_network_dim": network_dim,
        "ss_network_alpha": float(network_alpha),
        "ss_network_dropout": None,
        "ss_mixed_precision": "bf16" if sdxl else "fp16",
        "ss_full_fp16": False,
        "ss_v2": arch == "sd2",
        "ss_base_model_version": "sdxl_base_v1-0" if sdxl else ("sd_v2" if arch == "sd2" else "sd_v1"),
        "ss_clip_skip": None,
        "ss_max_token_length": 225,
        "ss_cache_latents": True,
        "ss_seed": 42,
        "ss_lowram": False,
        "ss_noise_offset": 0.1,
        "ss_multires_noise_iterations": 6,
        "ss_multires_noise_discount": 0.3,
        "ss_adaptive_noise_scale": 0.00357,
        "ss_zero_terminal_snr": False,
        "ss_training_comment": None,
        "ss_sd_scripts_commit_hash": "48d368fa557731ad0488c07304dfeba8c07910eb",
        "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.01,betas=(0.9, 0.99))",
        "ss_max_grad_norm": 1.0,
        "ss_caption_dropout_rate": 0.0,
        "ss_caption_dropout_every_n_epochs": 0,
        "ss_caption_tag_dropout_rate": 0.0,
        "ss_face_crop_aug_range": None,
        "ss_prior_loss_weight": 1.0,
        "ss_min_snr_gamma": 5.0,
        "ss_scale_weight_norms": None,
        "ss_ip_noise_gamma": None,
        "ss_debiased_estimation": False,
        "ss_noise_offset_random_strength": False,
        "ss_ip_noise_gamma_random_strength": False,
        "ss_loss_type": "l2",
        "ss_huber_schedule": "snr",
        "ss_huber_scale": 1.0,
        "ss_huber_c": 0.1,
        "ss_fp8_base": False,
        "ss_fp8_base_unet": False,
        "ss_validation_seed": None,
        "ss_validation_split": 0.0,
        "ss_max_validation_steps": None,
        "ss_validate_every_n_epochs": None,
        "ss_validate_every_n_steps": None,
        "ss_resize_interpolation": None,
        # no --dataset_config: the dataset's settings sit at the top level
        "ss_batch_size_per_device": 4,
        "ss_total_batch_size": 4,
        "ss_resolution": (1024, 1024) if sdxl else (512, 512),
        "ss_color_aug": False,
        "ss_flip_aug": False,
        "ss_random_crop": False,
        "ss_shuffle_caption": True,
        "ss_enable_bucket": True,
        "ss_bucket_no_upscale": True,
        "ss_min_bucket_reso": 256,
        "ss_max_bucket_reso": 1024,
        "ss_keep_tokens": 2,
        "ss_dataset_dirs": json.dumps({"10_bespoke": {"n_repeats": 10, "img_count": 203}}),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_tag_frequency": json.dumps({"10_bespoke": {"pixel art": 203, "24x24": 203}}),
        "ss_bucket_info": json.dumps({"buckets": {"0": {"resolution": [512, 512], "count": 2030}},
                                      "mean_img_ar_error": 0.0}),
        "ss_sd_model_name": "stabilityai/stable-diffusion-xl-base-1.0" if sdxl else "runwayml/stable-diffusion-v1-5",
        "ss_training_finished_at": 1731190000.25,
        "ss_steps": 5080,
        "ss_epoch": 10,
    }
    md.update(overrides)
    out = {k: str(v) for k, v in md.items() if v is not _DROP}
    out.update(_modelspec(arch, out.get("ss_output_name", "lora")))
    out.update(_hashes())
    return out


_DROP = object()  # kohya_metadata(ss_x=DROP) leaves the key out


def minimal_metadata(arch: str = "sd15", network_dim: int = 4, network_alpha: float = 2,
                     network_args: dict | None = None) -> dict[str, str]:
    """What ``--no_metadata`` still writes: train_util.SS_METADATA_MINIMUM_KEYS, modelspec.*, sshs_* hashes."""
    md = {
        "ss_v2": str(arch == "sd2"),
        "ss_base_model_version": "sdxl_base_v1-0" if arch == "sdxl" else ("sd_v2" if arch == "sd2" else "sd_v1"),
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(network_dim),
        "ss_network_alpha": str(float(network_alpha)),
    }
    if network_args:
        md["ss_network_args"] = json.dumps(network_args)
    md.update(_modelspec(arch, "lora"))
    md.update(_hashes())
    return md


def _modelspec(arch: str, title: str) -> dict[str, str]:
    archs = {"sd15": "stable-diffusion-v1/lora", "sd2": "stable-diffusion-v2-512/lora",
             "sdxl": "stable-diffusion-xl-v1-base/lora"}
    return {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": archs[arch],
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if arch == "sdxl"
        else "diffusers",
        "modelspec.title": title,
        "modelspec.resolution": "1024x1024" if arch == "sdxl" else "512x512",
        "modelspec.date": "2025-11-09T20:22:00",
        "modelspec.prediction_type": "epsilon",
    }


def _hashes() -> dict[str, str]:
    return {"sshs_model_hash": "0" * 64, "sshs_legacy_hash": "00000000"}


DROP = _DROP
PRECISION_NAMES = tuple(PRECISIONS)
