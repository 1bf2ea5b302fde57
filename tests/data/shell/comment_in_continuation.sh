accelerate launch train_network.py \
  --network_dim 32 \
#  --network_alpha 16 \
  --learning_rate 1e-4 \
  --seed 7
