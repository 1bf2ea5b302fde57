#!/bin/bash
# Settings at the top, arguments assembled below in if/elif/else blocks (the lora-scripts train.sh pattern).
model_type="sdxl"      # sd1.5 | sd2.0 | sdxl
is_v2_model=0
lowram=0               # note: [[ $lowram ]] is true for "0" (a non-empty string)
multi_gpu=0
optimizer_type="DAdaptation"
network_module="networks.lora"
noise_offset="0"
min_snr_gamma=5
clip_skip=2

extArgs=()
launchArgs=()
trainer_file="./sd-scripts/train_network.py"

if [ $model_type == "sd1.5" ]; then
  extArgs+=("--clip_skip $clip_skip")
elif [ $model_type == "sd2.0" ]; then
  extArgs+=("--v2")
elif [ $model_type == "sdxl" ]; then
  trainer_file="./sd-scripts/sdxl_train_network.py"
else
  trainer_file="./sd-scripts/flux_train_network.py"
fi

if [[ $multi_gpu == 1 ]]; then launchArgs+=("--multi_gpu"); fi
if [[ $lowram ]]; then extArgs+=("--lowram"); fi
if [[ $is_v2_model == 1 ]]; then
  extArgs+=("--v2")
else
  extArgs+=("--max_token_length=225")
fi
if [[ $optimizer_type == "DAdaptation" ]]; then extArgs+=("--optimizer_args decouple=True"); fi
if [[ $network_module == "lycoris.kohya" ]]; then extArgs+=("--network_args algo=lora"); fi
if [[ $noise_offset != "0" ]]; then extArgs+=("--noise_offset $noise_offset"); fi
if [[ $min_snr_gamma -ne 0 ]]; then extArgs+=("--min_snr_gamma $min_snr_gamma"); fi
case "$optimizer_type" in
  AdamW*) lr="1e-4" ;;
  DAdapt*|Prodigy) lr="1.0" ;;
  *) lr="5e-5" ;;
esac

python -m accelerate.commands.launch ${launchArgs[@]} --num_cpu_threads_per_process=8 $trainer_file \
  --pretrained_model_name_or_path=./models/base.safetensors \
  --optimizer_type=$optimizer_type \
  --learning_rate=$lr \
  --network_dim=32 ${extArgs[@]}
