"""``--config_file`` TOML: kohya's flat-or-sectioned training config.

kohya (``train_util.read_config_from_file``) loads the TOML, flattens one level of sections into one namespace
(later keys win) and re-parses the command line *into* that namespace: command line > config file > defaults,
and the config values are taken as they are, without argparse's type conversion. Unknown keys are kept on the
namespace and never read, so a typo (``network_dims``) silently leaves the real setting at its default.
"""

from __future__ import annotations

from pathlib import Path

from lora_audit.evidence._io import kohya_utf8_problem
from lora_audit.evidence._toml_lines import KeyLines, flatten_sections, read_toml
from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.gui_keys import gui_field_note
from lora_audit.model import Evidence, Note, Setting

# Keys a config TOML may carry that are not training arguments but are harmless.
_DATASET_TOP_KEYS = {"general", "datasets"}


def is_dataset_toml(data: dict) -> bool:
    return "datasets" in data and isinstance(data["datasets"], list)


_SUGGESTED = 200  # unknown keys that get a "did you mean"; a generated file of 300,000 keys stays linear


def parse_config_toml(path: Path, label: str | None = None) -> Evidence:
    """Read a kohya ``--config_file`` TOML into an Evidence (kind ``config_toml``).

    ``facts["ignored_keys"]`` lists keys kohya accepts but never reads (typos); ``facts["mistyped"]`` lists values
    of the wrong type that kohya will not convert. Both are also warnings.
    """
    path = Path(path)
    label = label or str(path)
    data, text = read_toml(path)
    lines = KeyLines(text)
    cat = catalog()
    ev = Evidence(path=label, kind="config_toml")
    encoding = kohya_utf8_problem(path, label)
    if encoding:
        ev.warnings.append(Note(message=encoding, source=f"{label}:1"))
    # by key: a key set again replaces its earlier entry (and its position), in O(1)
    ignored: dict[str, dict] = {}
    mistyped: dict[str, dict] = {}
    settings: dict[str, Setting] = {}
    unknown = 0
    seen: dict[str, str] = {}
    for section, key, value in flatten_sections(data):
        line = lines.line(key, section) or lines.line_in_any(key)
        src = f"{label}:{line}" if line else f"{label}:{key}"
        if key in seen:
            # train_util.read_config_from_file flattens the sections into one dict in file order: the later
            # assignment overwrites the earlier, so only the later one is the run's value (and its source).
            ev.warnings.append(Note(message=f"{key} set twice; kohya keeps the later value (first at {seen[key]})",
                                    source=src))
            settings.pop(key, None)
            ignored.pop(key, None)
            mistyped.pop(key, None)
        seen[key] = src
        gui_note = gui_field_note(key)
        if gui_note is not None:
            # kohya_gui/lora_gui.py train_model writes GUI fields such as epoch into its config_lora-<date>.toml
            ev.warnings.append(Note(message=f"{key} is a kohya_ss GUI field, not a kohya argument ({gui_note}): "
                                            "kohya never reads it", source=src))
            ignored[key] = {"key": key, "value": value, "source": src, "nearest": None, "gui_field": True}
            continue
        if key not in cat:
            unknown += 1
            near = cat.nearest(key) if unknown <= _SUGGESTED else None  # difflib costs ~10 ms a key
            hint = f" (did you mean {near}?)" if near else ""
            ev.warnings.append(Note(
                message=f"unknown key {key!r}{hint}: kohya accepts it silently and never reads it", source=src))
            ignored[key] = {"key": key, "value": value, "source": src, "nearest": near}
            continue
        problem = cat.check_config_value(key, value)
        note = None
        if problem:
            ev.warnings.append(Note(message=problem, source=src))
            arg = cat.get(key)
            mistyped[key] = {"name": key, "value": value, "source": src, "expected": arg.type if arg else None}
            note = "wrong type: kohya takes the TOML value as it is"
        settings[key] = Setting(name=key, value=value, source=src, note=note)
    ev.settings = list(settings.values())
    ev.facts["ignored_keys"] = list(ignored.values())
    ev.facts["mistyped"] = list(mistyped.values())
    names = {s.name for s in ev.settings}
    # A config that names the model and the data is a whole training config: unset values are kohya's defaults.
    ev.complete = "pretrained_model_name_or_path" in names and bool(
        names & {"train_data_dir", "dataset_config", "in_json"})
    return ev
