"""Which base architecture a run trains, from every kind of evidence that can say it.

``base_architecture`` is one of ``ARCHITECTURES``. The evidence, strongest first:
- the training script (``flux_train_network.py`` trains FLUX.1; ``train_network.py`` SD1.x, or SD2.x with ``--v2``);
- the network module (``networks.lora_flux`` is FLUX's, ``networks.lora_sd3`` SD3's, ...);
- the LoRA's metadata: ``ss_base_model_version`` (``flux1``, ``lumina2``, ``sdxl_base_v1-0``, SD3's model type) and
  ``modelspec.architecture`` (``flux-1-dev/lora``, ``stable-diffusion-3-5-large/lora``; library/sai_model_spec.py);
- the LoRA's key names and widths (``lora_keys``);
- the base model's file name (``flux1-dev.safetensors``), the weakest hint.
The kohya_ss GUI's model checkboxes (``flux1_checkbox``, ``sd3_checkbox``, ...) pick the script
(``gui_keys.toml [scripts]``), so they arrive here as a script.
"""

from __future__ import annotations

import re

ARCHITECTURES = ("sd15", "sd2", "sdxl", "flux", "sd3", "lumina", "hunyuan_image", "anima")
LABELS = {"sd15": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL", "flux": "FLUX.1", "sd3": "SD3/SD3.5",
          "lumina": "Lumina 2", "hunyuan_image": "HunyuanImage 2.1", "anima": "Anima"}

# training script -> architecture (None: SD1.x or SD2.x, told apart by --v2)
SCRIPT_ARCH: dict[str, str | None] = {
    "train_network.py": None, "train_db.py": None, "fine_tune.py": None,
    "train_textual_inversion.py": None, "train_control_net.py": None,
    "sdxl_train_network.py": "sdxl", "sdxl_train.py": "sdxl", "sdxl_train_control_net.py": "sdxl",
    "sdxl_train_control_net_lllite.py": "sdxl", "sdxl_train_textual_inversion.py": "sdxl",
    "flux_train_network.py": "flux", "flux_train.py": "flux", "flux_train_control_net.py": "flux",
    "sd3_train_network.py": "sd3", "sd3_train.py": "sd3",
    "lumina_train_network.py": "lumina", "lumina_train.py": "lumina",
    "hunyuan_image_train_network.py": "hunyuan_image",
    "anima_train_network.py": "anima", "anima_train.py": "anima",
}
# the LoRA trainer of each architecture (for messages: "a FLUX.1 LoRA is trained by flux_train_network.py")
NETWORK_SCRIPT = {"sd15": "train_network.py", "sd2": "train_network.py", "sdxl": "sdxl_train_network.py",
                  "flux": "flux_train_network.py", "sd3": "sd3_train_network.py",
                  "lumina": "lumina_train_network.py", "hunyuan_image": "hunyuan_image_train_network.py",
                  "anima": "anima_train_network.py"}
# networks/*.py made for one architecture (networks.lora, dylora, lycoris serve the U-Nets and more)
NETWORK_MODULE_ARCH = {
    "networks.lora_flux": "flux", "networks.oft_flux": "flux", "networks.lora_sd3": "sd3",
    "networks.lora_lumina": "lumina", "networks.lora_hunyuan_image": "hunyuan_image",
    "networks.lora_anima": "anima",
}
# modelspec.architecture prefixes (library/sai_model_spec.py ARCH_*)
_MODELSPEC = [("stable-diffusion-xl", "sdxl"), ("stable-diffusion-v2", "sd2"), ("stable-diffusion-v1", "sd15"),
              ("stable-diffusion-3", "sd3"), ("flux-1", "flux"), ("chroma", "flux"), ("lumina", "lumina"),
              ("hunyuan-image", "hunyuan_image"), ("anima", "anima")]
# ss_base_model_version values (model_util.get_model_version_str_for_sd1_sd2, sdxl_model_util, flux_utils,
# lumina_util, hunyuan_image_utils; sd3_train_network writes the MMDiT's model type, anima_train_network "anima")
_SS_VERSION = [(re.compile(r"^sd_v1"), "sd15"), (re.compile(r"^sd_v2"), "sd2"), (re.compile(r"^sdxl"), "sdxl"),
               (re.compile(r"^(flux1|chroma)"), "flux"), (re.compile(r"^(medium|5-large|5-medium|sd3)"), "sd3"),
               (re.compile(r"^lumina"), "lumina"), (re.compile(r"^hunyuan-image"), "hunyuan_image"),
               (re.compile(r"^anima"), "anima")]
# base model file names people keep (flux1-dev.safetensors, sd3.5_large.safetensors, ...): a hint only
_MODEL_NAME = [(re.compile(r"flux|chroma", re.I), "flux"),
               (re.compile(r"sd3|sd_3|stable[-_]?diffusion[-_]?3", re.I), "sd3"),
               (re.compile(r"lumina", re.I), "lumina"), (re.compile(r"hunyuan", re.I), "hunyuan_image"),
               (re.compile(r"(?<![a-z])anima(?![a-z])", re.I), "anima"),
               (re.compile(r"sdxl|sd_xl|[-_]xl([-_.]|$)|pony|illustrious", re.I), "sdxl")]


def from_script(script: str | None, v2: bool = False) -> tuple[str, str] | None:
    """(architecture, why) from the training script's name."""
    if not script or script not in SCRIPT_ARCH:
        return None
    arch = SCRIPT_ARCH[script]
    if arch is None:
        return ("sd2", f"{script} with --v2") if v2 else ("sd15", f"{script} without --v2")
    return arch, f"{script} trains {LABELS[arch]}"


def from_network_module(module: str | None) -> tuple[str, str] | None:
    if module and str(module) in NETWORK_MODULE_ARCH:
        arch = NETWORK_MODULE_ARCH[str(module)]
        return arch, f"network_module {module} is {LABELS[arch]}'s"
    return None


def from_metadata(md: dict[str, str]) -> tuple[str, str] | None:
    spec = str(md.get("modelspec.architecture") or "")
    for prefix, arch in _MODELSPEC:
        if spec.startswith(prefix):
            return arch, f"modelspec.architecture {spec!r}"
    version = str(md.get("ss_base_model_version") or "")
    for rx, arch in _SS_VERSION:
        if rx.match(version):
            return arch, f"ss_base_model_version {version!r}"
    return from_network_module(md.get("ss_network_module"))


def from_model_name(name: str | None) -> tuple[str, str] | None:
    """A hint from the base model's file or folder name (flux1-dev.safetensors)."""
    if not name:
        return None
    base = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for rx, arch in _MODEL_NAME:
        if rx.search(base):
            return arch, f"the base model's name {base!r}"
    return None
