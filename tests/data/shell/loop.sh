# one training run per dim, as bash runs the loop
for dim in 8 16; do
  accelerate launch train_network.py --network_dim $dim --output_name "dim$dim"
done
