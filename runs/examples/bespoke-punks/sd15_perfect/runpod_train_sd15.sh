#!/bin/bash
# SD1.5 LoRA training on RunPod: bespoke punks, pixel art 24x24
set -e

MODEL="runwayml/stable-diffusion-v1-5"
DATA_DIR="/workspace/bespoke_punks/civitai_v2_7_training"
OUT_DIR="/workspace/output"
NAME="bespoke_punks_SD15_PERFECT"

cd /workspace/sd-scripts

accelerate launch --num_cpu_threads_per_process=2 train_network.py \
  --pretrained_model_name_or_path="$MODEL" \
  --train_data_dir="$DATA_DIR" \
  --output_dir="$OUT_DIR" \
  --output_name="$NAME" \
  --save_model_as=safetensors \
  --network_module=networks.lora \
  --network_dim=32 \
  --network_alpha=16 \
  --resolution="512,512" \
  --train_batch_size=4 \
  --gradient_accumulation_steps=1 \
  --learning_rate=0.0001 \
  --unet_lr=0.0001 \
  --text_encoder_lr=0.00005 \
  --optimizer_type="AdamW8bit" \
  --lr_scheduler="cosine_with_restarts" \
  --lr_scheduler_num_cycles=3 \
  --min_snr_gamma=5 \
  --mixed_precision="fp16" \
  --save_precision="fp16" \
  --gradient_checkpointing \
  --cache_latents \
  --cache_latents_to_disk \
  --xformers \
  --noise_offset=0.1 \
  --multires_noise_iterations=6 \
  --multires_noise_discount=0.3 \
  --adaptive_noise_scale=0.00357 \
  --caption_extension=".txt" \
  --shuffle_caption \
  --keep_tokens=2 \
  --max_token_length=225 \
  --bucket_reso_steps=64 \
  --bucket_no_upscale \
  --max_data_loader_n_workers=1 \
  --max_train_epochs=10 \
  --save_every_n_epochs=1 \
  --seed=42
