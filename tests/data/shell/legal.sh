ARGS=()
EXTRA=()
accelerate launch train_network.py "${ARGS[@]}" --network_dim 8 "${EXTRA[@]}" \
  --seed 1 \