"""``lora-audit compare``: same-seed generation of a base model and LoRAs, with metrics and exports.

Only ``commands`` and ``spec`` are light (click / stdlib); ``generate``, ``images`` and ``metrics`` import torch,
diffusers, numpy and PIL and are imported when the command runs.
"""
