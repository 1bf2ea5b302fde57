#!/bin/bash
. ./settings.env
source "$(dirname "$0")/missing.env"
accelerate launch train_network.py --network_dim $DIM --learning_rate "$LR" --output_name "$NAME"
