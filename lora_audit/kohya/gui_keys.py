"""The kohya_ss GUI's JSON keys and what its LoRA tab makes of them (data in data/gui_keys.toml).

The GUI (bmaltais/kohya_ss) saves every field of its LoRA tab to a JSON file; to train, ``train_model`` in
``kohya_gui/lora_gui.py`` turns those fields into a ``--config_file`` TOML plus a few command-line flags. This
module holds that translation as data and the few pieces of it that are functions of several keys (the
``network_args`` of a LoRA type, the conversions the GUI applies when it opens a JSON).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lora_audit.kohya.catalog import Argument

_DATA = resources.files("lora_audit.kohya") / "data"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class NetworkSpec:
    """What train_model passes for one LoRA_type."""

    lora_type: str
    module: str | None
    args: list[str]  # network_args as kohya receives them (after the GUI's quote stripping and splitting)
    defaulted: list[str]  # keys the JSON lacks whose GUI component default went into the args


class GuiKeys:
    """The translation table of data/gui_keys.toml, with lookups."""

    def __init__(self, data: dict[str, Any]):
        self.gui_version: str = data["gui_version"]
        self.direct: list[str] = list(data["direct"])
        self.renamed: dict[str, str] = dict(data["renamed"])
        self.only_with: dict[str, list[str]] = dict(data["only_with"])
        self.not_with: dict[str, list[str]] = dict(data["not_with"])
        self.always: dict[str, str] = dict(data["always"])
        self.zero_lost: dict[str, str] = dict(data["zero_lost"])
        self.load_int: dict[str, int] = dict(data["load_int"])
        self.load_float: dict[str, float] = dict(data["load_float"])
        self.noise_groups: dict[str, list[str]] = dict(data["noise_offset_type"])
        self.script_order: list[tuple[str, str]] = [(k, s) for k, s in data["scripts"]["order"]]
        self.default_script: str = data["scripts"]["default"]
        self.lora_types: dict[str, dict[str, Any]] = dict(data["lora_types"])
        self.lora_type_aliases: dict[str, str] = dict(data["lora_type_aliases"])
        self.ui_defaults: dict[str, Any] = dict(data["ui_defaults"])
        self.handled: dict[str, str] = dict(data["handled"])
        self.accelerate: list[str] = list(data["accelerate"]["keys"])
        self.gui_only: dict[str, str] = dict(data["gui_only"])
        self.legacy: dict[str, str] = dict(data["legacy"])
        self.other_arch: list[str] = list(data["other_arch"]["keys"])
        self.checkboxes: list[str] = [k for k, _ in self.script_order]
        # every key a GUI JSON may hold, in any version we know of
        self.known: frozenset[str] = frozenset(
            set(self.direct) | set(self.renamed) | set(self.always) | set(self.handled) | set(self.accelerate)
            | set(self.gui_only) | set(self.legacy) | set(self.other_arch) | set(self.checkboxes))

    def dest(self, key: str) -> str | None:
        """The kohya dest name a GUI key is written under, when it is written as it is (or renamed)."""
        if key in self.renamed:
            return self.renamed[key]
        if key in self.direct or key in self.always:
            return key
        return None

    def nearest(self, key: str) -> str | None:
        m = difflib.get_close_matches(key, sorted(self.known), n=1, cutoff=0.6)
        return m[0] if m else None

    def on_load(self, key: str, value: Any) -> Any:
        """The value the GUI holds after opening the JSON (common_gui.update_my_data's int()/float() with fallback)."""
        if key in self.load_int and value is not None:
            try:
                return int(value)  # int("1.5") and int("") fail: the GUI then uses the fallback
            except (TypeError, ValueError):
                return self.load_int[key]
        if key in self.load_float and value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                return self.load_float[key]
        return value

    def script(self, values: dict[str, Any]) -> tuple[str, str | None]:
        """(training script, the checkbox that picked it or None) as train_model's if/elif chain does."""
        for box, script in self.script_order:
            if values.get(box):
                return script, box
        return self.default_script, None

    def canonical_lora_type(self, lora_type: str) -> str:
        return self.lora_type_aliases.get(lora_type, lora_type)

    def network(self, lora_type: str, values: dict[str, Any]) -> NetworkSpec | None:
        """network_module and network_args for ``lora_type`` (None when the GUI does not know the type).

        ``values`` are the GUI values after loading (missing keys take the GUI's component defaults here).
        """
        lora_type = self.canonical_lora_type(lora_type)
        spec = self.lora_types.get(lora_type)
        if spec is None:
            return None
        templated = set(_PLACEHOLDER.findall(" ".join(spec.get("args", []))))
        defaulted: list[str] = []

        def get(key: str) -> Any:
            if key in values:
                return values[key]
            default = self.ui_defaults.get(key, "")
            # a default that can end up in the args: every templated one, a truthy one elsewhere
            if key in self.ui_defaults and (key in templated or default) and key not in defaulted:
                defaulted.append(key)
            return default

        module = spec["module"]
        if values.get("sd3_checkbox") and "module_sd3" in spec:
            module = spec["module_sd3"]
        text = ""
        for template in spec.get("args", []):
            text += " " + _PLACEHOLDER.sub(lambda m: _py_str(get(m.group(1))), template)
        if lora_type == "Flux1" and values.get("train_lora_ggpo"):
            # ggpo_sigma/ggpo_beta come first in train_model's vars() order
            text += "".join(f" {key}={_py_str(values[key])}" for key in ("ggpo_sigma", "ggpo_beta") if get(key))
        text += _truthy(spec.get("truthy", []), get)
        if lora_type == "Flux1":
            text += _flux_blocks(values, get)
        if spec.get("dropouts"):
            text += _dropouts(get("rank_dropout"), get("module_dropout"))
        if "native" in spec:
            text += _native_loha_lokr(spec["native"] == "lokr", get)
        # append_loraplus_network_args: every LoRA type
        text += _truthy(("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"), get)
        return NetworkSpec(lora_type=lora_type, module=module, args=text.replace('"', "").split(),
                           defaulted=defaulted)


def _truthy(keys: Iterable[str], get: Callable[[str], Any]) -> str:
    """`` key=value`` for each of ``keys`` whose value is truthy (the GUI leaves the others out)."""
    out = ""
    for key in keys:
        v = get(key)
        if v:
            out += f" {key}={_py_str(v)}"
    return out


def _flux_blocks(values: dict[str, Any], get: Callable[[str], Any]) -> str:
    """The FLUX.1 block options the GUI turns into network args."""
    out = ""
    if get("split_mode"):
        out += " train_blocks=single"
    if get("split_qkv"):
        out += " split_qkv=True"
    if get("train_t5xxl") and values.get("flux1_checkbox"):
        out += " train_t5xxl=True"
    return out


def form_value(arg: Argument, value: Any) -> Any:
    """A JSON value as the GUI's form hands it on for kohya argument ``arg`` (its Number/Slider fields hold
    numbers, its Textbox fields strings). Raises ValueError/TypeError when the value cannot be one."""
    if arg.is_flag:
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)
    if arg.is_list:
        return [_scalar(arg.type, x) for x in (value if isinstance(value, list) else [value])]
    return _scalar(arg.type, value)


def _scalar(kind: str | None, value: Any) -> Any:
    if kind == "int":
        f = float(value)
        if f != int(f):
            raise ValueError(value)
        return int(f)
    if kind == "float":
        return float(value)
    if kind == "int_or_float":
        f = float(value)  # train_util int_or_float: >= 1 is a step count, below a ratio
        return int(f) if f == int(f) and f >= 1 else f
    return value if isinstance(value, str) else str(value)


def _py_str(value: Any) -> str:
    """A value as train_model's f-strings write it (Python's str: True, 0.1, 8)."""
    return str(value)


def number(value: Any) -> float:
    """A GUI number field's value as train_model compares it (0.0 when it is not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _dropouts(rank_dropout: Any, module_dropout: Any) -> str:
    # lora_gui.append_rank_module_dropout_network_args: only values > 0
    text = ""
    if rank_dropout is not None and number(rank_dropout) > 0:
        text += f" rank_dropout={rank_dropout}"
    if module_dropout is not None and number(module_dropout) > 0:
        text += f" module_dropout={module_dropout}"
    return text


def _native_loha_lokr(is_lokr: bool, get) -> str:
    # lora_gui.build_native_loha_lokr_network_args: only non-default optional values
    parts: list[str] = []
    conv_dim, conv_alpha = get("conv_dim"), get("conv_alpha")
    if conv_dim is not None and number(conv_dim) > 0:
        parts.append(f"conv_dim={int(number(conv_dim))}")
        if conv_alpha is not None:
            a = number(conv_alpha)
            parts.append(f"conv_alpha={int(a) if a == int(a) else conv_alpha}")
    if get("use_tucker"):
        parts.append("use_tucker=True")
    factor = get("factor")
    if is_lokr and factor is not None and int(number(factor)) != -1:
        parts.append(f"factor={int(number(factor))}")
    text = " " + " ".join(parts) if parts else ""
    return text + _dropouts(get("rank_dropout"), get("module_dropout"))


def gui_field_note(key: str) -> str | None:
    """What a kohya_ss GUI field that is no kohya argument is (``epoch``, ``noise_offset_type``...), else None.
    The GUI writes some of them into the ``config_lora-<date>.toml`` it trains with; kohya never reads them."""
    from lora_audit.kohya.catalog import catalog

    if key in catalog():
        return None
    g = gui_keys()
    return g.handled.get(key) or g.gui_only.get(key) or g.legacy.get(key) or (
        "an accelerate option of the GUI" if key in g.accelerate else None)


@cache
def gui_keys() -> GuiKeys:
    return GuiKeys(tomllib.loads((_DATA / "gui_keys.toml").read_text(encoding="utf-8")))
