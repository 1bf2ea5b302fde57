"""Optimizer parameter groups, optimizer and learning-rate schedule with kohya's semantics.

- groups: ``LoRANetwork.prepare_optimizer_params``: text-encoder LoRA at ``text_encoder_lr`` (else
  ``learning_rate``), UNet LoRA at ``unet_lr`` (else ``learning_rate``); a group whose lr is 0 is left out (its
  weights stay at their initial values, and are saved so).
- optimizer: ``train_util.get_optimizer``: ``optimizer_args`` are ``key=value`` with Python-literal values; AdamW8bit
  is bitsandbytes' and needs a GPU, so it runs as torch AdamW here.
- schedule: ``train_util.get_scheduler_fix`` with transformers' schedule functions; warm-up steps given as a float
  are a fraction of the training steps.
"""

from __future__ import annotations

import ast
from types import SimpleNamespace
from typing import Any

import torch

from lora_audit.errors import EvidenceError


def text_encoder_lr(args: SimpleNamespace) -> float | None:
    """kohya's backward compatibility: a scalar, or the first of a list (an empty list means unset)."""
    v = args.text_encoder_lr
    if v is None or isinstance(v, (int, float)):
        return v
    return v[0] if v else None


def param_groups(te_params: list[torch.nn.Parameter], unet_params: list[torch.nn.Parameter],
                 args: SimpleNamespace) -> tuple[list[dict], list[str]]:
    groups, names = [], []
    te_lr = text_encoder_lr(args)
    for params, lr, name in ((te_params, te_lr if te_lr is not None else args.learning_rate, "textencoder"),
                             (unet_params, args.unet_lr if args.unet_lr is not None else args.learning_rate, "unet")):
        if params and lr:
            groups.append({"params": params, "lr": lr})
            names.append(name)
    return groups, names


def optimizer_kwargs(args: SimpleNamespace) -> dict[str, Any]:
    out = {}
    for arg in args.optimizer_args or []:
        key, sep, value = arg.partition("=")
        if not sep:
            raise EvidenceError(f"optimizer_args entry {arg!r} is not key=value")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise EvidenceError(f"optimizer_args {arg!r}: the value is not a Python literal (kohya reads it with "
                                "ast.literal_eval)") from None
    return out


def make_optimizer(groups: list[dict], args: SimpleNamespace) -> tuple[torch.optim.Optimizer, str, str]:
    """(optimizer, kohya's ss_optimizer class name, its args string)."""
    kwargs = optimizer_kwargs(args)
    try:
        opt = torch.optim.AdamW(groups, lr=args.learning_rate, **kwargs)
    except TypeError as e:
        raise EvidenceError(f"optimizer_args: {e}") from None
    name = f"{torch.optim.AdamW.__module__}.{torch.optim.AdamW.__name__}"
    return opt, name, ",".join(f"{k}={v}" for k, v in kwargs.items())


def make_scheduler(optimizer: torch.optim.Optimizer, args: SimpleNamespace, num_training_steps: int):
    from transformers import optimization as o

    name = args.lr_scheduler
    warmup = args.lr_warmup_steps
    if isinstance(warmup, float):
        warmup = int(warmup * num_training_steps)
    if name == "constant":
        if warmup:
            raise EvidenceError("constant does not require `num_warmup_steps`. Set None or 0. (kohya refuses "
                                "lr_warmup_steps with the constant scheduler)")
        return o.get_constant_schedule(optimizer)
    if name == "constant_with_warmup":
        return o.get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup)
    if name == "linear":
        return o.get_linear_schedule_with_warmup(optimizer, warmup, num_training_steps)
    if name == "cosine":
        return o.get_cosine_schedule_with_warmup(optimizer, warmup, num_training_steps)
    if name == "cosine_with_restarts":
        return o.get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, warmup, num_training_steps,
                                                                   num_cycles=args.lr_scheduler_num_cycles)
    if name == "polynomial":
        return o.get_polynomial_decay_schedule_with_warmup(optimizer, warmup, num_training_steps,
                                                           power=args.lr_scheduler_power)
    raise EvidenceError(f"lr_scheduler {name!r} is not implemented by the builtin trainer")
