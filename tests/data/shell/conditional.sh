#!/bin/bash
# Values that depend on the machine the script ran on: bash cannot be followed without it.
if [ -f /workspace/big_gpu ]; then
  DIM=64
  BATCH=8
else
  DIM=32
  BATCH=8
fi
ARGS=(--seed 42)
if [ -n "$USE_V2" ]; then
  ARGS+=(--v2)
fi
accelerate launch train_network.py --network_dim "$DIM" --train_batch_size $BATCH "${ARGS[@]}"
