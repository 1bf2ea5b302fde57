#!/usr/bin/env bash
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG_FILE="${ROOT}/run/config.toml"
DIM="${LORA_DIM:-16}"
REPEATS=10
mkdir -p "${ROOT}/run"

cat > "${ROOT}/run/dataset.toml" <<EOF2
[general]
caption_extension = ".txt"
[[datasets]]
resolution = 1024
  [[datasets.subsets]]
  image_dir = "${ROOT}/img"
  num_repeats = ${REPEATS}
EOF2

cat > "$CONFIG_FILE" <<EOF2
pretrained_model_name_or_path = "${ROOT}/base.safetensors"
dataset_config = "${ROOT}/run/dataset.toml"
network_module = "networks.lora"
network_dim = ${DIM}
network_alpha = 8
learning_rate = 0.0001
EOF2
	cat <<-'EOF2' > "${ROOT}/run/extra.toml"
	optimizer_type = "AdamW8bit"
	EOF2

accelerate launch sdxl_train_network.py --config_file "$CONFIG_FILE" --seed 1203
