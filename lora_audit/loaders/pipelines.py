"""Local diffusers models, offline and never from a pickle: which architecture a folder holds, the whole pipeline
(``compare``) or its parts for training (``train``).

Architectures by pipeline class: SD1.x/2.x ``StableDiffusionPipeline`` (sd15), ``StableDiffusionXLPipeline``
(sdxl), ``FluxPipeline`` (flux: FLUX.1 dev, schnell, Chroma-style folders), ``StableDiffusion3Pipeline`` (sd3).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_audit.errors import EvidenceError
from lora_audit.loaders.guard import check_model_folder, check_weights_file

PIPELINE_ARCH = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl", "FluxPipeline": "flux",
                 "StableDiffusion3Pipeline": "sd3"}
SUPPORTED = "SD1.x, SDXL, FLUX.1 and SD3"


def quiet_libraries() -> None:
    """No per-file loading bars or info logs from transformers/diffusers (warnings and errors still show)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()  # before diffusers imports the pipelines' processors
    import diffusers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*torch_dtype.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)


def detect_arch(path: Path | str) -> str:
    """sd15, sdxl, flux or sd3, from a diffusers pipeline folder's model_index.json."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise EvidenceError("not a diffusers model folder (no model_index.json)", str(path))
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (ValueError, AttributeError) as e:
        raise EvidenceError(f"model_index.json is not a JSON object: {e}", str(index)) from None
    if cls in PIPELINE_ARCH:
        return PIPELINE_ARCH[cls]
    if "Flux" in cls:
        return "flux"
    if "StableDiffusion3" in cls:
        return "sd3"
    return "sdxl" if "XL" in cls else "sd15"


def pipeline_arch(pipe: Any) -> str:
    name = type(pipe).__name__
    return PIPELINE_ARCH.get(name) or ("sdxl" if "XL" in name else "sd15")


def denoiser(pipe: Any) -> Any:
    """The U-Net (SD1.x/SDXL) or the transformer (FLUX, SD3): the model a LoRA's ``lora_unet`` keys wrap."""
    return getattr(pipe, "unet", None) or pipe.transformer


def load_pipeline(base: Path, dtype: Any, model_config: Path | None = None) -> Any:
    """The pipeline of a diffusers folder (``from_pretrained``) or a single SD1.x/SDXL ``.safetensors`` checkpoint
    (``from_single_file`` with the configs of ``model_config``), on the CPU in ``dtype``; nothing downloaded."""
    from diffusers import DiffusionPipeline

    quiet_libraries()
    base = Path(base)
    try:
        if base.is_dir():
            if not (base / "model_index.json").is_file():
                raise EvidenceError("not a diffusers model folder (no model_index.json)", str(base))
            check_model_folder(base, "base model folder")
            _refuse_unsupported(base)
            pipe = DiffusionPipeline.from_pretrained(base, torch_dtype=dtype, local_files_only=True,
                                                     use_safetensors=True)  # never a pickle, not even as fallback
        elif base.is_file():
            cls = _single_file_class(base)
            _check_model_config(model_config, cls, base)
            pipe = cls.from_single_file(str(base), config=str(model_config), torch_dtype=dtype,
                                        local_files_only=True)
        else:
            raise EvidenceError("base model not found", str(base))
    except EvidenceError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise EvidenceError(f"cannot load the base model: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            str(base)) from None
    if type(pipe).__name__ not in PIPELINE_ARCH:
        raise EvidenceError(f"unsupported pipeline {type(pipe).__name__}: {SUPPORTED} only", str(base))
    return pipe


# pipelines diffusers has for the other sd-scripts trainers; compare does not drive them yet
_NOT_YET = {"Lumina2Pipeline": "Lumina", "LuminaPipeline": "Lumina", "Lumina2Text2ImgPipeline": "Lumina",
            "HunyuanImagePipeline": "HunyuanImage", "HunyuanDiTPipeline": "HunyuanDiT", "ChromaPipeline": "Chroma"}


def _refuse_unsupported(base: Path) -> None:
    """One line before anything is loaded when the folder's pipeline is not one compare drives (loading a whole
    Lumina or HunyuanImage pipeline only to refuse it would cost minutes and gigabytes)."""
    try:
        cls = json.loads((base / "model_index.json").read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError, AttributeError) as e:
        raise EvidenceError(f"model_index.json is not a JSON object: {e}", str(base / "model_index.json")) from None
    if not isinstance(cls, str) or cls in PIPELINE_ARCH:
        return
    family = _NOT_YET.get(cls)
    what = f"{family} ({cls})" if family else str(cls)
    raise EvidenceError(f"compare does not support {what} models yet: {SUPPORTED} only", str(base))


def _single_file_class(path: Path) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from lora_audit.evidence.safetensors_header import read_header

    check_weights_file(path, "single-file checkpoint")
    names = read_header(path).tensors
    for marker, arch in ((".double_blocks.", "FLUX.1"), (".joint_blocks.", "SD3")):
        if any(marker in f".{k}" for k in names):
            raise EvidenceError(f"a single-file {arch} checkpoint is not supported yet: give its diffusers folder "
                                "(model_index.json, transformer/, vae/, text encoders)", str(path))
    sdxl = any(k.startswith("conditioner.embedders.1") for k in names)
    return StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline


def _check_model_config(model_config: Path | None, cls: Any, base: Path) -> None:
    """A single file holds weights only; diffusers takes the components' configs from a diffusers folder of the same
    architecture (its weights are not read). Without one it would download them: refused, no network at run time."""
    want = cls.__name__
    if model_config is None:
        raise EvidenceError(f"a single-file checkpoint needs --model-config DIR: a diffusers folder of the same "
                            f"architecture ({want}; its configs are used, not its weights), as nothing is downloaded",
                            str(base))
    try:
        have = detect_arch(model_config)
    except EvidenceError as e:
        raise EvidenceError(f"--model-config: {e.message}", e.path) from None
    if have not in ("sd15", "sdxl") or (have == "sdxl") != ("XL" in want):
        raise EvidenceError(f"--model-config is a {have} folder but the checkpoint is {want}: give a folder of the "
                            f"checkpoint's architecture", str(model_config))


# --- the parts, for training ------------------------------------------------------------------------------------------

@dataclass
class Models:
    tokenizers: list[Any]
    text_encoders: list[Any]
    vae: Any
    unet: Any


def load_models(folder: Path, arch: str) -> Models:
    """Tokenizers, text encoders, VAE and U-Net of a local SD1.x / SDXL folder: fp32, CPU, frozen, no download."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_libraries()
    subfolders = ["tokenizer", "text_encoder", "vae", "unet"] + (["tokenizer_2", "text_encoder_2"]
                                                                  if arch == "sdxl" else [])
    for sub in subfolders:
        if not (folder / sub).is_dir():
            raise EvidenceError(f"not a diffusers {arch} model folder: {sub}/ is missing", str(folder))
    check_model_folder(folder, "model folder")
    try:
        tokenizers = [CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)]
        text_encoders = [CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True,
                                                       use_safetensors=True)]
        if arch == "sdxl":
            tokenizers.append(CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True))
            text_encoders.append(CLIPTextModelWithProjection.from_pretrained(
                folder / "text_encoder_2", local_files_only=True, use_safetensors=True))
        vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, use_safetensors=True)
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvidenceError(f"cannot load the model: {first}", str(folder)) from None
    for model in text_encoders + [vae, unet]:
        model.requires_grad_(False)
        model.to("cpu", dtype=torch.float32)
    vae.eval()
    return Models(tokenizers=tokenizers, text_encoders=text_encoders, vae=vae, unet=unet)
