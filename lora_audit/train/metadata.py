"""The ``ss_*`` and ``modelspec.*`` metadata of a LoRA file, key for key as kohya's ``train_network.py`` writes it.

Values are ``str(value)`` as kohya stores them (so ``None`` is ``"None"``, tuples are ``"(64, 64)"``, nested data is
JSON). ``lora_audit.*`` keys say what the builtin trainer did differently (the optimizer kohya would have used,
ignored settings).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lora_audit.train.data import TrainImages
from lora_audit.train.options import TrainPlan
from lora_audit.version import __version__

# train_util.SS_METADATA_MINIMUM_KEYS: what --no_metadata still writes
MINIMUM_KEYS = ("ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha",
                "ss_network_args")


def training_metadata(plan: TrainPlan, images: TrainImages, *, session_id: int, started_at: float,
                      text_encoder_lr: Any, optimizer_name: str, optimizer_args: str, num_batches_per_epoch: int,
                      num_epochs: int) -> dict[str, str]:
    """The metadata dict built once before training (``train_network.NetworkTrainer.train``)."""
    a = plan.args
    md: dict[str, Any] = {
        "ss_session_id": session_id,
        "ss_training_started_at": started_at,
        "ss_output_name": a.output_name,
        "ss_learning_rate": a.learning_rate,
        "ss_text_encoder_lr": text_encoder_lr,
        "ss_unet_lr": a.unet_lr,
        "ss_num_train_images": images.num_train_images,
        "ss_num_validation_images": 0,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": num_batches_per_epoch,
        "ss_num_epochs": num_epochs,
        "ss_gradient_checkpointing": a.gradient_checkpointing,
        "ss_gradient_accumulation_steps": a.gradient_accumulation_steps,
        "ss_max_train_steps": a.max_train_steps,
        "ss_lr_warmup_steps": a.lr_warmup_steps,
        "ss_lr_scheduler": a.lr_scheduler,
        "ss_network_module": a.network_module,
        "ss_network_dim": a.network_dim,
        "ss_network_alpha": a.network_alpha,
        "ss_network_dropout": a.network_dropout,
        "ss_mixed_precision": a.mixed_precision,
        "ss_full_fp16": bool(a.full_fp16),
        "ss_v2": bool(a.v2),
        "ss_base_model_version": "sdxl_base_v1-0" if plan.arch == "sdxl" else "sd_v1",
        "ss_clip_skip": a.clip_skip,
        "ss_max_token_length": a.max_token_length,
        "ss_cache_latents": bool(a.cache_latents),
        "ss_seed": a.seed,
        "ss_lowram": a.lowram,
        "ss_noise_offset": a.noise_offset,
        "ss_multires_noise_iterations": a.multires_noise_iterations,
        "ss_multires_noise_discount": a.multires_noise_discount,
        "ss_adaptive_noise_scale": a.adaptive_noise_scale,
        "ss_zero_terminal_snr": a.zero_terminal_snr,
        "ss_training_comment": a.training_comment,
        "ss_sd_scripts_commit_hash": "(lora-audit builtin trainer)",
        "ss_optimizer": optimizer_name + (f"({optimizer_args})" if optimizer_args else ""),
        "ss_max_grad_norm": a.max_grad_norm,
        "ss_caption_dropout_rate": a.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": a.caption_dropout_every_n_epochs,
        "ss_caption_tag_dropout_rate": a.caption_tag_dropout_rate,
        "ss_face_crop_aug_range": a.face_crop_aug_range,
        "ss_prior_loss_weight": a.prior_loss_weight,
        "ss_min_snr_gamma": a.min_snr_gamma,
        "ss_scale_weight_norms": a.scale_weight_norms,
        "ss_ip_noise_gamma": a.ip_noise_gamma,
        "ss_debiased_estimation": bool(a.debiased_estimation_loss),
        "ss_noise_offset_random_strength": a.noise_offset_random_strength,
        "ss_ip_noise_gamma_random_strength": a.ip_noise_gamma_random_strength,
        "ss_loss_type": a.loss_type,
        "ss_huber_schedule": a.huber_schedule,
        "ss_huber_scale": a.huber_scale,
        "ss_huber_c": a.huber_c,
        "ss_fp8_base": bool(a.fp8_base),
        "ss_fp8_base_unet": bool(a.fp8_base_unet),
        "ss_validation_seed": a.validation_seed,
        "ss_validation_split": a.validation_split,
        "ss_max_validation_steps": a.max_validation_steps,
        "ss_validate_every_n_epochs": a.validate_every_n_epochs,
        "ss_validate_every_n_steps": a.validate_every_n_steps,
        "ss_resize_interpolation": a.resize_interpolation,
    }
    if plan.user_config:
        md.update(_user_config_datasets(images))
    else:
        md.update(_dreambooth_dirs(a, images))
    if a.network_args:
        md["ss_network_args"] = json.dumps(_network_kwargs(a.network_args))
    # train_util.model_hash / calculate_sha256 of a diffusers folder
    md["ss_sd_model_hash"] = md["ss_new_sd_model_hash"] = "IsADirectory"
    md["ss_sd_model_name"] = Path(a.pretrained_model_name_or_path).name
    md["lora_audit.trainer"] = f"lora-audit {__version__} builtin (diffusers + peft, CPU fp32)"
    if str(a.optimizer_type).lower() == "adamw8bit" or a.use_8bit_adam:
        md["lora_audit.optimizer_requested"] = "AdamW8bit"
    if plan.ignored:
        md["lora_audit.ignored"] = json.dumps({u.name: u.value for u in plan.ignored}, default=str)
    return {k: str(v) for k, v in md.items()}


def _network_kwargs(network_args: list[str]) -> dict[str, str]:
    out = {}
    for arg in network_args:
        k, _, v = arg.partition("=")
        out[k] = v
    return out


def _dreambooth_dirs(a: SimpleNamespace, images: TrainImages) -> dict[str, Any]:
    ds = images.datasets[0]
    dirs = {it.image_dir.name: {"n_repeats": it.num_repeats, "img_count": sum(1 for x in ds.items if x.subset is it)}
            for it in ds.spec.subsets}
    return {
        "ss_batch_size_per_device": a.train_batch_size,
        "ss_total_batch_size": a.train_batch_size * a.gradient_accumulation_steps,
        "ss_resolution": a.resolution,
        "ss_color_aug": bool(a.color_aug),
        "ss_flip_aug": bool(a.flip_aug),
        "ss_random_crop": bool(a.random_crop),
        "ss_shuffle_caption": bool(a.shuffle_caption),
        "ss_enable_bucket": bool(ds.buckets_of.enabled),
        "ss_bucket_no_upscale": bool(ds.buckets_of.no_upscale),
        "ss_min_bucket_reso": ds.spec.params.get("min_bucket_reso") if ds.buckets_of.enabled else None,
        "ss_max_bucket_reso": ds.spec.params.get("max_bucket_reso") if ds.buckets_of.enabled else None,
        "ss_keep_tokens": a.keep_tokens,
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_tag_frequency": json.dumps(ds.tag_frequency),
        "ss_bucket_info": json.dumps(ds.bucket_info()),
    }


def _user_config_datasets(images: TrainImages) -> dict[str, Any]:
    datasets: list[Any] = []
    tag_frequency: dict[str, Any] = {}
    dirs: dict[str, Any] = {}
    for ds in images.datasets:
        enabled = ds.buckets_of.enabled
        subsets = []
        for sub in ds.spec.subsets:
            p = sub.params
            count = sum(1 for x in ds.items if x.subset is sub)
            subsets.append({
                "img_count": count, "num_repeats": sub.num_repeats, "color_aug": bool(p.get("color_aug")),
                "flip_aug": bool(p.get("flip_aug")), "random_crop": bool(p.get("random_crop")),
                "shuffle_caption": bool(p.get("shuffle_caption")), "keep_tokens": p.get("keep_tokens"),
                "keep_tokens_separator": p.get("keep_tokens_separator"),
                "secondary_separator": p.get("secondary_separator"),
                "enable_wildcard": bool(p.get("enable_wildcard")), "caption_prefix": p.get("caption_prefix"),
                "caption_suffix": p.get("caption_suffix"), "resize_interpolation": p.get("resize_interpolation"),
                "image_dir": sub.image_dir.name, "class_tokens": sub.class_tokens, "is_reg": False,
            })
            name, i = sub.image_dir.name, 2
            while name in dirs:
                name, i = f"{sub.image_dir.name} ({i})", i + 1
            dirs[name] = {"n_repeats": sub.num_repeats, "img_count": count}
        datasets.append({
            "is_dreambooth": True, "batch_size_per_device": ds.batch_size, "num_train_images": ds.num_train_images,
            "num_reg_images": 0, "resolution": ds.spec.resolution, "enable_bucket": enabled,
            "min_bucket_reso": ds.spec.params.get("min_bucket_reso") if enabled else None,
            "max_bucket_reso": ds.spec.params.get("max_bucket_reso") if enabled else None,
            "tag_frequency": ds.tag_frequency, "bucket_info": ds.bucket_info() or None,
            "resize_interpolation": ds.spec.params.get("resize_interpolation"), "subsets": subsets,
        })
        for k, v in ds.tag_frequency.items():
            tag_frequency.setdefault(k, v)
    return {"ss_datasets": json.dumps(datasets), "ss_tag_frequency": json.dumps(tag_frequency),
            "ss_dataset_dirs": json.dumps(dirs)}


def modelspec(plan: TrainPlan) -> dict[str, str]:
    """``sai_model_spec.build_metadata`` for a LoRA (``train_util.get_sai_model_spec``)."""
    a = plan.args
    sdxl = plan.arch == "sdxl"
    now = datetime.datetime.now()
    reso = a.resolution
    if reso is None:
        reso = (1024, 1024) if sdxl else (512, 512)
    elif isinstance(reso, str):
        reso = tuple(int(x) for x in reso.split(","))
    elif isinstance(reso, int):
        reso = (reso, reso)
    if len(reso) == 1:
        reso = (reso[0], reso[0])
    md = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": ("stable-diffusion-xl-v1-base" if sdxl else "stable-diffusion-v1") + "/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if sdxl else "diffusers",
        "modelspec.title": a.metadata_title or a.output_name or f"LoRA@{now.timestamp()}",
        "modelspec.resolution": f"{reso[0]}x{reso[1]}",
        "modelspec.date": now.replace(microsecond=0).isoformat(),
        "modelspec.prediction_type": "epsilon",
        "modelspec.implementation_version": f"lora-audit/{__version__}",
    }
    for key in ("author", "description", "license", "tags"):
        value = getattr(a, f"metadata_{key}", None)
        if value is not None:
            md[f"modelspec.{key}"] = value
    if a.min_timestep is not None or a.max_timestep is not None:
        md["modelspec.timestep_range"] = f"{a.min_timestep or 0},{a.max_timestep or 1000}"
    if a.clip_skip is not None:
        md["modelspec.encoder_layer"] = str(a.clip_skip)
    return md


def safetensors_hashes(tensors: dict, metadata: dict[str, str]) -> tuple[str, str]:
    """``train_util.precalculate_safetensors_hashes``: sd-webui-additional-networks' model hash and legacy hash."""
    from safetensors.torch import save

    data = save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    n = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[n + 8:]).hexdigest()
    b = io.BytesIO(data)
    b.seek(0x100000)
    legacy = hashlib.sha256(b.read(0x10000)).hexdigest()[:8]
    return model_hash, legacy


def write_lora(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    """Write atomically: a crash or Ctrl-C while saving leaves the previous file whole."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates files 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
