#!/bin/bash
# Values only known when the script runs: an argument, a command's output, the environment.
output_name=$1_$(date "+%Y%m%d-%H%M%S")
accelerate launch --num_cpu_threads_per_process 1 train_network.py \
  --output_name=${output_name} \
  --output_dir "$OUTPUT_DIR" \
  --logging_dir `pwd`/logs \
  --train_batch_size=${BATCH_SIZE} \
  --network_dim 16
