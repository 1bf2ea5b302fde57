"""The files a kohya_ss GUI config leads to: the flags of ``additional_parameters`` (typed as kohya's command line,
config files followed) and the ``dataset_config`` TOML. A mixin of gui_json._Translation, which provides the GUI
values (``v``), the key lines, the settings read so far and the Evidence being built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_audit.evidence.dataset_toml import parse_dataset_toml, run_settings
from lora_audit.evidence.invocation import Token, locate_file, relative_label, resolve_invocation
from lora_audit.model import Evidence, Note, Setting


class FileRules:
    # provided by gui_json._Translation
    v: dict[str, Any]
    lines: dict[str, int]
    path: Path
    label: str
    ev: Evidence
    settings: dict[str, Setting]
    defaults: dict[str, str]
    followed_dataset: bool

    def _additional_parameters(self) -> None:
        """Extra flags after --config_file: kohya's command line beats the config (read_config_from_file)."""
        text = str(self.v.get("additional_parameters") or "")
        words = text.replace('"', "").split()  # common_gui.run_cmd_advanced_training
        if not words:
            return
        line = self.lines.get("additional_parameters", 1)
        cli = resolve_invocation(self.ev.script or "train_network.py", [Token(w, line) for w in words], self.path,
                                 kind="gui_json", label=self.label)
        # resolve_invocation's own "not a training script" warning repeats ours
        self.ev.warnings.extend(w for w in cli.warnings if not w.message.startswith(f"{cli.script} is not one of"))
        self.ev.includes.extend(cli.includes)
        for k in ("unknown_flags", "ignored_keys", "mistyped"):
            if cli.facts.get(k):
                self.ev.facts.setdefault(k, []).extend(cli.facts[k])
        if cli.facts.get("datasets"):
            self.ev.facts["datasets"] = cli.facts["datasets"]
            self.followed_dataset = True
        for s in cli.settings:
            old = self.settings.get(s.name)
            if old is not None and old.value != s.value:
                s = s.model_copy(update={"note": f"additional_parameters override the GUI's {old.value!r} "
                                                 f"({old.source}): command line wins"})
            self.settings[s.name] = s
            self.defaults.pop(s.name, None)

    def _dataset_config(self) -> None:
        ds = self.settings.get("dataset_config")
        if ds is None or self.followed_dataset:
            return
        target = locate_file(str(ds.value), self.path.parent)
        if target is None:
            self.ev.complete = False
            self.ev.warnings.append(Note(message=f"dataset config {ds.value} not found next to the GUI config: "
                                                 "dataset settings are unknown", source=ds.source))
            return
        cfg = parse_dataset_toml(target, label=relative_label(target, self.path, self.label))
        self.ev.includes.append(str(target))
        self.ev.warnings.extend(cfg.warnings)
        resolved = cfg.resolve({k: s.value for k, s in self.settings.items()},
                               {k: s.source for k, s in self.settings.items()})
        self.ev.facts["datasets"] = [r.model_dump() for r in resolved]
        # config_util.BlueprintGenerator: the dataset config comes before the arguments
        for s in run_settings(cfg, resolved):
            old = self.settings.get(s.name)
            if old is not None and old.value != s.value and old.source != s.source:
                s = s.model_copy(update={"note": f"overrides {old.value!r} at {old.source}: kohya takes the dataset "
                                                 "config first"})
            self.settings[s.name] = s
        for ignored in ("train_data_dir", "reg_data_dir"):
            if ignored in self.settings:
                self.ev.warnings.append(Note(message=f"{ignored} is ignored by kohya when a dataset config is given",
                                             source=self.settings[ignored].source))
