"""Which kohya parameters the builtin trainer honours, which cannot change its result, and which values it takes.

Every kohya argument falls in one of three groups:
- IMPLEMENTED: applied with kohya's semantics (some only for the values in VALUES);
- NO_EFFECT: speed, memory, precision or logging knobs that cannot change what a CPU fp32 run computes; accepted,
  and said once;
- everything else: refused when set to a non-default value, unless ``--ignore-unsupported`` (then warned about).
Dataset-config keys (per dataset / per subset) are listed apart, under kohya's dataset-config names.
"""

from __future__ import annotations

# (a word list: it reads better as text than as 80 quoted strings, hence the noqa below)
IMPLEMENTED: frozenset[str] = frozenset("""
pretrained_model_name_or_path config_file dataset_config train_data_dir output_dir output_name logging_dir log_prefix
log_with log_tracker_name
network_module network_dim network_alpha network_train_unet_only network_train_text_encoder_only
learning_rate unet_lr text_encoder_lr optimizer_type optimizer_args use_8bit_adam max_grad_norm
lr_scheduler lr_warmup_steps lr_scheduler_num_cycles lr_scheduler_power
train_batch_size gradient_accumulation_steps max_train_epochs max_train_steps seed resolution
enable_bucket bucket_no_upscale bucket_reso_steps min_bucket_reso max_bucket_reso
caption_extension caption_extention shuffle_caption keep_tokens keep_tokens_separator caption_separator
secondary_separator caption_prefix caption_suffix caption_dropout_rate caption_dropout_every_n_epochs
caption_tag_dropout_rate max_token_length clip_skip cache_latents cache_latents_to_disk
noise_offset noise_offset_random_strength multires_noise_iterations multires_noise_discount adaptive_noise_scale
ip_noise_gamma ip_noise_gamma_random_strength min_snr_gamma debiased_estimation_loss zero_terminal_snr
min_timestep max_timestep prior_loss_weight
mixed_precision save_precision save_model_as save_every_n_epochs save_last_n_epochs save_n_epoch_ratio
no_metadata training_comment metadata_title metadata_author metadata_description metadata_license metadata_tags
""".split())  # noqa: SIM905

# Values the builtin trainer implements for parameters that name a component (compared case-insensitively where
# kohya compares so: optimizer_type is lower-cased by train_util.get_optimizer).
VALUES: dict[str, tuple] = {
    "network_module": ("networks.lora",),
    "optimizer_type": ("", "adamw", "adamw8bit"),
    "lr_scheduler": ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"),
    "save_model_as": ("safetensors", None),
    "log_with": ("tensorboard", None),
}

# why each is accepted without changing anything
NO_EFFECT: dict[str, str] = {
    "gradient_checkpointing": "memory",
    "xformers": "attention kernel",
    "sdpa": "attention kernel",
    "mem_eff_attn": "attention kernel",
    "max_data_loader_n_workers": "data loading",
    "persistent_data_loader_workers": "data loading",
    "lowram": "memory",
    "highvram": "memory",
    "vae_batch_size": "memory",
    "cache_info": "data loading",
    "skip_cache_check": "data loading",
    "disable_mmap_load_safetensors": "model loading",
    "tokenizer_cache_dir": "model loading",
    "cpu_offload_checkpointing": "memory",
    "console_log_file": "console logging",
    "console_log_level": "console logging",
    "console_log_simple": "console logging",
    "log_config": "logging",
    "log_tracker_config": "logging",
    "async_upload": "uploading",
    "ddp_timeout": "multi-GPU",
    "ddp_gradient_as_bucket_view": "multi-GPU",
    "ddp_static_graph": "multi-GPU",
    "full_fp16": "precision (the builtin trainer runs in fp32 on CPU)",
    "full_bf16": "precision (the builtin trainer runs in fp32 on CPU)",
    "fp8_base": "precision (the builtin trainer runs in fp32 on CPU)",
    "fp8_base_unet": "precision (the builtin trainer runs in fp32 on CPU)",
    "no_half_vae": "precision (the builtin trainer runs in fp32 on CPU)",
}

# dataset-config keys (kohya's config names) the builtin trainer applies
DATASET_IMPLEMENTED: frozenset[str] = frozenset("""
image_dir num_repeats class_tokens caption_extension shuffle_caption keep_tokens keep_tokens_separator caption_separator
secondary_separator caption_prefix caption_suffix caption_dropout_rate caption_dropout_every_n_epochs
caption_tag_dropout_rate batch_size resolution enable_bucket bucket_no_upscale bucket_reso_steps min_bucket_reso
max_bucket_reso prior_loss_weight cache_info
""".split())  # noqa: SIM905
