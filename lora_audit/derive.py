"""Derived quantities: often the real change hides in them (alpha/dim scale, effective batch, steps, pixels)."""

from __future__ import annotations

import math

from lora_audit.kohya.normalize import resolution_pair
from lora_audit.model import Origin, Param, Run


def _known(run: Run, name: str):
    p = run.params.get(name)
    if p is None or p.origin == "unknown":
        return None, None
    return p.value, p


def _origin(*ps: Param | None) -> Origin:
    origins = {p.origin for p in ps if p is not None}
    return "inferred" if "inferred" in origins else ("explicit" if "explicit" in origins else "default")


def derive(run: Run) -> dict[str, Param]:
    """Derived quantities of one run, each with a note saying how it was derived (unknown when it can't be)."""
    out: dict[str, Param] = {}

    def put(name, value, how, *ps):
        if value is None:
            out[name] = Param(origin="unknown", note=how)
        else:
            out[name] = Param(value=value, origin=_origin(*ps), note=how)

    dim, pd = _known(run, "network_dim")
    alpha, pa = _known(run, "network_alpha")
    scale = None
    if isinstance(dim, (int, float)) and isinstance(alpha, (int, float)) and dim:
        scale = round(alpha / dim, 6)
    put("lora_scale", scale, "network_alpha / network_dim: kohya multiplies the LoRA's output by alpha/dim", pd, pa)

    bs, pb = _known(run, "train_batch_size")
    ga, pg = _known(run, "gradient_accumulation_steps")
    procs = int(run.facts.num_processes or 1)
    eff = bs * (ga or 1) * procs if isinstance(bs, int) and not isinstance(ga, list) else None
    put("effective_batch", eff,
        f"train_batch_size × gradient_accumulation_steps × processes ({procs}, from accelerate launch options)", pb, pg)

    res, pr = _known(run, "resolution")
    pair = resolution_pair(res) if res is not None and not isinstance(res, list) else None
    put("pixels_per_sample", pair[0] * pair[1] if pair else None, "width × height of resolution", pr)

    images = run.facts.image_count
    repeats, prep = _known(run, "num_repeats")
    if repeats is None:
        repeats = run.facts.repeats
    per_epoch = images * repeats if isinstance(images, int) and isinstance(repeats, int) else None
    put("images_per_epoch", per_epoch,
        "images × num_repeats (run.toml [dataset] images and repeats, or the dataset config)", prep)

    epochs, pe = _known(run, "max_train_epochs")
    steps, ps = _known(run, "max_train_steps")
    total = None
    how = "max_train_steps"
    if isinstance(epochs, int) and per_epoch and eff:
        # kohya: steps per epoch = ceil(len(dataloader) / grad accumulation); len = ceil(images/batch) per process
        batches = math.ceil(per_epoch / (bs * procs))
        total = epochs * math.ceil(batches / (ga or 1))
        how = "max_train_epochs × ceil(ceil(images_per_epoch / (batch × processes)) / grad accumulation)"
    elif isinstance(steps, int) and epochs is None:
        total = steps
    put("total_optimizer_steps", total, how, pe, ps)
    return out
