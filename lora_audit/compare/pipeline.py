"""Loading the base pipeline once and the LoRAs into it as named adapters (heavy: torch, diffusers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_audit.compare.spec import LoraSpec, Settings
from lora_audit.errors import EvidenceError
from lora_audit.loaders.guard import check_weights_file
from lora_audit.loaders.pipelines import denoiser, load_pipeline, pipeline_arch

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
_COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
FLOW_ARCHES = ("flux", "sd3")  # flow-matching transformers (kohya: flux_train_network.py, sd3_train_network.py)


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
    return pipeline_arch(pipe)


def load_base(s: Settings, model_config: Path | None = None):
    """The pipeline, on its device and dtype, progress bars off; single files via from_single_file."""
    import diffusers

    device = resolve_device(s.device)
    dtype = resolve_dtype(s.dtype, device)
    pipe = load_pipeline(Path(s.base), dtype, model_config)
    arch = pipeline_arch(pipe)
    if s.cfg is None:  # the model's own default: diffusers' pipelines use 7.0, FluxPipeline 3.5 (distilled guidance)
        s.cfg = 3.5 if arch == "flux" and pipe.transformer.config.guidance_embeds else 0.0 if arch == "flux" else 7.0
    if arch in FLOW_ARCHES:
        _check_flow_settings(s, arch)
    if s.scheduler:
        cls_name, extra = SCHEDULERS[s.scheduler]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), device, dtype


def _check_flow_settings(s: Settings, arch: str) -> None:
    """FLUX.1 and SD3 sample with their flow-matching scheduler and pack 2x2 latent patches: the SD samplers and
    sizes that are not multiples of 16 do not apply (FluxPipeline would silently resize)."""
    name = {"flux": "FLUX.1", "sd3": "SD3"}[arch]
    if s.scheduler:
        raise EvidenceError(f"--scheduler {s.scheduler}: {name} samples with its own flow-matching scheduler "
                            "(FlowMatchEulerDiscreteScheduler); leave --scheduler out")
    if s.width % 16 or s.height % 16:
        raise EvidenceError(f"--size {s.width}x{s.height}: {name} needs multiples of 16 (8 for the VAE x 2 for "
                            "the transformer's patches)")
    if arch == "flux" and s.negative:
        raise EvidenceError("--negative: FLUX.1 is guidance-distilled and is sampled without a negative prompt")


def sampler_name(pipe) -> str:
    cls = type(pipe.scheduler).__name__
    for key, (name, extra) in SCHEDULERS.items():
        if name == cls and all(pipe.scheduler.config.get(k) == v for k, v in extra.items()):
            return _A1111_NAMES[key]
    return cls


def load_lora(pipe, spec: LoraSpec, adapter: str) -> LoadedLora:
    """Load one LoRA as a named adapter; refuses another architecture's LoRA before touching the pipeline."""
    from lora_audit.compare.spec import file_sha256
    from lora_audit.evidence.safetensors_header import parse_safetensors, read_header

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
    kohya_dit = want in FLOW_ARCHES and any(k.startswith(("lora_unet_", "lora_te")) and k.endswith(".lora_down.weight")
                                            for k in header.tensors)  # other layouts: diffusers' own converters
    source: dict[str, Any] | str = str(path)
    if kohya_dit:
        source, matched = _kohya_dit_state_dict(pipe, path, want)
    else:
        _check_diffusers_fit(pipe, header.tensors, want, path)
    try:
        pipe.load_lora_weights(source, adapter_name=adapter, use_safetensors=True)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise EvidenceError(f"cannot load LoRA: {str(e).splitlines()[0][:200]}", str(path)) from None
    wrapped = sum(1 for comp in _COMPONENTS if getattr(pipe, comp, None) is not None
                  for m in getattr(pipe, comp).modules() if adapter in getattr(m, "lora_A", {}))
    if not kohya_dit:
        matched = wrapped
    elif wrapped < len(source) // 2:
        raise EvidenceError(f"cannot load LoRA: diffusers wrapped {wrapped} of the {len(source) // 2} modules "
                            "converted from kohya's layout", str(path))
    return LoadedLora(spec, adapter, arch, modules, matched, params, path.stat().st_size, file_sha256(path))


def _kohya_dit_state_dict(pipe, path: Path, arch: str) -> tuple[dict[str, Any], int]:
    """A kohya FLUX.1/SD3 file as PEFT keys of this pipeline (loaders.dit_lora) and how many kohya modules it fits;
    a file whose modules exist with other widths (another model size) is refused, as for the U-Nets."""
    from safetensors.torch import load_file

    from lora_audit.loaders.dit_lora import convert

    conv = convert(load_file(str(path)), pipe, arch)
    if conv.wrong_width:
        n = len(conv.wrong_width)
        raise EvidenceError(f"LoRA does not fit this {arch} model: {n} of {n + len(conv.matched)} modules are of "
                            f"another width (first: {conv.wrong_width[0]}); made for a model of another size?",
                            str(path))
    if not conv.matched:
        raise EvidenceError(f"LoRA does not fit this {arch} model: none of its {len(conv.unmatched)} modules is one "
                            f"of the model's (first: {conv.unmatched[0]})", str(path))
    return conv.state_dict, len(conv.matched)


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
    (prompt, seed) and reused for every row. FLUX's is drawn as its pipeline draws it (16 channels at 1/8 size),
    then packed into 2x2 patches (``FluxPipeline._pack_latents``), the form its ``latents`` argument takes."""
    import torch

    arch = pipeline_arch(pipe)
    channels = pipe.transformer.config.in_channels // 4 if arch == "flux" else denoiser(pipe).config.in_channels
    h, w = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
    noise = torch.randn((1, channels, h, w), generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
    return pipe._pack_latents(noise, 1, channels, h, w) if arch == "flux" else noise


def call_kwargs(pipe, s: Settings, prompt: str, n: int) -> dict[str, Any]:
    """The pipeline arguments every row shares (besides latents and generators): FLUX.1 takes ``--cfg`` as its
    distilled guidance (ignored by a model without a guidance embedding, as schnell) and SD3 as true CFG; both read
    at most ``max_sequence_length`` T5 tokens (recorded in model_info)."""
    kw: dict[str, Any] = dict(prompt=[prompt] * n, num_inference_steps=s.steps, guidance_scale=s.cfg,
                              height=s.height, width=s.width, output_type="pil")
    arch = pipeline_arch(pipe)
    if arch in FLOW_ARCHES:
        kw["max_sequence_length"] = _max_sequence_length(pipe)
    if s.negative:
        kw["negative_prompt"] = [s.negative] * n
    return kw


def _max_sequence_length(pipe) -> int:
    """The pipelines' defaults (FluxPipeline 512, StableDiffusion3Pipeline 256), capped by the T5 tokenizer's."""
    default = 512 if pipeline_arch(pipe) == "flux" else 256
    tok = getattr(pipe, "tokenizer_2" if pipeline_arch(pipe) == "flux" else "tokenizer_3", None)
    limit = getattr(tok, "model_max_length", default) or default
    return min(default, int(limit))


def sampling_info(pipe, s: Settings) -> dict[str, Any] | None:
    """What a flow-matching comparison was sampled with (comparison.json, report.md); None for SD1.x/SDXL."""
    arch = pipeline_arch(pipe)
    if arch not in FLOW_ARCHES:
        return None
    cfg = pipe.scheduler.config
    keys = ["shift", "use_dynamic_shifting"]
    if cfg.get("use_dynamic_shifting"):  # FLUX.1-dev: the shift grows with the image's token count
        keys += ["base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len"]
    shift = {k: cfg.get(k) for k in keys if cfg.get(k) is not None}
    if arch == "flux":
        embedded = bool(pipe.transformer.config.guidance_embeds)
        guidance = (f"distilled guidance {s.cfg:g} (FLUX.1-dev: embedded, no CFG pass)" if embedded else
                    "none: no guidance embedding (FLUX.1-schnell), --cfg ignored")
    else:
        guidance = f"classifier-free guidance {s.cfg:g}" if s.cfg > 1 else "none (cfg <= 1)"
    return {"family": "flow matching", "guidance": guidance, "max_sequence_length": _max_sequence_length(pipe),
            "scheduler_shift": shift}


def model_info(pipe, base: Path, s: Settings | None = None) -> dict[str, Any]:
    params = sum(p.numel() for comp in _COMPONENTS + ("vae",) if getattr(pipe, comp, None) is not None
                 for p in getattr(pipe, comp).parameters())
    info = {"path": str(base), "arch": model_arch(pipe), "pipeline": type(pipe).__name__, "parameters": params,
            "scheduler": type(pipe.scheduler).__name__}
    sampling = sampling_info(pipe, s) if s is not None else None
    if sampling:
        info["sampling"] = sampling
    return info
