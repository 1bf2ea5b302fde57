"""The builtin trainer: ``train_network.py``'s loop on a local diffusers model, with peft LoRA, on CPU in fp32.

The loop follows ``NetworkTrainer.train`` (sd-scripts at the catalog's commit): seed everything, add LoRA to the
text encoder(s) and UNet, compute the steps from epochs, then per batch: VAE latents, caption embeddings, noise and
timesteps, noise prediction, MSE per sample, Min-SNR weighting, backward; at each optimizer step (every
``gradient_accumulation_steps`` batches and at an epoch's end, as accelerate syncs) clip, step, schedule. A LoRA file
is saved every ``save_every_n_epochs`` and at the end, in kohya's format.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.train.options import TrainPlan, plan_training

_LATENT_SCALE = {"sd15": 0.18215, "sdxl": 0.13025}  # kohya's constants (model_util / sdxl_model_util)


@dataclass
class TrainResult:
    files: list[Path] = field(default_factory=list)  # every LoRA written, in order; the last is the final one
    steps: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)  # per batch
    log_dir: Path | None = None
    interrupted: bool = False

    @property
    def final(self) -> Path | None:
        return self.files[-1] if self.files and not self.interrupted else None


def train(argv: list[str], base_dir: Path | None = None, ignore_unsupported: bool = False,
          echo: Callable[[str], None] = print, progress: bool = True) -> TrainResult:
    """Train a LoRA from kohya flags (``--config_file``, ``--dataset_config``, ``--flag``s); see ``plan_training``."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    plan = plan_training(argv, base, ignore_unsupported)
    for note in plan.notes:
        echo(f"note: {note}")
    return run(plan, base, echo=echo, progress=progress)


def _set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Session:
    """What one training holds while it runs (models, networks, schedules, the result being filled)."""

    plan: TrainPlan
    m: Any
    parts: list[tuple[str, Any]]
    te_params: list[Any]
    unet_params: list[Any]
    dim: int
    alpha: float
    out_dir: Path
    result: TrainResult
    images: Any = None
    sched: Any = None
    snr: Any = None
    md: dict[str, str] = field(default_factory=dict)


def run(plan: TrainPlan, base: Path, echo: Callable[[str], None] = print, progress: bool = True) -> TrainResult:
    from lora_audit.loaders.pipelines import load_models, quiet_libraries
    from lora_audit.train import data as D
    from lora_audit.train import metadata, noise, schedule
    from lora_audit.train.logs import StepLog

    quiet_libraries()
    args = plan.args
    session_id = random.randint(0, 2**32)
    started_at = time.time()
    out_dir = _output_dir(args, base)
    if args.seed is None:
        args.seed = random.randint(0, 2**32)
    _set_seed(args.seed)

    ses = _add_networks(plan, load_models(plan.model, plan.arch), out_dir)
    ses.images = D.TrainImages(plan.datasets)
    _cache_latents(ses)
    num_batches, num_epochs = _steps(args, ses.images)
    ses.result.epochs = num_epochs

    groups, lr_names = schedule.param_groups(ses.te_params, ses.unet_params, args)
    if not groups:
        raise EvidenceError("nothing to train: every learning rate is 0 or None")
    optimizer, opt_name, opt_args = schedule.make_optimizer(groups, args)
    scheduler = schedule.make_scheduler(optimizer, args, args.max_train_steps)
    ses.sched = noise.make_noise_scheduler(args.zero_terminal_snr)
    ses.snr = noise.all_snr(ses.sched)
    ses.md = metadata.training_metadata(plan, ses.images, session_id=session_id, started_at=started_at,
                                        text_encoder_lr=schedule.text_encoder_lr(args), optimizer_name=opt_name,
                                        optimizer_args=opt_args, num_batches_per_epoch=num_batches,
                                        num_epochs=num_epochs)
    log = StepLog(args, base, lr_names) if args.logging_dir is not None else None
    echo(f"training {plan.arch} LoRA dim {ses.dim} alpha {ses.alpha}: {ses.images.num_train_images} images with "
         f"repeats, {num_batches} batches per epoch, {num_epochs} epochs, {args.max_train_steps} optimizer steps")
    return _loop(ses, optimizer, scheduler, log, echo, progress)


def _output_dir(args: Any, base: Path) -> Path:
    if args.output_dir is None:
        raise EvidenceError("output_dir is not set")
    if args.log_with == "tensorboard" and args.logging_dir is None:
        raise EvidenceError("logging_dir is required when log_with is tensorboard (kohya refuses it)")
    out_dir = Path(str(args.output_dir)).expanduser()
    return out_dir if out_dir.is_absolute() else base / out_dir


def _add_networks(plan: TrainPlan, m: Any, out_dir: Path) -> _Session:
    """LoRA on the text encoder(s) and the U-Net as kohya's flags say; only the LoRA weights train."""
    from lora_audit.train import lora

    args = plan.args
    train_unet = not args.network_train_text_encoder_only
    train_te = not args.network_train_unet_only
    dim = args.network_dim if args.network_dim is not None else 4  # networks/lora.create_network defaults
    alpha = args.network_alpha if args.network_alpha is not None else 1.0
    alpha = dim if alpha == 0 else alpha  # LoRAModule: alpha 0 means alpha = dim
    te_prefixes = ["lora_te1", "lora_te2"] if plan.arch == "sdxl" else ["lora_te"]
    parts: list[tuple[str, Any]] = []
    if train_te:
        for prefix, te in zip(te_prefixes, m.text_encoders, strict=False):
            lora.add_lora(te, lora.TEXT_TARGETS, dim, alpha)
            parts.append((prefix, te))
    if train_unet:
        lora.add_lora(m.unet, lora.UNET_TARGETS, dim, alpha)
        parts.append(("lora_unet", m.unet))
    te_params = [p for prefix, mod in parts if prefix != "lora_unet" for p in lora.lora_parameters(mod)]
    unet_params = lora.lora_parameters(m.unet) if train_unet else []
    for p in te_params + unet_params:
        p.requires_grad_(True)
    for te in m.text_encoders:
        te.train(train_te)
    m.unet.train()
    return _Session(plan, m, parts, te_params, unet_params, dim, alpha, out_dir, TrainResult())


def _cache_latents(ses: _Session) -> None:
    """cache_latents: once, before training, as kohya does (one VAE sample per image)."""
    import torch

    from lora_audit.train import data as D

    if ses.plan.args.cache_latents:
        with torch.no_grad():
            for it in ses.images.items():
                it.latents = ses.m.vae.encode(D.pixels(it).unsqueeze(0)).latent_dist.sample()[0]


def _steps(args: Any, images: Any) -> tuple[int, int]:
    """(batches per epoch, epochs); sets max_train_steps from max_train_epochs and save_every_n_epochs from
    save_n_epoch_ratio as train_network.py does."""
    gas = args.gradient_accumulation_steps
    num_batches = images.num_batches()
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * math.ceil(num_batches / gas)
    per_epoch = math.ceil(num_batches / gas)
    num_epochs = math.ceil(args.max_train_steps / per_epoch)
    if args.save_n_epoch_ratio:
        args.save_every_n_epochs = math.floor(num_epochs / args.save_n_epoch_ratio) or 1
    return num_batches, num_epochs


def _save(ses: _Session, name: str, steps: int, epoch_no: int) -> Path:
    import torch

    from lora_audit.train import lora, metadata

    args, md = ses.plan.args, ses.md
    sgm = ses.m.unet.config.layers_per_block if ses.plan.arch == "sdxl" else None
    save_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32}.get(args.save_precision)
    md["ss_training_finished_at"] = str(time.time())
    md["ss_steps"], md["ss_epoch"] = str(steps), str(epoch_no)
    tensors = lora.kohya_state_dict(ses.parts, ses.alpha, save_dtype, sgm)
    meta = {k: v for k, v in md.items() if k in metadata.MINIMUM_KEYS} if args.no_metadata else dict(md)
    meta.update(metadata.modelspec(ses.plan))
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = metadata.safetensors_hashes(tensors, meta)
    path = ses.out_dir / name
    metadata.write_lora(path, tensors, meta)
    ses.result.files.append(path)
    return path


def _batch_loss(ses: _Session, batch: Any, epoch_no: int) -> Any:
    """NetworkTrainer.process_batch: latents, text conditioning, noise, prediction, weighted MSE."""
    import torch
    import torch.nn.functional as F

    from lora_audit.train import data as D
    from lora_audit.train import noise, text

    args, m = ses.plan.args, ses.m
    caps = D.captions(batch, epoch_no)
    with torch.no_grad():
        if batch.items[0].latents is not None:
            latents = torch.stack([it.latents for it in batch.items])
        else:
            latents = m.vae.encode(torch.stack([D.pixels(it) for it in batch.items])).latent_dist.sample()
        latents = latents * _LATENT_SCALE[ses.plan.arch]
    with torch.set_grad_enabled(not args.network_train_unet_only):
        if ses.plan.arch == "sdxl":
            ids1 = text.batch_ids(m.tokenizers[0], caps, args.max_token_length)
            ids2 = text.batch_ids(m.tokenizers[1], caps, args.max_token_length)
            ctx, pool = text.encode_sdxl(m.text_encoders[0], m.text_encoders[1], m.tokenizers[1], ids1, ids2)
            cond = {"text_embeds": pool, "time_ids": D.size_conditions(batch)}
        else:
            ids = text.batch_ids(m.tokenizers[0], caps, args.max_token_length)
            ctx, cond = text.encode_sd(m.text_encoders[0], m.tokenizers[0], ids, args.clip_skip), None
    eps, noisy, timesteps = noise.noise_and_timesteps(args, ses.sched, latents)
    pred = m.unet(noisy, timesteps, ctx, added_cond_kwargs=cond).sample
    loss = F.mse_loss(pred.float(), eps.float(), reduction="none").mean(dim=[1, 2, 3])
    if args.min_snr_gamma:
        loss = noise.apply_snr_weight(loss, timesteps, ses.snr, args.min_snr_gamma)
    if args.debiased_estimation_loss:
        loss = noise.apply_debiased_estimation(loss, timesteps, ses.snr)
    return loss.mean()


def _loop(ses: _Session, optimizer: Any, scheduler: Any, log: Any, echo: Callable[[str], None],
          progress: bool) -> TrainResult:
    """The epochs: optimizer steps at each accumulation boundary, logs, epoch saves, the final save; Ctrl-C stops
    with what was saved."""
    import torch
    from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-tqdm is installed

    from lora_audit.train.logs import LossRecorder

    args, result = ses.plan.args, ses.result
    num_epochs, gas = result.epochs, args.gradient_accumulation_steps
    result.log_dir = log.dir if log else None
    recorder = LossRecorder()
    all_lora = ses.te_params + ses.unet_params
    bar = tqdm(total=args.max_train_steps, desc="steps", smoothing=0, disable=not progress)

    def say(message: str) -> None:
        with tqdm.external_write_mode():  # clears the bar, prints, redraws it
            echo(message)

    name = args.output_name
    global_step = 0
    try:
        for epoch in range(num_epochs):
            say(f"epoch {epoch + 1}/{num_epochs}")
            batches = ses.images.epoch(args.seed, epoch + 1)
            for step, batch in enumerate(batches):
                loss = _batch_loss(ses, batch, epoch + 1)
                (loss / gas).backward()  # accelerator.backward divides by the accumulation steps
                sync = (step + 1) % gas == 0 or step + 1 == len(batches)
                if sync:
                    # kohya clips over all of the network's parameters (get_trainable_params), lr 0 groups included
                    if args.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(all_lora, args.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                    bar.update(1)
                current = loss.detach().item()
                result.losses.append(current)
                recorder.add(epoch, step, current)
                bar.set_postfix(epoch=f"{epoch + 1}/{num_epochs}", avr_loss=recorder.moving_average)
                if log and sync:
                    log.step(global_step, epoch + 1, current, recorder.moving_average, scheduler.get_last_lr())
                if global_step >= args.max_train_steps:
                    break
            if log:
                log.epoch(global_step, recorder.moving_average)
            result.steps = global_step
            _save_epoch(ses, epoch, global_step, say)
        result.steps = global_step
        path = _save(ses, f"{name or 'last'}.safetensors", global_step, num_epochs)
        bar.close()
        echo(f"model saved: {path}")
    except KeyboardInterrupt:
        bar.close()
        result.interrupted, result.steps = True, global_step
        last = result.files[-1] if result.files else None
        echo(f"interrupted at step {global_step}; " + (f"last saved: {last}" if last else "nothing saved yet"))
    finally:
        if log:
            log.close()
    return result


def _save_epoch(ses: _Session, epoch: int, global_step: int, say: Callable[[str], None]) -> None:
    """save_every_n_epochs (not after the last epoch: the final save follows), save_last_n_epochs removal."""
    args, name, n = ses.plan.args, ses.plan.args.output_name, ses.plan.args.save_every_n_epochs
    if n and (epoch + 1) % n == 0 and epoch + 1 < ses.result.epochs:
        path = _save(ses, f"{name or 'epoch'}-{epoch + 1:06d}.safetensors", global_step, epoch + 1)
        say(f"saving checkpoint: {path}")
        if args.save_last_n_epochs is not None:  # train_util.get_remove_epoch_no
            old = epoch + 1 - n * args.save_last_n_epochs
            stale = ses.out_dir / f"{name or 'epoch'}-{old:06d}.safetensors"
            if old > 0 and stale.exists():
                stale.unlink()
