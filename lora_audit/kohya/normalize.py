"""Compare values the way kohya reads them: 1e-4 == 0.0001, "512" == "512,512" == [512, 512] for resolution,
precision names by kohya's meaning, optimizer names case-insensitively (``train_util.get_optimizer`` lowercases
``optimizer_type``), lists as tuples."""

from __future__ import annotations

from typing import Any

_PRECISION = {"float": "fp32", "fp32": "fp32", "float32": "fp32", "full": "fp32", "no": "no", "fp16": "fp16",
              "float16": "fp16", "half": "fp16", "bf16": "bf16", "bfloat16": "bf16"}
# kohya treats these optimizer_type spellings as one (get_optimizer compares lowercased names)
_OPTIMIZER_ALIASES = {"adamw8bit": "adamw8bit", "adamw_8bit": "adamw8bit", "adamw": "adamw",
                      "adafactor": "adafactor", "prodigy": "prodigy", "lion": "lion", "lion8bit": "lion8bit",
                      "dadaptation": "dadaptadam", "dadaptadam": "dadaptadam", "sgdnesterov": "sgdnesterov"}


def resolution_pair(value: Any) -> tuple[int, int] | None:
    """kohya's resolution: "512" or 512 means 512×512; "512,768" is width,height."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        s = str(value).strip().strip("()[]")
        items = [x for x in s.replace("x", ",").split(",") if x.strip()]
    try:
        nums = [int(float(str(x).strip())) for x in items]
    except (ValueError, OverflowError):  # "1e400": not a resolution
        return None
    if len(nums) == 1:
        return nums[0], nums[0]
    if len(nums) == 2:
        return nums[0], nums[1]
    return None


def normalize(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "resolution":
        return resolution_pair(value) or value
    if name in ("mixed_precision", "save_precision"):
        return _PRECISION.get(str(value).lower(), str(value).lower())
    if name == "optimizer_type":
        s = str(value).lower()
        s = s.rsplit(".", 1)[-1] if "." in s else s  # "bitsandbytes.optim.AdamW8bit" -> "adamw8bit"
        return _OPTIMIZER_ALIASES.get(s, s)
    if name == "text_encoder_lr" and isinstance(value, (list, tuple)):
        # nargs="*": [x] and [x, x] (the GUI writes one per text encoder) train like x
        try:
            vals = {float(v) for v in value}
        except (TypeError, ValueError):
            vals = set()
        if len(vals) == 1:
            return vals.pop()
    if name in ("pretrained_model_name_or_path", "vae") and isinstance(value, str):
        # ss_sd_model_name keeps only the file name of a local model: compare names, not folders
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if value.endswith((".safetensors", ".ckpt")) \
            else value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int of 400 digits from a script's flag: compared as it is
            return value
    if isinstance(value, (list, tuple)):
        return tuple(normalize(name, v) for v in value)
    if isinstance(value, str):
        try:
            return float(value) if name not in ("output_name", "seed_text") and _numeric(value) else value
        except ValueError:
            return value
    return value


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def same(name: str, a: Any, b: Any) -> bool:
    return normalize(name, a) == normalize(name, b)
