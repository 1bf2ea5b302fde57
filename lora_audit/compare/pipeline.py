"""Loading the base pipeline once and the LoRAs into it as named adapters (heavy: torch, diffusers)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_audit.compare.safety import check_model_folder, check_weights_file
from lora_audit.compare.spec import LoraSpec, Settings
from lora_audit.errors import EvidenceError

# --scheduler NAME -> (diffusers class, extra config); the names people use in A1111 / kohya sample prompts
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {}),
    "dpm++2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}
_A1111_NAMES = {"ddim": "DDIM", "pndm": "PLMS", "euler": "Euler", "euler_a": "Euler a", "heun": "Heun",
                "lms": "LMS", "dpm++2m": "DPM++ 2M", "dpm++2m_karras": "DPM++ 2M Karras", "unipc": "UniPC",
                "ddpm": "DDPM"}
_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


@dataclass
class LoadedLora:
    spec: LoraSpec
    adapter: str
    arch: str | None
    modules_in_file: int
    matched: int
    params: int
    size_bytes: int
    sha256: str

    @property
    def unmatched(self) -> int:
        return max(0, self.modules_in_file - self.matched)


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise EvidenceError("--device cuda: no CUDA device is available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        dtype = "fp16" if device == "cuda" else "fp32"  # CPU half precision is slow and not bit-stable
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def model_arch(pipe) -> str:
    return "sdxl" if "XL" in type(pipe).__name__ else "sd15"


def load_base(s: Settings, model_config: Path | None = None):
    """The pipeline, on its device and dtype, progress bars off; single files via from_single_file."""
    import transformers

    transformers.utils.logging.set_verbosity_error()  # before diffusers imports the pipelines' processors
    import diffusers
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from lora_audit.train.models import quiet_libraries

    quiet_libraries()
    warnings.filterwarnings("ignore", message=".*torch_dtype.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)
    device = resolve_device(s.device)
    dtype = resolve_dtype(s.dtype, device)
    base = Path(s.base)
    try:
        if base.is_dir():
            if not (base / "model_index.json").is_file():
                raise EvidenceError("not a diffusers model folder (no model_index.json)", str(base))
            check_model_folder(base, "base model folder")
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
    if not isinstance(pipe, (StableDiffusionPipeline, StableDiffusionXLPipeline)):
        raise EvidenceError(f"unsupported pipeline {type(pipe).__name__}: SD1.x and SDXL only", str(base))
    if s.scheduler:
        cls_name, extra = SCHEDULERS[s.scheduler]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), device, dtype


def _single_file_class(path: Path):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from lora_audit.evidence.safetensors_header import read_header

    check_weights_file(path, "single-file checkpoint")
    names = read_header(path).tensors
    sdxl = any(k.startswith("conditioner.embedders.1") for k in names)
    return StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline


def _check_model_config(model_config: Path | None, cls, base: Path) -> None:
    """A single file holds weights only; diffusers takes the components' configs from a diffusers folder of the same
    architecture (its weights are not read). Without one it would download them: refused, no network at run time."""
    from lora_audit.train.tiny_model import detect_arch

    want = cls.__name__
    if model_config is None:
        raise EvidenceError(f"a single-file checkpoint needs --model-config DIR: a diffusers folder of the same "
                            f"architecture ({want}; its configs are used, not its weights), as nothing is downloaded",
                            str(base))
    try:
        have = detect_arch(model_config)
    except EvidenceError as e:
        raise EvidenceError(f"--model-config: {e.message}", e.path) from None
    if (have == "sdxl") != ("XL" in want):
        raise EvidenceError(f"--model-config is a {have} folder but the checkpoint is {want}: give a folder of the "
                            f"checkpoint's architecture", str(model_config))


def sampler_name(pipe) -> str:
    cls = type(pipe.scheduler).__name__
    for key, (name, extra) in SCHEDULERS.items():
        if name == cls and all(pipe.scheduler.config.get(k) == v for k, v in extra.items()):
            return _A1111_NAMES[key]
    return cls


def load_lora(pipe, spec: LoraSpec, adapter: str) -> LoadedLora:
    """Load one LoRA as a named adapter; refuses another architecture's LoRA before touching the pipeline."""
    from lora_audit.evidence.safetensors_header import parse_safetensors, read_header
    from lora_audit.compare.spec import file_sha256

    path = Path(spec.path)
    if not path.is_file():
        raise EvidenceError("LoRA file not found", str(path))
    check_weights_file(path, "LoRA")
    ev = parse_safetensors(path)  # raises EvidenceError on a corrupt header
    if ev.facts.get("truncated"):
        raise EvidenceError("corrupt LoRA: the file is cut short", str(path))
    arch = ev.facts.get("arch")
    want = model_arch(pipe)
    if arch and arch != want:
        raise EvidenceError(f"LoRA is for {arch} but the base model is {want}: it cannot be applied", str(path))
    header = read_header(path)
    params = 0
    for t in header.tensors.values():
        n = 1
        for d in t.shape:
            n *= d
        params += n
    modules = sum(1 for k in header.tensors if k.endswith((".lora_down.weight", ".lora_A.weight", ".down.weight")))
    _check_diffusers_fit(pipe, header.tensors, want, path)
    try:
        pipe.load_lora_weights(str(path), adapter_name=adapter, use_safetensors=True)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise EvidenceError(f"cannot load LoRA: {str(e).splitlines()[0][:200]}", str(path)) from None
    matched = sum(1 for comp in _COMPONENTS if getattr(pipe, comp, None) is not None
                  for m in getattr(pipe, comp).modules() if adapter in getattr(m, "lora_A", {}))
    return LoadedLora(spec, adapter, arch, modules, matched, params, path.stat().st_size, file_sha256(path))


def _check_diffusers_fit(pipe, tensors: dict, arch: str, path: Path) -> None:
    """A diffusers/peft-format LoRA (``unet.<module>.lora_A.weight``) names the model's own modules, so its fit is
    checked directly: each module must exist and take the input width of the LoRA's down matrix. (kohya files are
    checked by architecture from their key layout in parse_safetensors.)"""
    fit, wrong = 0, []
    mods: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        comp, _, rest = key.partition(".")
        for tail in (".lora_A.weight", ".lora.down.weight"):
            if comp in _COMPONENTS and rest.endswith(tail):
                break
        else:
            continue
        if getattr(pipe, comp, None) is None:
            wrong.append(key)
            continue
        if comp not in mods:
            mods[comp] = dict(getattr(pipe, comp).named_modules())
        name = rest[: -len(tail)]
        m = mods[comp].get(name) or mods[comp].get(name.removeprefix("text_model.")) \
            or mods[comp].get("text_model." + name)
        width = getattr(m, "in_features", None) or getattr(m, "in_channels", None)
        if m is not None and len(t.shape) >= 2 and width == t.shape[1]:
            fit += 1
        else:
            wrong.append(key)
    if wrong:
        raise EvidenceError(f"LoRA does not fit this {arch} model: {len(wrong)} of {fit + len(wrong)} modules are "
                            f"missing or of another width (first: {wrong[0]}); made for another architecture?",
                            str(path))


def activate(pipe, adapter: str | None, strength: float = 0.0) -> None:
    """Base: LoRA layers off. Otherwise only ``adapter`` on, at ``strength`` (set_adapters, no reload)."""
    if adapter is None:
        if getattr(pipe, "get_list_adapters", None) and any(pipe.get_list_adapters().values()):
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([adapter], [strength])


def initial_latents(pipe, seed: int, width: int, height: int):
    """The starting noise of (seed, size), made on the CPU in fp32 so it is the same on every device, once per
    (prompt, seed) and reused for every row."""
    import torch

    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def model_info(pipe, base: Path) -> dict[str, Any]:
    params = sum(p.numel() for comp in _COMPONENTS + ("vae",) if getattr(pipe, comp, None) is not None
                 for p in getattr(pipe, comp).parameters())
    return {"path": str(base), "arch": model_arch(pipe), "pipeline": type(pipe).__name__, "parameters": params,
            "scheduler": type(pipe.scheduler).__name__}
