"""kohya_ss GUI JSON configs (bmaltais/kohya_ss, LoRA tab) → Evidence, with the GUI's own translation.

The GUI saves every field of its form; to train, ``train_model`` (kohya_gui/lora_gui.py) writes a
``--config_file`` TOML from them and appends ``additional_parameters`` on the command line. We do what it does
(table and templates in lora_audit/kohya/data/gui_keys.toml): rename keys (``max_resolution`` → resolution,
``optimizer`` → optimizer_type), drop the values it drops ("", false, 0: those stay kohya's defaults), build
network_module/network_args from ``LoRA_type``, pick the script from the model checkboxes, and derive the
schedule values (``lr_warmup`` percent, ``epoch``) as the GUI version that saved the file did.

A key the file lacks is read as "not passed", which is what the (older) GUI version that saved it did; only the
keys whose absence changes a template take the GUI's component defaults. JSON has no line numbers, so each key's
line is found by scanning the text.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from lora_audit.evidence._json_lines import key_lines, read_json
from lora_audit.evidence.gui_files import FileRules
from lora_audit.evidence.gui_schedule import ScheduleRules
from lora_audit.evidence.invocation import TRAINING_SCRIPTS
from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.gui_keys import GuiKeys, form_value, gui_keys, number
from lora_audit.model import Evidence, Note, Setting, SettingOrigin

# Keys only the GUI writes: one of them besides a couple of kohya names marks a GUI config.
_GUI_MARKERS = {"LoRA_type", "max_resolution", "epoch", "optimizer", "lr_warmup", "model_list", "save_as_bool",
                "additional_parameters", "noise_offset_type", "sdxl", "LyCORIS_preset", "sdxl_no_half_vae",
                "stop_text_encoder_training", "num_cpu_threads_per_process"}


def is_gui_json(obj: dict) -> bool:
    """True for a kohya_ss GUI config (saved config or preset), False for any other JSON object."""
    if not isinstance(obj, dict):
        return False
    if "LoRA_type" in obj:
        return True
    return len(_GUI_MARKERS & obj.keys()) >= 3


def parse_gui_json(path: str | Path, label: str | None = None) -> Evidence:
    """Read a kohya_ss GUI JSON into an Evidence (kind ``gui_json``): the arguments the GUI would pass to kohya.

    ``complete`` is True for a training config (one that names the model: presets do not), so unset values are
    kohya's defaults. ``facts``: ``gui`` (LoRA type, warm-up percent, epoch, GUI era), ``accelerate``,
    ``kohya_defaults`` (dest → source of GUI values that leave kohya's default), ``ignored_keys``.
    """
    path = Path(path)
    label = label or str(path)
    data, text, dupes = read_json(path, label)
    lines = key_lines(text)
    data, unusable = _form_values(data)
    ev = _Translation(data, lines, dupes, path, label).run()
    for key, why in unusable:
        line = lines.get(key)
        ev.warnings.append(Note(message=f"{key}: {why}; the GUI's form cannot load it, so it is left out",
                                source=f"{label}:{line}" if line else f"{label}:{key}"))
    return ev


def _form_values(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The values a GUI form field can hold (text, a finite number, a checkbox, null, a list of texts), and the keys
    whose values cannot be one (an object, a nested list, an infinite number), each with why. Robustness only: a
    JSON file that was never a GUI save (hand-edited, generated) must give warnings, never a crash."""
    import math

    def why(v: Any) -> str | None:
        if isinstance(v, dict):
            return "a JSON object where a value belongs"
        if isinstance(v, float) and not math.isfinite(v):
            return f"{v} is not a finite number"
        if isinstance(v, list):
            bad = next((w for w in (why(x) for x in v) if w), None)
            if bad or any(isinstance(x, list) for x in v):
                return bad or "a list of lists where a value belongs"
        return None

    clean, unusable = {}, []
    for key, value in data.items():
        problem = why(value)
        if problem is None and key == "LoRA_type" and value is not None and not isinstance(value, str):
            problem = "the LoRA type must be text"
        if problem:
            unusable.append((key, problem))
        else:
            clean[key] = value
    return clean, unusable


def _fell_back(g: GuiKeys, key: str, value: Any) -> bool:
    """True when update_my_data's int()/float() of the saved value fails and the GUI takes its fallback."""
    conv = int if key in g.load_int else float if key in g.load_float else None
    if conv is None or value is None:
        return False
    try:
        conv(value)
    except (TypeError, ValueError, OverflowError):
        return True
    return False


def _falsy(value: Any) -> bool:
    # train_model keeps `value not in ["", False, None]`; 0 == False so 0 and 0.0 go too. An empty list
    # (optimizer_args "") is written as `[]`, which kohya reads like its default None: dropped here as well.
    return value is None or (not isinstance(value, (list, dict)) and value in ("", False)) or value == []


class _Translation(ScheduleRules, FileRules):
    def __init__(self, data: dict[str, Any], lines: dict[str, int], dupes: list[str], path: Path, label: str):
        self.g: GuiKeys = gui_keys()
        self.cat = catalog()
        self.followed_dataset = False
        self.raw = data
        self.lines = lines
        self.path = path
        self.label = label
        # null values: the GUI keeps its field as it was (open_configuration)
        self.v: dict[str, Any] = {k: self.g.on_load(k, val) for k, val in data.items() if val is not None}
        # fields the GUI cannot read as numbers and replaces by its fallback (common_gui.update_my_data)
        self.fell_back = {k: val for k, val in data.items() if _fell_back(self.g, k, val)}
        self.origin_key: dict[str, str] = {}
        self.settings: dict[str, Setting] = {}
        self.ev = Evidence(path=label, kind="gui_json")
        self.defaults: dict[str, str] = {}
        self.gui_facts: dict[str, Any] = {}
        for k in dict.fromkeys(dupes):
            self.warn(f"{k} is set twice; the later value wins", k)
        # before v25 the GUI had no lr_warmup_steps field, and turned lr_warmup into steps itself
        self.before_v25 = "lr_warmup_steps" not in data

    # -- helpers --------------------------------------------------------------------------------------------
    def src(self, key: str) -> str:
        key = self.origin_key.get(key, key)
        line = self.lines.get(key)
        return f"{self.label}:{line}" if line else f"{self.label}:{key}"

    def warn(self, message: str, key: str | None = None) -> None:
        self.ev.warnings.append(Note(message=message, source=self.src(key) if key else self.label))

    def put(self, name: str, value: Any, key: str, origin: SettingOrigin = "explicit", note: str | None = None) -> None:
        self.settings[name] = Setting(name=name, value=value, source=self.src(key), origin=origin, note=note)
        self.defaults.pop(name, None)

    def drop(self, name: str, key: str) -> None:
        self.settings.pop(name, None)
        if name in self.cat:
            self.defaults[name] = self.src(key)

    def typed(self, name: str, value: Any, key: str) -> Any:
        """The value as the GUI's form holds it for kohya's argument ``name`` (Gradio numbers are numbers)."""
        arg = self.cat.get(name)
        if arg is None or value is None or value == "":
            return value
        try:
            return form_value(arg, value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: "1e400" where an int belongs
            self.warn(f"{key} = {value!r} is not a {arg.type}: kohya would receive it as it is", key)
            self.ev.facts.setdefault("mistyped", []).append(
                {"name": name, "value": value, "source": self.src(key), "expected": arg.type})
            return value

    def checkbox_on(self, boxes: list[str]) -> bool:
        return any(self.v.get(b) for b in boxes)

    # -- the translation ------------------------------------------------------------------------------------
    def run(self) -> Evidence:
        self._update_my_data()
        script, box = self.g.script(self.v)
        self.ev.script = script
        if box:
            self.ev.facts["script_source"] = self.src(box)
        if script not in TRAINING_SCRIPTS:
            self.warn(f"the GUI runs {script}, outside the catalog ({', '.join(TRAINING_SCRIPTS)}): its own "
                      "parameters are not translated", box)
        for key in self.v:
            if (name := self.g.dest(key)) is not None and key not in self.g.always:
                self._plain(key, name)
        self._always()
        self._attention()
        self._noise()
        self._learning_rates()
        self._arg_strings()
        self._duration()
        self._warmup()
        self._num_cycles()
        self._network()
        self._misc()
        self._accelerate()
        self._other_keys()
        self.ev.facts["gui"] = {"gui_version": "before v25" if self.before_v25 else "v25 or later",
                                "LoRA_type": self.v.get("LoRA_type"), **self.gui_facts}
        self.ev.facts["kohya_defaults"] = self.defaults
        name = self.v.get("pretrained_model_name_or_path")
        is_lora = "LoRA_type" in self.v or "network_dim" in self.v
        if not is_lora:
            self.warn("no LoRA_type or network_dim: this looks like a DreamBooth/fine-tuning GUI config; read with "
                      "the LoRA tab's translation")
        # A saved training config names the model; presets (tools/prepare_presets.py strips paths) do not.
        self.ev.complete = bool(name) and is_lora
        self._additional_parameters()
        self._dataset_config()
        self.ev.settings = sorted(self.settings.values(), key=lambda st: _line_of(st.source))
        return self.ev

    def _update_my_data(self) -> None:
        """common_gui.update_my_data: what the GUI changes when it opens an older file."""
        v = self.v
        if "optimizer" not in v and "use_8bit_adam" in v:
            v["optimizer"] = "AdamW8bit" if v["use_8bit_adam"] else "AdamW"
            self.origin_key["optimizer"] = "use_8bit_adam"
        if "lora_network_weights" in v:
            v["network_weights"] = v.pop("lora_network_weights")
            self.origin_key["network_weights"] = "lora_network_weights"
        if str(v.get("use_wandb")) == "True":
            v["log_with"] = "wandb"
            self.origin_key["log_with"] = "use_wandb"
        if isinstance(v.get("xformers"), bool):
            v["xformers"] = "xformers" if v["xformers"] else "none"
        if "LoRA_type" in v:
            v["LoRA_type"] = self.g.canonical_lora_type(v["LoRA_type"])
        if v.get("save_model_as") not in (None, "safetensors", "ckpt"):
            v["save_model_as"] = "safetensors"

    def _plain(self, key: str, name: str) -> None:
        if key in self.g.only_with and not self.checkbox_on(self.g.only_with[key]):
            return
        if key in self.g.not_with and self.checkbox_on(self.g.not_with[key]):
            return
        raw = self.v[key]
        value = self.typed(name, raw, key)
        if _falsy(value):
            self.drop(name, key)
            if name in self.g.zero_lost and number(raw) == 0 and raw != "":
                self.warn(f"{key} = 0 is not passed (the GUI writes no zero values), so kohya uses its default "
                          f"{name} = {self.cat.default(name)!r}; {self.g.zero_lost[name]}", key)
            return
        if name not in self.cat:
            commit = (self.cat.sd_scripts_commit or "")[:8]
            self.warn(f"the GUI passes {name} = {value!r}, but sd-scripts {commit} has no such argument: kohya "
                      "ignores it", key)
            return
        if key in self.fell_back:
            note = (f"{self.fell_back[key]!r} in the file: the GUI reads it as its fallback {value!r} "
                    "(common_gui.update_my_data) and passes that")
            if self.cat.default(name) == value:  # what kohya would use anyway: a default, not the user's setting
                self.drop(name, key)
                self.ev.facts.setdefault("gui_fallbacks", {})[name] = note + ", kohya's default"
            else:
                self.put(name, value, key, origin="inferred", note=note)
            return
        self.put(name, value, key)

    def _always(self) -> None:
        for key in self.g.always:
            if key in self.v:
                value = self.typed(key, self.v[key], key)
                self.put(key, value if value != "" else 0, key,
                         note="the GUI always writes it, 0 included" if value in (0, "") else None)

    def _attention(self) -> None:
        x = self.v.get("xformers")
        if x is None:
            return
        for mode in ("xformers", "sdpa"):
            if x == mode:
                self.put(mode, True, "xformers", note=f"GUI CrossAttention = {x!r}")
            else:
                self.drop(mode, "xformers")

    def _noise(self) -> None:
        kind = self.v.get("noise_offset_type", self.g.ui_defaults["noise_offset_type"])
        for group, keys in self.g.noise_groups.items():
            for key in keys:
                if key not in self.v:
                    continue
                if group == kind:
                    self._plain(key, key)
                elif not _falsy(self.v[key]):
                    self.gui_facts.setdefault("noise_not_passed", {})[key] = self.v[key]
                    self.warn(f"{key} = {self.v[key]!r} is not passed: noise_offset_type is {kind!r}", key)

    def _arg_strings(self) -> None:
        for key in ("optimizer_args", "lr_scheduler_args"):
            if key in self.v:
                # train_model: str(x).replace('"', "").split()
                items = str(self.v[key]).replace('"', "").split()
                if items:
                    self.put(key, items, key)
                else:
                    self.drop(key, key)

    def _network(self) -> None:
        lora_type = self.v.get("LoRA_type")
        if lora_type is None and "network_dim" not in self.v:
            return
        key = "LoRA_type"
        spec = self.g.network(lora_type or self.g.ui_defaults["LoRA_type"], self.v)
        if spec is None:
            self.warn(f"LoRA_type {lora_type!r} is not one the GUI knows: network_module unknown", key)
            return
        note = None if lora_type else "no LoRA_type in the file: the GUI's default Standard"
        self.put("network_module", spec.module, key, origin="explicit" if lora_type else "inferred", note=note)
        if spec.args:
            n = f"built by the GUI for {spec.lora_type}"
            if spec.defaulted:
                n += "; the GUI's defaults for keys not in the file: " + ", ".join(spec.defaulted)
            self.put("network_args", spec.args, key, note=n)
        else:
            self.drop("network_args", key)

    def _misc(self) -> None:
        v = self.v
        if "persistent_data_loader_workers" in v:
            # written as int(value): 1 is truthy for kohya's store_true
            if v["persistent_data_loader_workers"]:
                self.put("persistent_data_loader_workers", True, "persistent_data_loader_workers")
            else:
                self.drop("persistent_data_loader_workers", "persistent_data_loader_workers")
        if v.get("sample_prompts") and v.get("output_dir"):
            # class_sample_images.create_prompt_file: os.path.join(output_dir, "sample/prompt.txt")
            p = posixpath.join(str(v["output_dir"]), "sample/prompt.txt")
            self.put("sample_prompts", p, "sample_prompts", origin="inferred",
                     note="the GUI writes the prompts of the file into this file and passes its path")
            self.ev.facts["sample_prompts_text"] = v["sample_prompts"]
        if "wandb_run_name" in v and not v["wandb_run_name"] and v.get("output_name"):
            self.put("wandb_run_name", str(v["output_name"]), "wandb_run_name", note="empty: the GUI uses output_name")
        elif v.get("wandb_run_name"):
            self.put("wandb_run_name", str(v["wandb_run_name"]), "wandb_run_name")
        for key in ("stop_text_encoder_training", "stop_text_encoder_training_pct"):
            if number(v.get(key)):
                self.warn(f"{key} = {v[key]!r} has no effect: the GUI does not pass it (train_network.py has no such "
                          "argument)", key)
        if v.get("no_token_padding"):
            self.warn("no_token_padding is a key of GUIs up to v22.6.0; the current GUI no longer passes it",
                      "no_token_padding")

    def _accelerate(self) -> None:
        acc: dict[str, Any] = {}
        for key in self.g.accelerate:
            val = self.v.get(key)
            if key in ("num_processes", "num_machines", "main_process_port", "num_cpu_threads_per_process"):
                try:
                    n = int(float(val or 0))
                    if n > 0:
                        acc[key] = n
                except (TypeError, ValueError):
                    pass
            elif key == "dynamo_backend" and val == "no":
                continue
            elif not _falsy(val):
                acc[key] = val
        if acc:
            self.ev.facts["accelerate"] = acc

    def _other_keys(self) -> None:
        g = self.g
        known = g.known
        unknown = 0
        for key in self.raw:
            if key not in known:
                unknown += 1
                near = g.nearest(key) if unknown <= 200 else None  # difflib ~10 ms a key: bounded for huge files
                if key in self.cat:
                    hint = " (a kohya argument, not a GUI field: the GUI passes it only in additional_parameters)"
                else:
                    hint = f" (did you mean {near}?)" if near else ""
                self.warn(f"unknown key {key!r}{hint}: the GUI ignores it when it opens this file", key)
                self.ev.facts.setdefault("ignored_keys", []).append(
                    {"key": key, "value": self.raw[key], "source": self.src(key), "nearest": near})
            elif key in g.legacy:
                self.ev.facts.setdefault("legacy_keys", {})[key] = g.legacy[key]


def _line_of(source: str) -> int:
    tail = source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 1 << 30
